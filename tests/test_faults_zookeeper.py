"""ZooKeeper faults against whole daemons following a real ZooKeeper: the server down for
30 s, the leader flapping 20 times in 10 s, the daemon's session expired.

Each simulated master serves its own state (different task IPs and ports, see
`tests/fault_states.py`), so an answer from the wrong leader, a mixture or an empty answer is
visible. A real DNS client queries all along; the assertions are over every answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from kazoo.client import KazooClient

from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.zookeeper import ZkMasterWatch
from tests.daemon_harness import Running, eventually, settings_for, start_daemon
from tests.dns_probe import DnsProbe
from tests.fakes.zookeeper import ZkEnv, expire_session, register_master
from tests.fault_states import expected, generation_state
from tests.scrape import sample

OUTAGE = 30.0
MAX_LATENCY = 2.0  # seconds; generous for a loaded 2-core machine (typical: a few ms)


@pytest.fixture
async def sims() -> AsyncIterator[list[SimMesosMaster]]:
    """Three masters on 127.0.0.1; master i serves generation i+1. The first one leads."""
    masters = [SimMesosMaster(generation_state(g)) for g in (1, 2, 3)]
    for m in masters:
        await m.start()
    make_leader(masters[0], masters)
    yield masters
    for m in masters:
        await m.stop()


def make_leader(leader: SimMesosMaster, masters: list[SimMesosMaster]) -> None:
    """What the masters say once `leader` is elected (before ZooKeeper shows it, as in Mesos:
    the new leader knows first)."""
    for m in masters:
        if m is leader:
            m.lead()
        else:
            m.follow(leader)


def states_of(masters: list[SimMesosMaster]) -> dict[str, dict]:
    """Probe states named by master index: "m0" is the first master's state, and so on."""
    return {f"m{i}": expected(i + 1, m.port) for i, m in enumerate(masters)}


async def register(client: KazooClient, zk: ZkEnv, m: SimMesosMaster) -> str:
    # kazoo blocks: never on the loop the daemons answer DNS from.
    return await asyncio.to_thread(register_master, client, zk.path, m.host, m.port)


async def connected(r: Running) -> bool:
    return await sample(r, "discoveryd_zookeeper_connected") == 1


async def not_connected(r: Running) -> bool:
    return await sample(r, "discoveryd_zookeeper_connected") == 0


async def leader_source(r: Running, source: str) -> bool:
    return await sample(r, "discoveryd_mesos_leader_source", source=source) == 1


def check_answers(probe: DnsProbe, since: float, order: list[str], monotonic: bool = True,
                  ) -> None:
    """Every answer since `since` is one of `order`'s states (never going back to an earlier
    one when `monotonic`), and none was slow."""
    observed = probe.since(since)
    assert observed, "no DNS answers"
    wrong = probe.wrong(order, observed)
    assert not wrong, f"wrong answers: {probe.summary(wrong)}"
    back = [o for o in probe.regressions(order) if o.at >= since] if monotonic else []
    assert not back, f"answers went back to an older state: {probe.summary(back)}"
    assert probe.max_latency(observed) < MAX_LATENCY


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_zookeeper_down_30s_keeps_answering_then_follows_new_leader(
        zk: ZkEnv, zk_admin: KazooClient, sims: list[SimMesosMaster]) -> None:
    """The operator-expected behaviour, both ways:

    - ZooKeeper only: the daemon keeps refreshing from the last leader ZooKeeper named and
      answers from it throughout;
    - with static `masters` and `zk_detection_timeout` (3 s) shorter than the outage: after
      3 s it asks the static masters instead (they name the same leader, so not one answer
      changes), and goes back to following ZooKeeper when it returns.

    Either way, once ZooKeeper is back, a leader change is followed.
    """
    a, b = sims[0], sims[1]
    node_a = await register(zk_admin, zk, a)
    await register(zk_admin, zk, b)
    zk_only = await start_daemon(settings_for(mesos={"zk": zk.url, "refresh_seconds": 1}))
    fallback = await start_daemon(settings_for(mesos={
        "zk": zk.url, "masters": [b.address, a.address], "zk_detection_timeout": 3,
        "refresh_seconds": 1}))
    daemons = [zk_only, fallback]
    probes = [DnsProbe(d.dns_port, states_of(sims)) for d in daemons]
    try:
        for p in probes:
            p.start()
        for p in probes:
            await eventually(lambda p=p: p.serves("m0"), timeout=60, what="leader a's state")
        down_at = time.monotonic()
        await asyncio.to_thread(zk.server.stop)
        for d in daemons:
            await eventually(lambda d=d: not_connected(d), timeout=60, what="zk disconnected")
        await eventually(lambda: leader_source(fallback, "static"), timeout=30,
                         what="static fallback after zk_detection_timeout")
        assert await leader_source(zk_only, "zk")  # no static masters: stays with ZooKeeper
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))  # the outage
        up_at = time.monotonic()
        for p in probes:
            check_answers(p, down_at, ["m0"])  # throughout the outage: exactly a's state
        _, state = await fallback.get("/v1/state")
        assert state["leader_source"] == "static" and state["mesos"]["zk_connected"] is False

        await asyncio.to_thread(zk.server.start)
        for d in daemons:
            await eventually(lambda d=d: connected(d), timeout=60, what="zk reconnected")
        await eventually(lambda: leader_source(fallback, "zk"), timeout=30,
                         what="fallback daemon following ZooKeeper again")

        make_leader(b, sims)
        await eventually(lambda: zk_admin.connected, timeout=60, what="admin client back")
        if await asyncio.to_thread(zk_admin.exists, node_a):
            await asyncio.to_thread(zk_admin.delete, node_a)  # a's session ends: b leads
        else:  # a's session expired during the outage: b re-registers after its own expiry
            await asyncio.to_thread(_only, zk_admin, zk, b)
        for p in probes:
            await eventually(lambda p=p: p.serves("m1"), timeout=60, what="new leader b")
        # If a's node vanished with an expired session, ZooKeeper showed no leader until b
        # re-registered, and the fallback daemon may have used its static masters meanwhile
        # (serving b's state all the same): it must come back to ZooKeeper.
        for d in daemons:
            async def on_b_by_zk(d: Running = d) -> bool:
                _, state = await d.get("/v1/state")
                return state["leader"] == b.address and state["leader_source"] == "zk"

            await eventually(on_b_by_zk, timeout=60, what="b followed through ZooKeeper")
    finally:
        for p in probes:
            await p.stop()
        await asyncio.to_thread(zk.server.start)
        for d in daemons:
            await d.daemon.stop()
    for p in probes:
        check_answers(p, down_at, ["m0", "m1"])
        assert not p.wrong(["m0"], p.between(down_at, up_at))
        print(f"zk outage: {len(p.since(down_at))} answers, max latency "
              f"{p.max_latency(p.since(down_at)) * 1000:.0f} ms")


def _only(client: KazooClient, zk: ZkEnv, m: SimMesosMaster) -> None:
    """Leave `m` the only registered master (blocking)."""
    for child in client.get_children(zk.path):
        client.delete(f"{zk.path}/{child}")
    register_master(client, zk.path, m.host, m.port)


@pytest.mark.long
@pytest.mark.timeout(180)
async def test_leader_flapping_20_times_in_10s(
        zk: ZkEnv, zk_admin: KazooClient, sims: list[SimMesosMaster]) -> None:
    """Leadership rotates a -> b -> c -> a ... every 0.5 s (the old leader re-registers behind
    the others, as a restarted Mesos master does). Every answer is one master's whole state;
    the 20th leader (c) is served at the end."""
    nodes = [await register(zk_admin, zk, m) for m in sims]
    r = await start_daemon(settings_for(mesos={"zk": zk.url, "refresh_seconds": 3600}))
    probe = DnsProbe(r.dns_port, states_of(sims))
    try:
        async with probe:
            await eventually(lambda: probe.serves("m0"), timeout=60, what="first leader's state")
            changes_before = await sample(r, "discoveryd_mesos_leader_changes_total")
            flap_at = time.monotonic()
            leader = 0
            for _ in range(20):
                new = (leader + 1) % len(sims)
                make_leader(sims[new], sims)
                await asyncio.to_thread(zk_admin.delete, nodes[leader])
                nodes[leader] = await register(zk_admin, zk, sims[leader])
                leader = new
                await asyncio.sleep(0.5)  # the flapping rate, not a synchronisation
            assert leader == 2
            await eventually(lambda: probe.serves("m2"), timeout=30, what="final leader c")
            settled_at = time.monotonic()
            await eventually(lambda: len(probe.since(settled_at)) >= 60, timeout=30,
                             what="answers after settling")
        # Leadership comes back round, so earlier states are valid again: no order to check.
        check_answers(probe, flap_at, ["m0", "m1", "m2"], monotonic=False)
        late = probe.wrong(["m2"], probe.since(settled_at))
        assert not late, f"after settling, not the final leader: {probe.summary(late)}"
        _, state = await r.get("/v1/state")
        assert state["leader"] == sims[2].address
        changes = await sample(r, "discoveryd_mesos_leader_changes_total") - changes_before
        print(f"flapping: {len(probe.since(flap_at))} answers, {changes:.0f} leader changes "
              f"followed, max latency {probe.max_latency(probe.since(flap_at)) * 1000:.0f} ms")
        assert changes >= 10, f"followed only {changes} of 20 leader changes"
    finally:
        await r.daemon.stop()


@pytest.mark.timeout(180)
async def test_session_expiry_reconnects_keeps_serving_and_follows(
        zk: ZkEnv, zk_admin: KazooClient, sims: list[SimMesosMaster],
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = sims[0], sims[1]
    node_a = await register(zk_admin, zk, a)
    await register(zk_admin, zk, b)
    caplog.set_level(logging.INFO, logger="discoveryd.mesos")
    r = await start_daemon(settings_for(mesos={"zk": zk.url, "refresh_seconds": 3600}))
    probe = DnsProbe(r.dns_port, states_of(sims))
    try:
        async with probe:
            await eventually(lambda: probe.serves("m0"), timeout=60, what="leader a's state")
            watch = r.daemon.mesos.zk_watch
            assert watch is not None
            old = await eventually(lambda: watch.session, timeout=30, what="a zk session")
            expired_at = time.monotonic()
            await asyncio.to_thread(expire_session, zk.server.hosts, old)
            new = await eventually(lambda: _new_session(watch, old), timeout=60,
                                   what="a new session after expiry")
            assert any(rec.getMessage() == "zk_state state=lost" for rec in caplog.records)
            _, state = await r.get("/v1/state")
            assert state["mesos"]["zk_session"] == f"0x{new[0]:x}"
            assert state["mesos"]["zk_connected"] is True
            assert probe.serves("m0")

            make_leader(b, sims)  # then a later leader change is seen by the new session
            await asyncio.to_thread(zk_admin.delete, node_a)
            await eventually(lambda: probe.serves("m1"), timeout=60, what="new leader b")
        check_answers(probe, expired_at, ["m0", "m1"])
    finally:
        await r.daemon.stop()


def _new_session(watch: ZkMasterWatch, old: tuple[int, bytes]) -> tuple[int, bytes] | None:
    session = watch.session
    return session if session is not None and session[0] != old[0] else None
