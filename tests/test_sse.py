"""The SSE parser, fed bytes: any chunking of a stream yields the same events."""

from hypothesis import given, settings
from hypothesis import strategies as st

from discoveryd.sources.sse import SseEvent, SseParser

# A recorded-style Marathon stream, with every line-ending kind, comments (keep-alives),
# multi-line data, retry, ids and multi-byte UTF-8 characters.
STREAM = (
    b"\xef\xbb\xbf: connected\r\n"
    b"retry: 3000\n"
    b"event: event_stream_attached\r\n"
    b'data: {"remoteAddress":"127.0.0.1","eventType":"event_stream_attached"}\r\n'
    b"\r\n"
    b":\n"
    b"event: status_update_event\r"
    b'data: {"appId":"/caf\xc3\xa9","taskStatus":"TASK_RUNNING",\r'
    b'data:  "host":"\xe2\x9c\x93-\xf0\x9f\x9a\x80"}\r'
    b"id: 7\r"
    b"\r"
    b"data\n"
    b"data:x\n"
    b"\n"
    b"event: ignored\n"
    b"\n"
    b"retry: soon\n"
    b"data: tail"  # unterminated: never dispatched
)

EXPECTED = [
    SseEvent("event_stream_attached",
             '{"remoteAddress":"127.0.0.1","eventType":"event_stream_attached"}'),
    SseEvent("status_update_event",
             '{"appId":"/caf\u00e9","taskStatus":"TASK_RUNNING",\n "host":"\u2713-\U0001f680"}',
             "7"),
    SseEvent("message", "\nx", "7"),
]


def test_whole_stream():
    p = SseParser()
    assert p.feed(STREAM) == EXPECTED
    assert p.retry_ms == 3000 and p.comments == 2 and p.last_event_id == "7"


def test_byte_at_a_time():
    p = SseParser()
    events = [e for i in range(len(STREAM)) for e in p.feed(STREAM[i:i + 1])]
    assert events == EXPECTED


def test_cr_then_lf_in_next_chunk_is_one_line_end():
    p = SseParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\n") == []  # the LF of CRLF, not an empty line
    assert p.feed(b"\r\n") == [SseEvent("message", "a")]


def test_cr_cr_is_two_line_ends():
    assert SseParser().feed(b"data: a\r\r") == [SseEvent("message", "a")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_yields_the_same_events(cuts):
    bounds = [0, *sorted(cuts), len(STREAM)]
    p = SseParser()
    events = [e for a, b in zip(bounds, bounds[1:], strict=False) for e in p.feed(STREAM[a:b])]
    assert events == EXPECTED
    assert p.retry_ms == 3000
