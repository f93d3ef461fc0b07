"""MesosSource following the leader through a real ZooKeeper, fetching from simulated masters."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient

from discoveryd.metrics import Metrics
from discoveryd.settings import MesosSettings
from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.mesos import MesosSource
from discoveryd.store import Store
from tests.fakes.ports import free_port
from tests.fakes.zookeeper import ZkEnv, register_master
from tests.test_mesos_source import leader_pid, running, sample, stop, until, until_state


def register(client: KazooClient, zk: ZkEnv, sim: SimMesosMaster) -> str:
    return register_master(client, zk.path, sim.host, sim.port)


async def test_lowest_sequence_leads_and_deletion_fails_over(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster]) -> None:
    a, b = masters
    node_a = register(zk_admin, zk, a)
    register(zk_admin, zk, b)
    b.follow(a)
    store, metrics = Store(), Metrics()
    source = MesosSource(MesosSettings(zk=zk.url, refresh_seconds=3600), store, metrics)
    task = await running(source)
    try:
        state = await until_state(store, lambda s: leader_pid(s) == a.pid)
        assert state.leader is not None and state.leader.source == "zk"
        assert state.leader.address == a.address
        assert state.masters == (a.address, b.address)
        assert sample(metrics, "discoveryd_zookeeper_connected") == 1
        assert sample(metrics, "discoveryd_mesos_leader_source", source="zk") == 1
        b.lead()
        zk_admin.delete(node_a)  # the leader's session ends: b is elected
        state = await until_state(store, lambda s: leader_pid(s) == b.pid)
        assert state.masters == (b.address,)
        assert sample(metrics, "discoveryd_mesos_leader_changes_total") == 1
        assert source.status()["leader"] == b.address
    finally:
        await stop(task)


async def test_leader_change_abandons_fetch_from_hung_old_leader(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster]) -> None:
    a, b = masters
    node_a = register(zk_admin, zk, a)
    register(zk_admin, zk, b)
    settings = MesosSettings(zk=zk.url, refresh_seconds=0.2, state_timeout=100)
    store = Store()
    task = await running(MesosSource(settings, store, Metrics()))
    try:
        await until_state(store, lambda s: leader_pid(s) == a.pid)
        a.mode = "hang"
        seen = a.requests
        await until(lambda: a.requests > seen)  # a refresh is now stuck on a
        zk_admin.delete(node_a)
        # Well before the 100 s state_timeout: the stuck fetch was abandoned.
        await until_state(store, lambda s: leader_pid(s) == b.pid, timeout=30)
    finally:
        await stop(task)


async def test_zookeeper_outage_keeps_state_and_recovers(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster]) -> None:
    a, b = masters
    node_a = register(zk_admin, zk, a)
    register(zk_admin, zk, b)
    store, metrics = Store(), Metrics()
    source = MesosSource(MesosSettings(zk=zk.url, refresh_seconds=0.5), store, metrics)
    task = await running(source)
    try:
        await until_state(store, lambda s: leader_pid(s) == a.pid)
        zk.server.stop()
        await until(lambda: sample(metrics, "discoveryd_zookeeper_connected") == 0)
        assert source.status()["zk_connected"] is False
        # Without ZooKeeper the last leader it named is still read; the state stays a's.
        version = store.current.version
        await until_state(store, lambda s: s.version > version)
        assert leader_pid(store.current) == a.pid
        zk.server.start()
        await until(lambda: sample(metrics, "discoveryd_zookeeper_connected") == 1)
        await until(lambda: zk_admin.connected)
        zk_admin.delete(node_a)
        await until_state(store, lambda s: leader_pid(s) == b.pid)
        assert store.current.leader is not None and store.current.leader.source == "zk"
    finally:
        await stop(task)


async def test_no_leader_falls_back_to_static_then_follows_zookeeper(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster]) -> None:
    a, b = masters
    settings = MesosSettings(zk=zk.url, masters=[b.address], zk_detection_timeout=0.5)
    store, metrics = Store(), Metrics()
    task = await running(MesosSource(settings, store, metrics))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == b.pid
        assert state.leader is not None and state.leader.source == "static"
        assert sample(metrics, "discoveryd_mesos_leader_source", source="static") == 1
        b.follow(a)
        register(zk_admin, zk, a)  # a leader appears in ZooKeeper: followed without restart
        state = await until_state(store, lambda s: leader_pid(s) == a.pid)
        assert state.leader is not None and state.leader.source == "zk"
        assert sample(metrics, "discoveryd_mesos_leader_source", source="zk") == 1
    finally:
        await stop(task)


async def test_unreachable_zookeeper_falls_back_to_static(
        masters: list[SimMesosMaster]) -> None:
    a = masters[0]
    settings = MesosSettings(zk=f"zk://127.0.0.1:{free_port()}/mesos", masters=[a.address],
                             zk_detection_timeout=0.5)
    store, metrics = Store(), Metrics()
    source = MesosSource(settings, store, metrics)
    task = await running(source)
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == a.pid and state.leader is not None
        assert state.leader.source == "static"
        assert source.status()["zk_connected"] is False
        assert sample(metrics, "discoveryd_zookeeper_connected") == 0
    finally:
        await stop(task)


async def test_bad_node_skipped_and_dead_host_first(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster],
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = masters
    register_master(zk_admin, zk.path, "", 0, data=b"\x00not json")  # lowest sequence
    zk_admin.create(f"{zk.path}/info_", b"\x08legacy", ephemeral=True, sequence=True)
    zk_admin.create(f"{zk.path}/log_replicas", b"")
    register(zk_admin, zk, a)
    register(zk_admin, zk, b)
    url = f"zk://127.0.0.1:{free_port()},{zk.server.hosts}{zk.path}"
    store = Store()
    task = await running(MesosSource(MesosSettings(zk=url), store, Metrics()))
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == a.pid
        assert state.masters == (a.address, b.address)
        skipped = [r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("zk_master_skipped")]
        assert any("json.info_" in m and "not JSON" in m for m in skipped)
        assert any("legacy" in m for m in skipped)
        assert not any("log_replicas" in m for m in skipped)
        # Further events do not repeat the skip log lines.
        register(zk_admin, zk, b)
        await until_state(store, lambda s: len(s.masters) == 3)
        again = [r for r in caplog.records if r.getMessage().startswith("zk_master_skipped")]
        assert len(again) == len(skipped)
    finally:
        await stop(task)


async def test_run_survives_cancel_and_close_is_idempotent(
        zk: ZkEnv, masters: list[SimMesosMaster]) -> None:
    source = MesosSource(MesosSettings(zk=zk.url), Store(), Metrics())
    task = await running(source)
    await until(lambda: source.status()["zk_connected"] is True)
    await stop(task)
    await source.close()  # the daemon calls it again after cancelling run()
    assert source.status()["last_error"] == "no leading master known yet"
    assert source.status()["leader"] is None
