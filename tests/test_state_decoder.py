"""StateDecoder: big bodies are decoded in the helper process, with the same result a thread
gives, and an unusable big body is reported as such (not raised across the process)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import signal

import pytest

from discoveryd.dns.records import build_records, hash_string
from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.state_decoder import StateDecoder, Undecodable, decode_state, load_json
from tests.daemon_harness import eventually
from tests.fault_states import generation_state


async def test_helper_process_decodes_like_a_thread() -> None:
    body = SimMesosMaster(generation_state(4), port=5050).encode()
    decoder = StateDecoder(big_body=1)  # every body counts as big: the process path
    try:
        assert await decoder.decode(body) == decode_state(body)
        assert decoder._pool is not None  # it really went through the helper
        bad = await decoder.decode(body[: len(body) // 2])
        assert isinstance(bad, Undecodable) and bad.result == "invalid"
        leaderless = await decoder.decode(json.dumps({"frameworks": []}).encode())
        assert leaderless == Undecodable("not_leader", "knows no leader")
    finally:
        decoder.close()


async def test_a_killed_helper_falls_back_to_a_thread_then_is_replaced(
        caplog: pytest.LogCaptureFixture) -> None:
    body = SimMesosMaster(generation_state(5), port=5050).encode()
    before = set(multiprocessing.active_children())
    decoder = StateDecoder(big_body=1)
    try:
        assert await decoder.decode(body) == decode_state(body)
        helpers = [p for p in multiprocessing.active_children() if p not in before]
        assert len(helpers) == 1
        os.kill(helpers[0].pid, signal.SIGKILL)  # as the OOM killer would
        helpers[0].join(30)
        # The pool notices the death; this body is decoded in a thread, not lost.
        await eventually(lambda: _decodes(decoder, body), timeout=60, what="thread fallback")
        assert any("state_decoder_failed" in r.getMessage() for r in caplog.records)
        assert await decoder.decode(body) == decode_state(body)  # and a new helper serves
        assert decoder._pool is not None
    finally:
        decoder.close()


async def test_a_hung_helper_is_killed_and_the_thread_decodes(
        caplog: pytest.LogCaptureFixture) -> None:
    """A stopped (or swapped-out) helper never answers: after the timeout it is killed and
    the body decoded in a thread, instead of holding every later refresh."""
    body = SimMesosMaster(generation_state(5), port=5050).encode()
    before = set(multiprocessing.active_children())
    decoder = StateDecoder(big_body=1, timeout=1.0)
    helpers: list[multiprocessing.process.BaseProcess] = []
    try:
        assert await decoder.decode(body) == decode_state(body)
        helpers = [p for p in multiprocessing.active_children() if p not in before]
        [helper] = helpers
        os.kill(helper.pid, signal.SIGSTOP)
        assert await decoder.decode(body) == decode_state(body)  # not stuck behind it
        assert any("state_decoder_failed" in r.getMessage() and "TimeoutError" in
                   r.getMessage() for r in caplog.records)
        helper.join(30)
        assert not helper.is_alive()  # killed, not left stopped
    finally:
        for p in helpers:
            with contextlib.suppress(OSError, TypeError):
                os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        decoder.close()


async def _decodes(decoder: StateDecoder, body: bytes) -> bool:
    return await decoder.decode(body) == decode_state(body)


# --- strings as Go's encoding/json (mesos-dns) reads them -------------------------------

def _state_with_task_id(raw_id: bytes) -> bytes:
    """A leader state with two running tasks; the first one's id is `raw_id`, spliced in as
    raw bytes (so it can hold bytes json.dumps would never write)."""
    def task(tid: str, name: str) -> dict:
        return {"id": tid, "name": name, "slave_id": "S1-S7", "state": "TASK_RUNNING",
                "framework_id": "F1"}
    state = {"leader": "master@10.0.0.1:5050",
             "slaves": [{"id": "S1-S7", "hostname": "a1", "pid": "slave(1)@10.0.1.1:5051"}],
             "frameworks": [{"id": "F1", "name": "marathon", "pid": "scheduler@10.0.0.9:8080",
                             "tasks": [task("ID-PLACEHOLDER", "web"), task("ok.1", "api")]}]}
    return json.dumps(state).encode().replace(b"ID-PLACEHOLDER", raw_id)


def _go_hash(go_string: str) -> str:
    """mesos-dns's hashString, computed independently of records.hash_string."""
    digest = hashlib.sha1(go_string.encode("utf-8")).digest()
    bits = bin(int.from_bytes(digest, "big"))[2:].zfill(160)
    return "".join("ybndrfg8ejkmcpqxot1uwisza345h769"[int(bits[i:i + 5], 2)]
                   for i in range(0, 25, 5))


def _task_names(decoded: object) -> set[str]:
    assert isinstance(decoded, tuple), decoded
    rs = build_records(decoded[0], domain="mesos", masters=[], ip_sources=["host"],
                       enforce_rfc952=False, mname="ns1.mesos", listen_ips=[])
    return {n for n in rs.a if n.endswith(".marathon.mesos.")}


@pytest.mark.parametrize("raw, go", [
    (b"t-\xff", "t-\ufffd"),  # not UTF-8 at all: used to refuse the whole state
    (b"t-\xed\xa0\x80", "t-\ufffd\ufffd\ufffd"),  # an encoded surrogate: Go, one per byte
    (b"t-\xe2\x82x", "t-\ufffd\ufffdx"),  # a truncated sequence: one U+FFFD per byte too
    (b"t-\\ud800x", "t-\ufffdx"),  # a lone surrogate escape: build_records used to raise
    (b"t-\\udc00\\ud83d\\ude00", "t-\ufffd\U0001f600"),  # the valid pair stays
    (b"t-\\ud800\\\\ud800", "t-\ufffd\\ud800"),  # the second one is not an escape
])
def test_bad_strings_become_u_fffd_as_in_go(raw: bytes, go: str) -> None:
    decoded = decode_state(_state_with_task_id(raw))
    assert isinstance(decoded, tuple), decoded
    ids = [t.id for f in decoded[0].frameworks for t in f.tasks]
    assert ids == [go, "ok.1"]
    # Every record is built, the bad task's canonical name carrying Go's hash.
    names = _task_names(decoded)
    assert f"web-{_go_hash(go)}-s7.marathon.mesos." in names
    assert f"api-{_go_hash('ok.1')}-s7.marathon.mesos." in names


def test_a_lone_surrogate_hashes_as_go_even_when_not_decoded_here() -> None:
    assert hash_string("t-\ud800x") == hash_string("t-\ufffdx") == _go_hash("t-\ufffdx")


def test_load_json_keeps_json_semantics() -> None:
    assert load_json(b'\xef\xbb\xbf{"a": ["\\u00e9", 1.5, null]}') == {"a": ["\u00e9", 1.5, None]}
    assert load_json(b'{"\\ud800": "\\ud83d\\ude00"}') == {"\ufffd": "\U0001f600"}
    with pytest.raises(ValueError):
        load_json(b'{"a": ')
