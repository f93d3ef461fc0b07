"""MesosSource with static masters, against real simulated masters (aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from discoveryd.metrics import Metrics
from discoveryd.model.cluster import ClusterState
from discoveryd.settings import MesosSettings
from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.mesos import MesosSource
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
        assert state.masters == (masters[1].address, dead)
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
        assert state.masters[0] == b.address
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
