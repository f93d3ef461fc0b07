"""The SSE parser's bounds: linear time for a huge event however it is split, and an
error (not unbounded memory) for a line or event past `max_event_bytes`."""

import time

import pytest

from discoveryd.sources.sse import SseError, SseEvent, SseParser


def test_huge_event_in_small_chunks_parses_in_linear_time():
    p = SseParser()
    piece = b"x" * 65536
    started = time.perf_counter()
    assert p.feed(b"event: deployment_info\ndata: ") == []
    for _ in range(128):  # 8 MiB: rescanning the held bytes per chunk took 6 s
        assert p.feed(piece) == []
    events = p.feed(b"\n\n")
    assert time.perf_counter() - started < 2.0
    assert events == [SseEvent("deployment_info", "x" * (128 * 65536))]


def test_line_without_end_is_bounded():
    p = SseParser(max_event_bytes=1000)
    p.feed(b"data: " + b"x" * 500)
    with pytest.raises(SseError):
        p.feed(b"x" * 600)


def test_event_of_many_lines_is_bounded():
    p = SseParser(max_event_bytes=1000)
    with pytest.raises(SseError):
        p.feed(b"".join(b"data: " + b"y" * 100 + b"\n" for _ in range(11)))


def test_limit_is_per_event():
    p = SseParser(max_event_bytes=1000)
    for _ in range(5):
        assert p.feed(b"data: " + b"z" * 900 + b"\n\n") == [SseEvent("message", "z" * 900)]
