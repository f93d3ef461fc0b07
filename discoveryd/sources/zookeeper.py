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
from kazoo.exceptions import (
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
    ZookeeperError,
)
from kazoo.retry import KazooRetry

from discoveryd.model.mesos import canonical_ip, join_host_port
from discoveryd.sources.backoff import backoff
from discoveryd.sources.mesos_state import parse_pid

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
    if (not ip or not port) and "@" in pid:  # fall back to "master@ip:port" / "master@[v6]:port"
        try:
            parsed = parse_pid(pid)
        except ValueError:
            parsed = None
        if parsed is not None:
            if not ip and canonical_ip(parsed.host) is not None:
                ip = parsed.host
            elif not ip and not hostname:
                hostname = parsed.host
            port = port or parsed.port
    if isinstance(ip, str):  # "[2001:db8::1]" or "2001:DB8::1" -> "2001:db8::1"
        ip = canonical_ip(ip.removeprefix("[").removesuffix("]")) or ip
    host = ip or hostname
    if not isinstance(host, str) or not host:
        raise ValueError("no address, ip, hostname or pid")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"bad port {port!r}")
    return MasterInfo(seq=seq, host=host, port=port, ip=ip if isinstance(ip, str) else None,
                      hostname=hostname if isinstance(hostname, str) else None,
                      id=str(raw.get("id", "")),
                      pid=pid or f"master@{join_host_port(host, port)}")


def leader_from_children(
    children: dict[str, bytes],
) -> tuple[MasterInfo | None, tuple[MasterInfo, ...], list[str]]:
    """(leader, every readable master lowest sequence first, skipped reasons) from
    znode name -> data.

    The lowest `json.info_` sequence leads, whether or not its data can be read: as in
    Mesos' detector, an unreadable lowest node means no leader (None), never the next
    master in line, which is a standby. Children that are not master registrations
    (log_replicas, ...) are ignored silently; legacy protobuf `info_` nodes and
    unparseable data are reported.
    """
    masters: list[MasterInfo] = []
    skipped: list[str] = []
    lowest: tuple[int, str] | None = None  # (sequence, name) of the lowest json.info_ node
    for name, data in children.items():
        m = SEQ_RE.match(name)
        if m is None:
            if name.startswith(LEGACY_PREFIX):
                skipped.append(f"{name}: legacy protobuf MasterInfo, not supported")
            continue
        seq = int(m.group(1))
        if lowest is None or seq < lowest[0]:
            lowest = (seq, name)
        try:
            masters.append(parse_master_info(seq, data))
        except ValueError as e:
            skipped.append(f"{name}: {e}")
    masters.sort(key=lambda x: x.seq)
    if lowest is None or not masters or masters[0].seq != lowest[0]:
        if lowest is not None:
            skipped.append(f"{lowest[1]}: the lowest sequence (the leader) is unreadable: "
                           "no leader from ZooKeeper until it goes")
        return None, tuple(masters), skipped
    return masters[0], tuple(masters), skipped


ChildrenCallback = Callable[[dict[str, bytes]], None]
StateCallback = Callable[[str], None]
ErrorCallback = Callable[[str | None], None]

# Errors of the connection, not of the request: kazoo reconnects and the next CONNECTED
# state re-reads. Any other ZookeeperError (NoAuthError: wrong digest credentials,
# InvalidACLError, ...) is the server refusing the read: retried with back-off.
CONNECTION_ERRORS = (ConnectionLoss, OperationTimeoutError, SessionExpiredError)
RETRY_BASE = 0.5  # seconds before the first re-read after a refused read
RETRY_CAP = 30.0


class ZkMasterWatch:
    """Watches the masters' znodes; calls back on the loop with children data and states.

    `start()` returns at once: kazoo connects in its own thread and retries the
    ensemble forever, so one dead server (or all of them) never blocks start-up.
    """

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop,
                 on_children: ChildrenCallback, on_state: StateCallback,
                 session_timeout: float = 10.0, on_error: ErrorCallback | None = None,
                 retry_base: float = RETRY_BASE, retry_cap: float = RETRY_CAP) -> None:
        self.target = parse_zk_url(url)
        self._loop = loop
        self._on_children = on_children
        self._on_state = on_state
        self._on_error = on_error
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._refused = 0  # consecutive reads the server refused (NoAuthError, ...)
        self._retry: asyncio.TimerHandle | None = None  # the pending re-read (loop thread)
        self._stopped = False
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
        self._stopped = True  # a pending re-read (see _refused_read) then does nothing
        self._deliver(self._cancel_retry)
        self._client.stop()
        self._client.close()

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

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
        if self._stopped:
            return
        with self._read_lock:  # serialised, so the last delivery holds the newest data
            try:
                data = self._read_children()
            except CONNECTION_ERRORS as e:  # the next CONNECTED re-reads
                log.debug("zk_read_failed path=%s error=%r", self.target.path, e)
                return
            except ZookeeperError as e:  # refused by the server: no watch is set, retry
                self._refused_read(e)
                return
            except KazooException as e:  # connection trouble: the next CONNECTED re-reads
                log.debug("zk_read_failed path=%s error=%r", self.target.path, e)
                return
            if self._refused:
                self._refused = 0
                log.info("zk_read_recovered path=%s", self.target.path)
                if self._on_error is not None:
                    self._deliver(self._on_error, None)
            self._deliver(self._on_children, data)

    def _refused_read(self, e: ZookeeperError) -> None:
        """Warn (once per run of refusals), tell the loop, and read again after a back-off:
        a refused read leaves no watch behind, so nothing else would ever re-read."""
        self._refused += 1
        # The path and the error's type only: the URL's credentials are never logged.
        error = f"ZooKeeper refused reading {self.target.path}: {type(e).__name__}"
        if isinstance(e, NoAuthError):
            error += " (check the user:password in mesos.zk)"
        delay = backoff(self._refused, self._retry_base, self._retry_cap)
        if self._refused == 1:
            log.warning("zk_read_refused path=%s error=%s retry_in=%.1fs",
                        self.target.path, type(e).__name__, delay)
        else:
            log.debug("zk_read_refused path=%s error=%s retry_in=%.1fs attempt=%d",
                      self.target.path, type(e).__name__, delay, self._refused)
        if self._on_error is not None:
            self._deliver(self._on_error, error)
        self._deliver(self._arm_retry, delay)

    def _arm_retry(self, delay: float) -> None:
        """On the loop: re-read after `delay` seconds (one pending re-read at most)."""
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self._loop.call_later(delay, self._retry_read)

    def _retry_read(self) -> None:
        self._retry = None
        if not self._stopped and self._client.connected:
            self._client.handler.spawn(self._read)
        # else: disconnected; the next CONNECTED reads again

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
