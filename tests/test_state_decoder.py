"""StateDecoder: big bodies are decoded in the helper process, with the same result a thread
gives, and an unusable big body is reported as such (not raised across the process)."""

from __future__ import annotations

import json

from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.state_decoder import StateDecoder, Undecodable, decode_state
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
