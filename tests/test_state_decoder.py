"""StateDecoder: big bodies are decoded in the helper process, with the same result a thread
gives, and an unusable big body is reported as such (not raised across the process)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest

from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.state_decoder import StateDecoder, Undecodable, decode_state
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


async def _decodes(decoder: StateDecoder, body: bytes) -> bool:
    return await decoder.decode(body) == decode_state(body)
