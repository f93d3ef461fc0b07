"""MesosSource following the leader through a real ZooKeeper, fetching from simulated masters."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl
from pydantic import ValidationError

from discoveryd.metrics import Metrics
from discoveryd.settings import MesosSettings
from discoveryd.sim.mesos_master import SimMesosMaster
from discoveryd.sources.mesos import MesosSource
from discoveryd.store import Store
from tests.fakes.ports import free_port
from tests.fakes.zookeeper import ZkEnv, register_master
from tests.test_mesos_source import (
    leader_pid,
    master_names,
    records,
    running,
    sample,
    stop,
    until,
    until_state,
)


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
    zk_admin.create(f"{zk.path}/info_", b"\x08legacy", ephemeral=True, sequence=True,
                    makepath=True)  # lowest sequence, but not a json.info_ node
    register(zk_admin, zk, a)
    register_master(zk_admin, zk.path, "", 0, data=b"\x00not json")  # a standby's
    zk_admin.create(f"{zk.path}/log_replicas", b"")
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


async def test_unreadable_leader_node_is_no_leader_not_its_standby(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster],
        caplog: pytest.LogCaptureFixture) -> None:
    """The lowest node's data cannot be read: ZooKeeper names no leader (as Mesos' detector
    fails), so after zk_detection_timeout the static masters are asked; the standby in
    ZooKeeper is never promoted. Once the bad node goes, ZooKeeper is followed again."""
    a, b = masters
    bad = register_master(zk_admin, zk.path, "", 0, data=b"{truncated")
    register(zk_admin, zk, b)  # a standby: following a
    b.follow(a)
    settings = MesosSettings(zk=zk.url, masters=[a.address], zk_detection_timeout=0.5)
    store = Store()
    source = MesosSource(settings, store, Metrics())
    task = await running(source)
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert state.leader is not None and state.leader.source == "static"
        assert leader_pid(state) == a.pid
        assert b.requests == 0  # never asked as if it led
        assert source.status()["zk_masters"] == [b.address]
        assert any(r.levelno == logging.WARNING and "the lowest sequence" in r.getMessage()
                   for r in caplog.records)
        b.lead()
        zk_admin.delete(bad)  # b is now the lowest: it leads
        state = await until_state(store, lambda s: leader_pid(s) == b.pid)
        assert state.leader is not None and state.leader.source == "zk"
    finally:
        await stop(task)


async def test_ipv6_masters_from_zookeeper_in_records(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster]) -> None:
    """Standbys registered with an IPv6 address.ip get masterN AAAA records (leader first,
    as mesos-dns's ZooKeeper detector orders them)."""
    a = masters[0]
    register(zk_admin, zk, a)
    register_master(zk_admin, zk.path, "2001:db8::7", 5050)
    register_master(zk_admin, zk.path, "::1", 5051, hostname="m3.example")
    store = Store()
    source = MesosSource(MesosSettings(zk=zk.url), store, Metrics())
    task = await running(source)
    try:
        state = await until_state(store, lambda s: len(s.masters) == 3)
        assert state.masters == (a.address, "[2001:db8::7]:5050", "[::1]:5051")
        assert source.status()["zk_masters"] == [a.address, "[2001:db8::7]:5050",
                                                 "[::1]:5051"]
        rs = records(state.mesos, state.masters)
        assert not [s for s in rs.skipped if s[0].startswith("master")]
        names = master_names(rs)
        assert names["leader.mesos."] == names["master0.mesos."] == ("127.0.0.1",)
        assert rs.aaaa["master1.mesos."] == ("2001:db8::7",)
        assert rs.aaaa["master2.mesos."] == ("::1",)
        assert rs.aaaa["master.mesos."] == ("2001:db8::7", "::1")
    finally:
        await stop(task)


def unusable_zk_settings(url: str, **kw: object) -> MesosSettings:
    """Settings naming a ZooKeeper URL kazoo refuses. If settings validation learns to
    reject it too, the source must still cope with what it is given."""
    try:
        return MesosSettings(zk=url, **kw)
    except ValidationError:
        return MesosSettings.model_construct(**{**MesosSettings().model_dump(), "zk": url,
                                                **kw})


# Both pass the settings check (split_host_port) but kazoo's host parsing raises ValueError.
UNUSABLE_ZK = ["zk://[zk1]:2181/mesos", "zk://h1:\uff12\uff11\uff18\uff11/mesos"]


@pytest.mark.parametrize("url", UNUSABLE_ZK)
async def test_zk_url_kazoo_refuses_runs_on_static_masters(
        url: str, masters: list[SimMesosMaster], caplog: pytest.LogCaptureFixture) -> None:
    a = masters[0]
    # A long detection timeout: the static masters are used at once, not after it.
    settings = unusable_zk_settings(url, masters=[a.address], zk_detection_timeout=3600)
    store = Store()
    source = MesosSource(settings, store, Metrics())
    task = await running(source)
    try:
        state = await until_state(store, lambda s: s.mesos is not None)
        assert leader_pid(state) == a.pid
        assert state.leader is not None and state.leader.source == "static"
        status = source.status()
        assert status["zk_error"] is not None and "unusable" in status["zk_error"]
        assert status["zk_connected"] is False and source.zk_watch is None
        assert any(r.levelno == logging.ERROR and r.getMessage().startswith("zk_watch_failed")
                   for r in caplog.records)
        assert not task.done()
    finally:
        await stop(task)
    assert source._session is None  # closed: no "Unclosed client session"


async def test_zk_url_kazoo_refuses_without_static_masters_keeps_running() -> None:
    source = MesosSource(unusable_zk_settings(UNUSABLE_ZK[0]), Store(), Metrics())
    task = await running(source)
    try:
        await until(lambda: source.status()["last_error"] is not None)
        await until(lambda: "unusable" in source.status()["last_error"])
        assert not task.done()
    finally:
        await stop(task)


async def test_wrong_digest_password_is_reported_and_retried(
        zk: ZkEnv, zk_admin: KazooClient, masters: list[SimMesosMaster],
        caplog: pytest.LogCaptureFixture) -> None:
    a = masters[0]
    acl = make_digest_acl("mesos", "secret", all=True)
    zk_admin.add_auth("digest", "mesos:secret")
    zk_admin.create(zk.path, b"", acl=[acl], makepath=True)
    register(zk_admin, zk, a)
    url = f"zk://mesos:not-the-pw@{zk.server.hosts}{zk.path}"
    store = Store()
    source = MesosSource(MesosSettings(zk=url), store, Metrics())
    task = await running(source)
    try:
        await until(lambda: source.status()["zk_error"] is not None)
        await until(lambda: "NoAuthError" in (source.status()["last_error"] or ""))
        status = source.status()
        assert zk.path in status["zk_error"] and "NoAuthError" in status["zk_error"]
        assert status["zk_connected"] is True and status["leader"] is None
        warned = [r.getMessage() for r in caplog.records
                  if r.levelno == logging.WARNING and "zk_read_refused" in r.getMessage()]
        assert len(warned) == 1 and zk.path in warned[0]
        everything = [r.getMessage() for r in caplog.records] + [str(status)]
        assert not any("not-the-pw" in m for m in everything)
        # Access granted: the retried read finds the leader, without a restart.
        await asyncio.to_thread(zk_admin.set_acls, zk.path,
                                [acl, make_digest_acl("mesos", "not-the-pw", read=True)])
        state = await until_state(store, lambda s: leader_pid(s) == a.pid)
        assert state.leader is not None and state.leader.source == "zk"
        assert source.status()["zk_error"] is None
    finally:
        await stop(task)
