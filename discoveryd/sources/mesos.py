"""Follow the leading Mesos master and load its state into the store.

The leader comes from ZooKeeper (`mesos.zk`) or from the static `mesos.masters`
list, which is also the fallback when ZooKeeper has shown no leader for
`zk_detection_timeout` seconds. A leader change fetches at once; otherwise the
state is re-read every `refresh_seconds` or, debounced, on `request_refresh()`.
Every failure keeps the last good state.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from discoveryd.metrics import Metrics
from discoveryd.model.cluster import Leader, with_mesos
from discoveryd.model.mesos import MesosState, Pid, join_host_port
from discoveryd.settings import MesosSettings, redact_url, split_host_port
from discoveryd.sources.backoff import backoff
from discoveryd.sources.state_decoder import StateDecoder, Undecodable
from discoveryd.sources.zookeeper import MasterInfo, ZkMasterWatch, leader_from_children
from discoveryd.store import Store

log = logging.getLogger("discoveryd.mesos")

DEBOUNCE_SECONDS = 0.25
LEADER_SOURCES = ("zk", "static", "none")


class FetchError(Exception):
    """One state request failed; `result` is its metric label (error, invalid, not_leader)."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


class NoLeader(Exception):
    """Neither ZooKeeper nor a static list names a master to ask (yet)."""


def _ip_or_none(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _same(pid: Pid, host: str, port: int) -> bool:
    return pid.port == port and pid.host == host.lower()


class MesosSource:
    def __init__(self, settings: MesosSettings, store: Store, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._static = [split_host_port(m, 5050) for m in settings.masters]
        self._wake = asyncio.Event()
        self._debounce: asyncio.TimerHandle | None = None
        self._last_fire = float("-inf")  # loop time of the last event-triggered fetch
        self._session: aiohttp.ClientSession | None = None
        self._zk: ZkMasterWatch | None = None
        self._zk_masters: tuple[MasterInfo, ...] = ()
        self._zk_leader: MasterInfo | None = None  # None also when its node is unreadable
        self._zk_error: str | None = None  # the watch could not be made or reads are refused
        self._zk_unusable = False  # the zk URL was refused: static masters only
        self._zk_connected = False
        self._zk_missing_since: float | None = None  # loop time since when no usable zk leader
        self._skips_logged: set[str] = set()
        self._leader: Leader | None = None
        self._last_refresh: float | None = None
        self._last_error: str | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._decoder = StateDecoder()

    # --- public -----------------------------------------------------------

    def request_refresh(self) -> None:
        """Fetch now if nothing was fetched for DEBOUNCE_SECONDS, else once that much time
        after the last one: the first task event of a deployment is answered at once, and
        a burst costs at most one fetch per DEBOUNCE_SECONDS (the last one sees it all)."""
        if self._debounce is not None or self._wake.is_set():
            return
        loop = asyncio.get_running_loop()
        wait = self._last_fire + DEBOUNCE_SECONDS - loop.time()
        if wait <= 0:
            self._fire()
        else:
            self._debounce = loop.call_later(wait, self._fire)

    @property
    def zk_watch(self) -> ZkMasterWatch | None:
        """The ZooKeeper watch while running with `mesos.zk` (None otherwise)."""
        return self._zk

    def status(self) -> dict[str, Any]:
        """For /v1/state."""
        session = self._zk.session if self._zk is not None else None
        return {
            "leader": self._leader.address if self._leader else None,
            "source": self._leader.source if self._leader else None,
            "zk": redact_url(self._settings.zk) if self._settings.zk else None,
            "zk_connected": self._zk_connected if self._settings.zk else None,
            "zk_session": f"0x{session[0]:x}" if session else None,
            "zk_masters": [m.address for m in self._zk_masters],
            "zk_error": self._zk_error,
            "last_refresh": self._last_refresh,
            "last_error": self._last_error,
        }

    async def run(self) -> None:
        """Long-lived: the one place that catches, logs, counts and backs off."""
        failures = 0
        try:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.state_timeout))
            self._set_leader_gauge(None)
            if self._settings.zk:
                self._start_zk(self._settings.zk)
            while True:
                self._wake.clear()
                try:
                    await self._refresh_once()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except NoLeader as e:  # waiting for ZooKeeper: not a failure to back off from
                    why = f"{e} ({self._zk_error})" if self._zk_error else str(e)
                    if self._last_error != why:
                        log.info("waiting_for_leader %s", why)
                    self._last_error = why
                except Exception as e:  # keep following; the last good state stays
                    failures += 1
                    self._last_error = str(e)
                    log.warning("refresh_failed error=%s", e)
                await self._sleep(self._next_delay(failures))
        finally:
            await self.close()

    def _start_zk(self, url: str) -> None:
        """Start the ZooKeeper watch; a URL kazoo refuses leaves the static masters only."""
        loop = asyncio.get_running_loop()
        self._metrics.zk_connected.set(0)
        self._zk_missing_since = loop.time()
        try:
            self._zk = ZkMasterWatch(url, loop, self._on_zk_children, self._on_zk_state,
                                     on_error=self._on_zk_error)
            self._zk.start()
        except Exception as e:  # kazoo's host parsing: ValueError("bad hostname"), ...
            self._zk, self._zk_unusable = None, True
            self._zk_error = f"mesos.zk {redact_url(url)} unusable: {e}"
            self._last_error = self._zk_error
            log.error("zk_watch_failed zk=%s error=%s; %s", redact_url(url), e,
                      "using the static masters" if self._static else "no static masters")
            return
        log.info("zk_watch_started zk=%s", redact_url(url))

    async def close(self) -> None:
        """Release the HTTP session and the ZooKeeper client (idempotent)."""
        if self._debounce is not None:
            self._debounce.cancel()
            self._debounce = None
        zk, self._zk = self._zk, None
        if zk is not None:
            await asyncio.get_running_loop().run_in_executor(None, zk.stop)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._decoder.close()

    # --- ZooKeeper callbacks (on the loop) -----------------------------------

    def _on_zk_state(self, state: str) -> None:
        self._zk_connected = state == "connected"
        self._metrics.zk_connected.set(1 if self._zk_connected else 0)
        log.info("zk_state state=%s", state)
        self._update_missing()

    def _on_zk_error(self, error: str | None) -> None:
        """The watch's reads are refused (NoAuthError, ...) or, with None, work again."""
        if error != self._zk_error:
            self._zk_error = error
            self._fire()  # a refresh now: last_error says why no leader is known

    def _on_zk_children(self, children: dict[str, bytes]) -> None:
        leader, masters, skipped = leader_from_children(children)
        for reason in skipped:
            if reason not in self._skips_logged:
                self._skips_logged.add(reason)
                log.warning("zk_master_skipped %s", reason)
        old, self._zk_masters = self._zk_masters, masters
        old_leader, self._zk_leader = self._zk_leader, leader
        self._update_missing()
        if leader != old_leader:
            log.info("zk_leader_detected leader=%s masters=%s",
                     leader.address if leader else None, [m.address for m in masters])
            if self._inflight is not None:
                self._inflight.cancel()  # possibly stuck on the old leader
            self._fire()  # a leader change fetches immediately
        elif masters != old:
            self.request_refresh()  # only the other masters changed: refresh ClusterState.masters

    def _update_missing(self) -> None:
        usable = self._zk_connected and self._zk_leader is not None
        if usable:
            if self._zk_missing_since is not None:
                self._zk_missing_since = None
                self._fire()  # back from fallback or from an outage: follow ZooKeeper again
        elif self._zk_missing_since is None:
            self._zk_missing_since = asyncio.get_running_loop().time()

    # --- one refresh ---------------------------------------------------------

    async def _refresh_once(self) -> None:
        """refresh(), which a leader change may cancel (a hung old leader must not delay it)."""
        inflight = self._inflight = asyncio.ensure_future(self.refresh())
        try:
            await asyncio.wait({inflight})
        finally:
            self._inflight = None
            inflight.cancel()  # no-op when done; reached early only if run() is cancelled
        if inflight.cancelled():
            log.info("refresh_superseded by a leader change")
            return
        inflight.result()  # re-raise the refresh's error

    async def refresh(self) -> None:
        """Fetch from the first candidate that answers as (or names) the leader."""
        candidates = self._candidates()
        if not candidates:
            raise NoLeader("no leading master known yet")
        errors = []
        for candidate in candidates:
            try:
                state, leader = await self._fetch_leader(candidate)
            except FetchError as e:
                errors.append(str(e))
                continue
            self._install(state, leader)
            return
        raise FetchError("error", "; ".join(errors))

    def _candidates(self) -> list[Leader]:
        static = [Leader(h, p, "static", _ip_or_none(h)) for h, p in self._static]
        if not self._settings.zk or self._zk_unusable:
            return static
        zk_leader = self._zk_leader
        as_leader = [Leader(zk_leader.host, zk_leader.port, "zk", zk_leader.ip)] if zk_leader else []
        if self._zk_missing_since is None:
            return as_leader
        if static and self._fallback_due() <= 0:
            return static
        return as_leader  # ZooKeeper unreachable: the last leader it named, if any

    def _fallback_due(self) -> float:
        """Seconds until the static fallback applies (<= 0: it does now)."""
        if self._zk_missing_since is None:
            return float("inf")
        elapsed = asyncio.get_running_loop().time() - self._zk_missing_since
        return self._settings.zk_detection_timeout - elapsed

    async def _fetch_leader(self, master: Leader) -> tuple[MesosState, Leader]:
        """Fetch from `master`; if it names another leader, fetch from that one once."""
        state, own, redirected = await self._fetch(master)
        if own is None or _same(state.leader_pid, own.host, own.port):
            self._metrics.mesos_state_fetches.labels("ok").inc()
            if redirected and own is not None:  # HTTP redirect: we talked to `own`
                return state, Leader(own.host, own.port, master.source, _ip_or_none(own.host))
            return state, Leader(master.host, master.port, master.source,
                                 master.ip or (_ip_or_none(own.host) if own else None))
        self._metrics.mesos_state_fetches.labels("not_leader").inc()
        named = state.leader_pid
        log.info("not_leader master=%s leader=%s", master.address, state.leader)
        target = Leader(named.host, named.port, master.source, _ip_or_none(named.host))
        state, own, _ = await self._fetch(target)
        if own is not None and not _same(state.leader_pid, own.host, own.port):
            self._metrics.mesos_state_fetches.labels("not_leader").inc()
            raise FetchError("not_leader", f"{target.address} is not the leader either")
        self._metrics.mesos_state_fetches.labels("ok").inc()
        return state, target

    async def _fetch(self, master: Leader) -> tuple[MesosState, Pid | None, bool]:
        """(state, the answering master's own pid, whether HTTP redirected us)."""
        try:
            return await self._get_state(master)
        except FetchError as e:
            self._metrics.mesos_state_fetches.labels(e.result).inc()
            raise

    async def _get_state(self, master: Leader) -> tuple[MesosState, Pid | None, bool]:
        assert self._session is not None, "run() opens the session"
        url = f"{self._settings.scheme}://{master.address}/master/state"
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise FetchError("error", f"{url}: HTTP {resp.status}")
                body = await resp.read()
                redirected = bool(resp.history)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise FetchError("error", f"{url}: {type(e).__name__}: {e}") from None
        finally:
            self._metrics.mesos_state_fetch_seconds.observe(loop.time() - started)
        # Decoding a large cluster's state takes a few hundred ms: off the loop (and its GIL).
        decoded = await self._decoder.decode(body)
        if isinstance(decoded, Undecodable):
            raise FetchError(decoded.result, f"{url}: {decoded.reason}")
        state, own = decoded
        return state, own, redirected

    def _install(self, state: MesosState, leader: Leader) -> None:
        now = self._clock()
        masters = self._masters_for(leader)
        old = self._leader
        self._store.apply(lambda s: with_mesos(s, state, leader, masters, now))
        if old is None or (old.host, old.port) != (leader.host, leader.port):
            if old is not None:
                self._metrics.mesos_leader_changes.inc()
            log.info("leader_changed from=%s to=%s source=%s",
                     old.address if old else None, leader.address, leader.source)
        elif old.source != leader.source:
            log.info("leader_source_changed leader=%s source=%s", leader.address, leader.source)
        self._leader = leader
        self._last_refresh = now
        self._last_error = None
        self._metrics.last_update.labels("mesos").set(now)
        self._set_leader_gauge(leader.source)

    def _masters_for(self, leader: Leader) -> tuple[str, ...]:
        """"host:port" ("[v6]:port") of every known master, in the order mesos-dns numbers
        masterN: from ZooKeeper the leader first, then the others (detect/masters.go
        ordered()); from the static list its configured order (main.go hands over
        config.Masters as is), the leader appended when it is not listed."""
        lead = join_host_port(leader.ip or leader.host, leader.port)
        same = {lead.lower(), join_host_port(leader.host, leader.port).lower()}
        if leader.source == "zk" and self._zk_masters:
            others = [join_host_port(m.ip or m.host, m.port) for m in self._zk_masters]
            return (lead, *[m for m in others if m.lower() not in same])
        # The leader's own entry by the IP it was reached at (a listed hostname would only
        # resolve to it again); its place in the list stays.
        static = tuple(lead if m.lower() in same else m
                       for m in (join_host_port(h, p) for h, p in self._static))
        return static if lead in static else (*static, lead)

    def _set_leader_gauge(self, source: str | None) -> None:
        for s in LEADER_SOURCES:
            self._metrics.mesos_leader.labels(s).set(1 if s == (source or "none") else 0)

    # --- timing ----------------------------------------------------------------

    def _fire(self) -> None:
        if self._debounce is not None:
            self._debounce.cancel()
            self._debounce = None
        self._last_fire = asyncio.get_running_loop().time()
        self._wake.set()

    def _next_delay(self, failures: int) -> float:
        delay = self._settings.refresh_seconds
        if failures:
            delay = backoff(failures + 1, 0.5, delay)
        due = self._fallback_due()
        if self._static and 0 < due < delay:  # wake when the static fallback applies
            delay = due
        return delay

    async def _sleep(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):  # not wait_for: it can swallow a cancel on 3.11
                await self._wake.wait()
        except TimeoutError:
            pass
