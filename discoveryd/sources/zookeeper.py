"""Detect the leading Mesos master from ZooKeeper, as Mesos' own detector does.

Each master holds an ephemeral sequential node `json.info_<10 digits>` holding its
MasterInfo as JSON; the lowest sequence leads. kazoo runs its own threads: every
ZooKeeper call happens there and results are handed to the asyncio loop with
`call_soon_threadsafe`, so the loop never waits for ZooKeeper.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.retry import KazooRetry

from discoveryd.model.mesos import join_host_port

log = logging.getLogger("discoveryd.mesos")

JSON_PREFIX = "json.info_"
LEGACY_PREFIX = "info_"
SEQ_RE = re.compile(r"^json\.info_(\d{10})$")


@dataclass(frozen=True, slots=True)
class MasterInfo:
    """A master as registered in ZooKeeper."""

    seq: int
    host: str  # what to connect to: the IP when known, else the hostname
    port: int
    ip: str | None
    hostname: str | None
    id: str
    pid: str

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class ZkTarget:
    """A parsed `zk://[user:pass@]h1:p1,h2:p2/path` URL."""

    hosts: str
    path: str
    credentials: str | None  # "user:pass" for digest auth


def parse_zk_url(url: str) -> ZkTarget:
    rest = url.removeprefix("zk://")
    authority, _, path = rest.partition("/")
    creds, _, hosts = authority.rpartition("@")
    path = "/" + path.strip("/")
    return ZkTarget(hosts=hosts, path=path, credentials=unquote(creds) if creds else None)


def _unpack_ip(value: Any) -> str | None:
    """MasterInfo.ip is an IPv4 address in network byte order, stored in a uint32."""
    if not isinstance(value, int) or not 0 < value < 2**32:
        return None
    return str(ipaddress.IPv4Address(struct.pack("<I", value)))


def parse_master_info(seq: int, data: bytes) -> MasterInfo:
    """JSON MasterInfo -> MasterInfo; raises ValueError naming what is wrong."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    address: dict[str, Any] = raw["address"] if isinstance(raw.get("address"), dict) else {}
    ip = address.get("ip") or _unpack_ip(raw.get("ip"))
    hostname = address.get("hostname") or raw.get("hostname")
    port = address.get("port") or raw.get("port")
    pid: str = raw["pid"] if isinstance(raw.get("pid"), str) else ""
    if (not ip or not port) and "@" in pid:  # fall back to "master@ip:port"
        pid_host, _, pid_port = pid.partition("@")[2].rpartition(":")
        ip, port = ip or pid_host or None, port or (int(pid_port) if pid_port.isdigit() else None)
    host = ip or hostname
    if not isinstance(host, str) or not host:
        raise ValueError("no address, ip, hostname or pid")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"bad port {port!r}")
    return MasterInfo(seq=seq, host=host, port=port, ip=ip if isinstance(ip, str) else None,
                      hostname=hostname if isinstance(hostname, str) else None,
                      id=str(raw.get("id", "")), pid=pid or f"master@{host}:{port}")


def leader_from_children(
    children: dict[str, bytes],
) -> tuple[MasterInfo | None, tuple[MasterInfo, ...], list[str]]:
    """(leader, every master leader first, skipped reasons) from znode name -> data.

    Children that are not master registrations (log_replicas, ...) are ignored
    silently; legacy protobuf `info_` nodes and unparseable data are reported.
    """
    masters: list[MasterInfo] = []
    skipped: list[str] = []
    for name, data in children.items():
        m = SEQ_RE.match(name)
        if m is None:
            if name.startswith(LEGACY_PREFIX):
                skipped.append(f"{name}: legacy protobuf MasterInfo, not supported")
            continue
        try:
            masters.append(parse_master_info(int(m.group(1)), data))
        except ValueError as e:
            skipped.append(f"{name}: {e}")
    masters.sort(key=lambda x: x.seq)
    return (masters[0] if masters else None), tuple(masters), skipped


ChildrenCallback = Callable[[dict[str, bytes]], None]
StateCallback = Callable[[str], None]


class ZkMasterWatch:
    """Watches the masters' znodes; calls back on the loop with children data and states.

    `start()` returns at once: kazoo connects in its own thread and retries the
    ensemble forever, so one dead server (or all of them) never blocks start-up.
    """

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop,
                 on_children: ChildrenCallback, on_state: StateCallback,
                 session_timeout: float = 10.0) -> None:
        self.target = parse_zk_url(url)
        self._loop = loop
        self._on_children = on_children
        self._on_state = on_state
        auth = [("digest", self.target.credentials)] if self.target.credentials else None
        self._client = KazooClient(
            hosts=self.target.hosts, timeout=session_timeout, auth_data=auth,
            connection_retry=KazooRetry(max_tries=-1, delay=0.2, max_delay=5),
            command_retry=KazooRetry(max_tries=3, delay=0.1, max_delay=1),
        )
        self._client.add_listener(self._state_listener)
        self._read_lock = threading.Lock()

    def start(self) -> None:
        self._client.start_async()

    @property
    def session(self) -> tuple[int, bytes] | None:
        """(session id, password) of the live ZooKeeper session; None while disconnected.
        The id tells operators (and outage tests) when a session expired and a new one began."""
        client_id: tuple[int, bytes] | None = self._client.client_id
        return client_id

    def stop(self) -> None:
        """Blocking (joins kazoo's threads): run it in an executor."""
        self._client.stop()
        self._client.close()

    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _state_listener(self, state: str) -> None:
        # kazoo's connection thread: must not block, so reads go to a handler thread.
        self._deliver(self._on_state, {KazooState.CONNECTED: "connected",
                                       KazooState.SUSPENDED: "suspended",
                                       KazooState.LOST: "lost"}.get(state, str(state).lower()))
        if state == KazooState.CONNECTED:
            self._client.handler.spawn(self._read)

    def _watch_fired(self, _event: Any) -> None:
        self._client.handler.spawn(self._read)

    def _read(self) -> None:
        """Read children and their data, re-arming the watch (kazoo handler thread)."""
        with self._read_lock:  # serialised, so the last delivery holds the newest data
            try:
                data = self._read_children()
            except KazooException as e:  # connection trouble: the next CONNECTED re-reads
                log.debug("zk_read_failed path=%s error=%r", self.target.path, e)
                return
            self._deliver(self._on_children, data)

    def _read_children(self) -> dict[str, bytes]:
        path = self.target.path
        try:
            children = self._client.get_children(path, watch=self._watch_fired)
        except NoNodeError:
            # No master registered yet: watch for the path to appear.
            if self._client.exists(path, watch=self._watch_fired) is None:
                return {}
            children = self._client.get_children(path, watch=self._watch_fired)
        data: dict[str, bytes] = {}
        for name in children:
            if not name.startswith(JSON_PREFIX):
                data[name] = b""  # not read: only its name matters
                continue
            try:
                data[name] = self._client.get(f"{path.rstrip('/')}/{name}")[0] or b""
            except NoNodeError:
                continue  # gone between list and read; its deletion fires the watch
        return data
