"""MesosSource with static masters, against real simulated masters (aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from discoveryd.dns.records import build_records
from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.metrics import Metrics
from discoveryd.model.cluster import ClusterState, Leader
from discoveryd.model.mesos import MesosState
from discoveryd.settings import MesosSettings
from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.mesos import MesosSource
from discoveryd.sources.mesos_state import parse_master_state
from discoveryd.store import Store
from tests.daemon_harness import eventually
from tests.fakes.ports import free_port

DEADLINE = 30.0


async def until_state(store: Store, pred: Callable[[ClusterState], bool],
                      timeout: float = DEADLINE) -> ClusterState:
    """Wait (event-driven, with a deadline) until the store's state satisfies pred."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred(store.current):
        remaining = end - loop.time()
        if remaining <= 0:
            raise AssertionError(f"condition not met in {timeout}s; state={store.current}")
        try:
            await asyncio.wait_for(store.wait_newer(store.current.version), remaining)
        except TimeoutError:
            pass
    return store.current


async def until(pred: Callable[[], bool], timeout: float = DEADLINE) -> None:
    await eventually(pred, timeout=timeout, interval=0.02)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


async def running(source: MesosSource) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(source.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def leader_pid(state: ClusterState) -> str | None:
    return state.mesos.leader if state.mesos else None


def records(mesos: MesosState | None, masters: tuple[str, ...]) -> RecordSet:
    """The records the daemon builds from a state and its masters (the master names only
    matter here)."""
    assert mesos is not None
    return build_records(mesos, domain="mesos", masters=masters, ip_sources=["host"],
                         enforce_rfc952=False, mname="ns1.mesos", listen_ips=[])


def master_names(rs: RecordSet) -> dict[str, tuple[str, ...]]:
    """leader/master/masterN -> their A and AAAA addresses together."""
    names = {n for n in rs.names() if n.split(".")[0].startswith(("leader", "master"))}
    return {n: rs.a.get(n, ()) + rs.aaaa.get(n, ()) for n in sorted(names) if "_" not in n}


async def test_first_master_down_second_used(masters: list[SimMesosMaster]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = MesosSettings(masters=[dead, masters[1].address], refresh_seconds=60)
    store, metrics = Store(), Metrics()
    task = await running(MesosSource(settings, store, metrics))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == masters[1].pid
        assert state.leader is not None and state.leader.address == masters[1].address
        assert state.leader.source == "static"
        assert state.masters == (dead, masters[1].address)  # configured order, as mesos-dns
        assert sample(metrics, "discoveryd_mesos_state_fetches_total", result="error") >= 1
        assert sample(metrics, "discoveryd_mesos_leader_source", source="static") == 1
        assert sample(metrics, "discoveryd_last_update_timestamp_seconds", source="mesos") > 0
    finally:
        await stop(task)


async def test_non_leader_names_the_leader(masters: list[SimMesosMaster]) -> None:
    a, b = masters
    a.follow(b)
    settings = MesosSettings(masters=[a.address], refresh_seconds=60)
    store, metrics = Store(), Metrics()
    source = MesosSource(settings, store, metrics)
    task = await running(source)
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == b.pid
        assert state.leader is not None and state.leader.address == b.address
        assert state.masters == (a.address, b.address)  # configured, then the leader
        assert b.requests == 1
        assert sample(metrics, "discoveryd_mesos_state_fetches_total", result="not_leader") == 1
        assert source.status()["leader"] == b.address
    finally:
        await stop(task)


async def test_http_redirect_to_leader_is_followed(masters: list[SimMesosMaster]) -> None:
    a, b = masters
    a.mode, a.redirect_to = "redirect", b.address
    store = Store()
    task = await running(MesosSource(MesosSettings(masters=[a.address]), store, Metrics()))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == b.pid
        assert state.leader is not None and state.leader.address == b.address
    finally:
        await stop(task)


async def test_master_by_hostname(masters: list[SimMesosMaster]) -> None:
    settings = MesosSettings(masters=[f"localhost:{masters[0].port}"])
    store = Store()
    task = await running(MesosSource(settings, store, Metrics()))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == masters[0].pid
        assert state.leader is not None and state.leader.host == "localhost"
        assert state.leader.ip == "127.0.0.1"  # learnt from the master's own pid
        assert state.masters == (masters[0].address,)
    finally:
        await stop(task)


@pytest.mark.parametrize("mode", ["error", "garbage", "hang"])
async def test_failures_keep_last_good_state(masters: list[SimMesosMaster], mode: str) -> None:
    a = masters[0]
    settings = MesosSettings(masters=[a.address], refresh_seconds=0.2, state_timeout=0.5)
    store, metrics = Store(), Metrics()
    source = MesosSource(settings, store, metrics)
    task = await running(source)
    try:
        good = await until_state(store, lambda s: s.mesos is not None)
        a.mode = mode
        seen = a.requests
        await until(lambda: a.requests >= seen + 2 and source.status()["last_error"] is not None)
        assert store.current.mesos is good.mesos
        assert store.current.mesos_updated_at == good.mesos_updated_at
        result = "invalid" if mode == "garbage" else "error"
        assert sample(metrics, "discoveryd_mesos_state_fetches_total", result=result) >= 1
        a.lead()  # recovers: a fresh state is loaded again
        await until_state(store, lambda s: s.mesos_updated_at != good.mesos_updated_at)
        assert source.status()["last_error"] is None
    finally:
        await stop(task)


async def test_request_refresh_is_debounced(masters: list[SimMesosMaster]) -> None:
    a = masters[0]
    store = Store()
    source = MesosSource(MesosSettings(masters=[a.address], refresh_seconds=3600), store,
                         Metrics())
    task = await running(source)
    try:
        first = await until_state(store, lambda s: s.mesos is not None)
        for _ in range(50):
            source.request_refresh()
        await until_state(store, lambda s: s.version > first.version)
        # the burst cost one fetch at once and at most one trailing fetch
        assert 2 <= a.requests <= 3
    finally:
        await stop(task)


async def test_static_masters_keep_configured_order_whoever_leads(
        masters: list[SimMesosMaster]) -> None:
    """Without ZooKeeper mesos-dns numbers masterN in the configured order (main.go hands
    config.Masters over as is); only its ZooKeeper detector puts the leader first."""
    a, b = masters
    a.follow(b)
    store = Store()
    task = await running(MesosSource(MesosSettings(masters=[a.address, b.address]), store,
                                     Metrics()))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert state.leader is not None and state.leader.address == b.address
        assert state.masters == (a.address, b.address)
    finally:
        await stop(task)


def test_static_master_numbering_matches_mesos_dns() -> None:
    source = MesosSource(MesosSettings(masters=["10.0.0.1:5050", "10.0.0.2:5050",
                                                "10.0.0.3:5050"]), Store(), Metrics())
    leader = Leader("10.0.0.2", 5050, "static", "10.0.0.2")  # found through 10.0.0.1
    masters = source._masters_for(leader)
    assert masters == ("10.0.0.1:5050", "10.0.0.2:5050", "10.0.0.3:5050")
    mesos = parse_master_state({"leader": "master@10.0.0.2:5050"})
    assert master_names(records(mesos, masters)) == {
        "leader.mesos.": ("10.0.0.2",),
        "master.mesos.": ("10.0.0.2", "10.0.0.1", "10.0.0.3"),
        "master0.mesos.": ("10.0.0.1",),
        "master1.mesos.": ("10.0.0.2",),
        "master2.mesos.": ("10.0.0.3",),
    }
    # A leader that is not listed comes last (mesos-dns numbers it after the list).
    other = Leader("10.0.0.9", 5050, "static", "10.0.0.9")
    assert source._masters_for(other)[-1] == "10.0.0.9:5050"
    names = master_names(records(parse_master_state({"leader": "master@10.0.0.9:5050"}),
                                 source._masters_for(other)))
    assert names["master3.mesos."] == ("10.0.0.9",)
    assert names["master0.mesos."] == ("10.0.0.1",)


def test_ipv6_static_leader_gets_master_names() -> None:
    source = MesosSource(MesosSettings(masters=["[2001:db8::1]:5050", "[2001:db8::2]:5050",
                                                "[::1]:5050"]), Store(), Metrics())
    leader = Leader("2001:db8::2", 5050, "static", "2001:db8::2")
    masters = source._masters_for(leader)
    assert masters == ("[2001:db8::1]:5050", "[2001:db8::2]:5050", "[::1]:5050")
    rs = records(parse_master_state({"leader": "master@[2001:db8::2]:5050"}), masters)
    assert not [s for s in rs.skipped if s[0].startswith("master")]
    assert master_names(rs) == {
        "leader.mesos.": ("2001:db8::2",),
        "master.mesos.": ("2001:db8::2", "2001:db8::1", "::1"),
        "master0.mesos.": ("2001:db8::1",),
        "master1.mesos.": ("2001:db8::2",),
        "master2.mesos.": ("::1",),
    }
    assert rs.aaaa["master2.mesos."] == ("::1",) and "master2.mesos." not in rs.a
    assert Srv("master1.mesos.", 5050) in rs.srv["_master._tcp.mesos."]


async def test_ipv6_static_masters_in_records(masters: list[SimMesosMaster]) -> None:
    """A live leader on 127.0.0.1 and IPv6 masters listed after it: each of them is a
    masterN with an AAAA record, as mesos-dns serves them."""
    a = masters[0]
    settings = MesosSettings(masters=[a.address, "[2001:db8::2]:5050", "[::1]:5051"])
    store = Store()
    task = await running(MesosSource(settings, store, Metrics()))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert state.masters == (a.address, "[2001:db8::2]:5050", "[::1]:5051")
        rs = records(state.mesos, state.masters)
        names = master_names(rs)
        assert names["master0.mesos."] == ("127.0.0.1",)
        assert rs.aaaa["master1.mesos."] == ("2001:db8::2",)
        assert rs.aaaa["master2.mesos."] == ("::1",)
        assert rs.aaaa["master.mesos."] == ("2001:db8::2", "::1")
        assert Srv("master2.mesos.", 5051) in rs.srv["_master._tcp.mesos."]
    finally:
        await stop(task)
