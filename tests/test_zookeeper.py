"""Leader detection from ZooKeeper: the pure function, and the watch on a real server."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from discoveryd.sources.zookeeper import (
    MasterInfo,
    ZkMasterWatch,
    leader_from_children,
    parse_master_info,
    parse_zk_url,
)
from tests.fakes import zookeeper as zkfake
from tests.fakes.ports import free_port
from tests.fakes.zookeeper import ZkEnv, master_info, packed_ip, register_master


def info(ip: str, port: int = 5050, **extra: object) -> bytes:
    return json.dumps({**master_info(ip, port), **extra}).encode()


def test_lowest_sequence_leads_whatever_the_order() -> None:
    children = {
        "json.info_0000000012": info("10.0.0.2"),
        "log_replicas": b"",
        "json.info_0000000003": info("10.0.0.3", 5051),
        "json.info_0000000007": info("10.0.0.1"),
    }
    leader, masters, skipped = leader_from_children(children)
    assert leader is not None and leader.address == "10.0.0.3:5051"
    assert [m.address for m in masters] == ["10.0.0.3:5051", "10.0.0.1:5050", "10.0.0.2:5050"]
    assert skipped == []


def test_no_children_no_leader() -> None:
    assert leader_from_children({}) == (None, (), [])
    assert leader_from_children({"log_replicas": b""}) == (None, (), [])


def test_legacy_and_unparseable_nodes_are_skipped_with_reasons() -> None:
    children = {
        "info_0000000001": b"\x08\x01protobuf",
        "json.info_0000000002": info("10.0.0.2"),
        "json.info_0000000003": b"{not json",
        "json.info_0000000004": b'"a string"',
        "json.info_0000000005": json.dumps({"hostname": "m", "port": "x"}).encode(),
        "json.info_0000000006": info("10.0.0.6"),
    }
    leader, masters, skipped = leader_from_children(children)
    assert leader is not None and leader.ip == "10.0.0.2"
    assert [m.ip for m in masters] == ["10.0.0.2", "10.0.0.6"]
    assert sorted(r.split(":")[0] for r in skipped) == [
        "info_0000000001", "json.info_0000000003", "json.info_0000000004",
        "json.info_0000000005"]
    assert "legacy" in [r for r in skipped if r.startswith("info_")][0]


@pytest.mark.parametrize("bad", [b"{not json", b'"a string"', b'{"hostname": "m"}'])
def test_unreadable_lowest_node_means_no_leader_not_the_standby(bad: bytes) -> None:
    """Mesos' detector takes the lowest sequence of all and fails when its data cannot be
    parsed: the next node is a standby, never promoted here."""
    children = {
        "json.info_0000000007": info("10.0.0.7"),
        "json.info_0000000003": bad,
        "json.info_0000000009": info("10.0.0.9"),
    }
    leader, masters, skipped = leader_from_children(children)
    assert leader is None
    assert [m.ip for m in masters] == ["10.0.0.7", "10.0.0.9"]  # still listed, for /v1/state
    assert any(r.startswith("json.info_0000000003: the lowest sequence") for r in skipped)
    # Once it goes, the next lowest leads.
    del children["json.info_0000000003"]
    leader, _, skipped = leader_from_children(children)
    assert leader is not None and leader.ip == "10.0.0.7" and skipped == []


def test_master_info_fields() -> None:
    m = parse_master_info(9, info("10.1.2.3", 5050, hostname="m1.example"))
    assert m == MasterInfo(seq=9, host="10.1.2.3", port=5050, ip="10.1.2.3",
                           hostname="10.1.2.3", id=m.id, pid="master@10.1.2.3:5050")


def test_master_info_without_address_uses_packed_ip_or_pid() -> None:
    old = {"hostname": "m2", "ip": packed_ip("10.9.8.7"), "port": 5050, "id": "x",
           "pid": "master@10.9.8.7:5050"}
    m = parse_master_info(1, json.dumps(old).encode())
    assert (m.host, m.ip, m.port, m.hostname) == ("10.9.8.7", "10.9.8.7", 5050, "m2")
    m = parse_master_info(1, json.dumps({"pid": "master@10.0.0.9:5055"}).encode())
    assert m.address == "10.0.0.9:5055"
    m = parse_master_info(1, json.dumps({"address": {"hostname": "m3", "port": 5050}}).encode())
    assert (m.host, m.ip) == ("m3", None)


def test_pid_only_ipv6_master_info_is_unbracketed() -> None:
    """Old MasterInfo with only a pid: "master@[v6]:port" is an IPv6 host, not "[v6]"."""
    m = parse_master_info(1, json.dumps({"pid": "master@[2001:DB8::1]:5050", "id": "x"}).encode())
    assert (m.host, m.ip, m.port) == ("2001:db8::1", "2001:db8::1", 5050)
    assert m.address == "[2001:db8::1]:5050"
    m = parse_master_info(1, json.dumps({"pid": "master@m1.example:5051"}).encode())
    assert (m.host, m.ip, m.hostname, m.port) == ("m1.example", None, "m1.example", 5051)
    with pytest.raises(ValueError):  # a bare IPv6 pid is malformed (libprocess brackets it)
        parse_master_info(1, json.dumps({"pid": "master@2001:db8::1:5050"}).encode())


def test_ipv6_address_ip_and_synthesised_pid() -> None:
    raw = {"address": {"ip": "2001:db8::2", "port": 5050}}
    m = parse_master_info(1, json.dumps(raw).encode())
    assert (m.host, m.ip, m.address) == ("2001:db8::2", "2001:db8::2", "[2001:db8::2]:5050")
    assert m.pid == "master@[2001:db8::2]:5050"


@pytest.mark.parametrize("port", [True, 0, 65536, "5050", None])
def test_bad_ports_rejected(port: object) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_master_info(1, json.dumps({"address": {"ip": "10.0.0.1", "port": port}}).encode())


def test_zk_url_parsing() -> None:
    t = parse_zk_url("zk://u:p%40ss@h1:2181,h2:2182/mesos/")
    assert (t.hosts, t.path, t.credentials) == ("h1:2181,h2:2182", "/mesos", "u:p@ss")
    t = parse_zk_url("zk://h1")
    assert (t.hosts, t.path, t.credentials) == ("h1", "/", None)


class Collector:
    """Receives the watch's callbacks on the loop."""

    def __init__(self) -> None:
        self.children: list[dict[str, bytes]] = []
        self.states: list[str] = []
        self.errors: list[str | None] = []
        self.changed = asyncio.Event()

    def on_error(self, error: str | None) -> None:
        self.errors.append(error)
        self.changed.set()

    def on_children(self, children: dict[str, bytes]) -> None:
        self.children.append(children)
        self.changed.set()

    def on_state(self, state: str) -> None:
        self.states.append(state)
        self.changed.set()

    async def until(self, pred, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not pred():
            self.changed.clear()
            if loop.time() > end:
                raise AssertionError(f"timeout; states={self.states} children={self.children}")
            try:
                await asyncio.wait_for(self.changed.wait(), max(end - loop.time(), 0.01))
            except TimeoutError:
                pass

    def leader(self) -> str | None:
        if not self.children:
            return None
        leader = leader_from_children(self.children[-1])[0]
        return leader.address if leader else None


async def watching(url: str, c: Collector) -> ZkMasterWatch:
    w = ZkMasterWatch(url, asyncio.get_running_loop(), c.on_children, c.on_state)
    w.start()
    return w


async def test_watch_follows_registrations(zk: ZkEnv, zk_admin: KazooClient) -> None:
    c = Collector()
    w = await watching(zk.url, c)  # path does not exist yet
    try:
        await c.until(lambda: "connected" in c.states and c.children)
        assert c.leader() is None
        first = register_master(zk_admin, zk.path, "10.0.0.1", 5050)
        register_master(zk_admin, zk.path, "10.0.0.2", 5050)
        await c.until(lambda: len(c.children[-1]) == 2)
        assert c.leader() == "10.0.0.1:5050"
        zk_admin.delete(first)
        await c.until(lambda: c.leader() == "10.0.0.2:5050")
    finally:
        await asyncio.get_running_loop().run_in_executor(None, w.stop)


async def test_one_dead_host_first_still_connects(zk: ZkEnv, zk_admin: KazooClient) -> None:
    register_master(zk_admin, zk.path, "10.0.0.1", 5050)
    c = Collector()
    url = f"zk://127.0.0.1:{free_port()},{zk.server.hosts}{zk.path}"
    w = await watching(url, c)
    try:
        await c.until(lambda: c.leader() == "10.0.0.1:5050")
    finally:
        await asyncio.get_running_loop().run_in_executor(None, w.stop)


async def test_digest_credentials(zk: ZkEnv, zk_admin: KazooClient) -> None:
    acl = make_digest_acl("mesos", "secret", all=True)
    zk_admin.add_auth("digest", "mesos:secret")
    zk_admin.create(zk.path, b"", acl=[acl], makepath=True)
    c = Collector()
    w = await watching(f"zk://mesos:secret@{zk.server.hosts}{zk.path}", c)
    try:
        await c.until(lambda: c.children)
        assert c.children[-1] == {}
    finally:
        await asyncio.get_running_loop().run_in_executor(None, w.stop)


async def test_refused_read_warns_once_and_is_retried(
        zk: ZkEnv, zk_admin: KazooClient, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong digest password: ZooKeeper answers NoAuthError, which sets no watch, so the
    watch must read again by itself (with back-off) and say why meanwhile."""
    caplog.set_level(logging.DEBUG, "discoveryd.mesos")
    acl = make_digest_acl("mesos", "secret", all=True)
    zk_admin.add_auth("digest", "mesos:secret")
    zk_admin.create(zk.path, b"", acl=[acl], makepath=True)
    register_master(zk_admin, zk.path, "10.0.0.1", 5050)
    c = Collector()
    w = ZkMasterWatch(f"zk://mesos:wrong-pw@{zk.server.hosts}{zk.path}",
                      asyncio.get_running_loop(), c.on_children, c.on_state,
                      on_error=c.on_error, retry_base=0.05, retry_cap=0.2)
    w.start()
    try:
        await c.until(lambda: len(c.errors) >= 3)  # refused, and read again (and again)
        assert c.children == []
        assert all(e is not None and zk.path in e and "NoAuthError" in e for e in c.errors)
        messages = [r.getMessage() for r in caplog.records]
        refused = [r for r in caplog.records
                   if r.levelno == logging.WARNING and "zk_read_refused" in r.getMessage()]
        assert len(refused) == 1 and zk.path in refused[0].getMessage()
        assert not any("wrong-pw" in m for m in messages + [str(e) for e in c.errors])
        # The operator grants the credentials: the next retry reads, without a restart.
        zk_admin.set_acls(zk.path, [acl, make_digest_acl("mesos", "wrong-pw", read=True)])
        await c.until(lambda: c.leader() == "10.0.0.1:5050")
        assert c.errors[-1] is None
    finally:
        await asyncio.get_running_loop().run_in_executor(None, w.stop)


@pytest.mark.parametrize("word", ["ruok", "srvr"])
def test_fixture_server_answers_four_letter_words(
        zk_server: zkfake.ZooKeeperServer, word: str) -> None:
    assert zkfake.four_letter(zk_server.port, word)
