"""Composition: the only module that wires sources, store, DNS, HAProxy and the API.

Data flows one way: sources -> store -> (records -> DNS server, view -> haproxy.cfg).
Which halves run follows from the settings:
- Mesos source when `mesos.zk` or `mesos.masters` is set;
- DNS server when `dns.enabled`;
- Marathon source when `marathon.urls` is set;
- HAProxy pipeline when `haproxy.enabled` and there is a Marathon to read apps from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from discoveryd.admin.app import build_app
from discoveryd.dns.recordset import RecordSet
from discoveryd.metrics import Metrics
from discoveryd.model.cluster import ClusterState
from discoveryd.settings import Settings, split_host_port
from discoveryd.store import Store

log = logging.getLogger("discoveryd.daemon")
HOST_CACHE_SECONDS = 300.0  # how long hostname -> IP lookups for records are reused


def _same_records(a: RecordSet, b: RecordSet | None) -> bool:
    return b is not None and a.a == b.a and a.aaaa == b.aaaa and a.srv == b.srv


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


@contextlib.contextmanager
def _naming(key: str, value: object) -> Iterator[None]:
    """Re-raise a bind error with the setting behind it: "[Errno 98] Address already in
    use" alone does not tell the operator which address to fix."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, f"{key} {value}: {e.strerror or e}") from e


class Daemon:
    def __init__(self, settings: Settings, metrics: Metrics | None = None,
                 store: Store | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.store = store or Store()
        self.record_set: RecordSet | None = None
        self.dns: Any = None
        self.dns_workers: Any = None
        self.mesos: Any = None
        self.marathon: Any = None
        self.haproxy: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._resolve_cache: dict[str, str | None] = {}
        self._resolve_cache_at = 0.0
        self._listen_ips: tuple[list[str], tuple[str, ...]] | None = None  # (for, ips)
        self.http_addresses: list[tuple[str, int]] = []

    # --- which halves are on -------------------------------------------------
    @property
    def mesos_enabled(self) -> bool:
        return bool(self.settings.mesos.zk or self.settings.mesos.masters)

    @property
    def marathon_enabled(self) -> bool:
        return bool(self.settings.marathon.urls)

    @property
    def haproxy_enabled(self) -> bool:
        return self.settings.haproxy.enabled and self.marathon_enabled

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        s, m = self.settings, self.metrics
        for source, used in (("zookeeper", bool(s.mesos.zk)), ("mesos", self.mesos_enabled),
                             ("marathon", self.marathon_enabled)):
            m.source_configured.labels(source).set(1 if used else 0)
        if s.dns.enabled:
            from discoveryd.dns.server import DnsServer

            self.dns = DnsServer(s.dns, m, reuse_port=s.dns.workers > 1)
            if self.record_set is not None:
                self.dns.update(self.record_set)
            with _naming("dns.listen", s.dns.listen):
                await self.dns.start()
            if s.dns.workers > 1:
                from discoveryd.dns.workers import DnsWorkers

                self.dns_workers = DnsWorkers(s.dns, m, s.dns.workers - 1, self.dns.addresses)
                await self.dns_workers.start()
                if self.record_set is not None:
                    await asyncio.to_thread(self.dns_workers.update, self.record_set)
            self._spawn(self._records_loop(), "records")
        if self.mesos_enabled:
            from discoveryd.sources.mesos import MesosSource

            self.mesos = MesosSource(s.mesos, self.store, m)
            self._spawn(self.mesos.run(), "mesos")
        if self.marathon_enabled:
            from discoveryd.sources.marathon import MarathonSource

            refresh: Callable[[], None] | None = self.mesos.request_refresh if self.mesos else None
            self.marathon = MarathonSource(s.marathon, self.store, m, on_task_change=refresh,
                                          stall_timeout=s.marathon.stall_timeout)
            self._spawn(self.marathon.run(), "marathon")
        if self.haproxy_enabled:
            from discoveryd.haproxy.pipeline import HAProxyPipeline

            self.haproxy = HAProxyPipeline(s.haproxy, self.store, m)
            self._spawn(self.haproxy.run(), "haproxy")
        if s.http.listen:
            with _naming("http.listen", s.http.listen):
                await self._start_http(s.http.listen)
        self._spawn(self._notify_ready(), "sd_notify")
        log.info("started dns=%s mesos=%s marathon=%s haproxy=%s http=%s",
                 bool(self.dns), bool(self.mesos), bool(self.marathon), bool(self.haproxy),
                 s.http.listen)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.dns_workers is not None:
            await self.dns_workers.stop()
            self.dns_workers = None
        if self.dns is not None:
            await self.dns.stop()
        for source in (self.mesos, self.marathon, self.haproxy):
            close = getattr(source, "close", None)
            if close is not None:
                await close()
        self.dns = self.mesos = self.marathon = self.haproxy = None

    async def reload(self, settings: Settings) -> bool:
        """Apply a new configuration, keeping the cluster model (and so the records).
        False when it could not start and the previous configuration runs again."""
        sd_notify("RELOADING=1")
        old = self.settings
        await self.stop()
        self.settings = settings
        try:
            await self.start()
        except OSError as e:
            # A file can be valid and still unusable (an address taken or not local): go
            # back to the running configuration rather than stay up serving nothing.
            log.error("config_reload_failed %s; restoring the previous configuration", e)
            await self.stop()
            self.settings = old
            await self.start()
            return False
        log.info("config_reloaded")
        return True

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("component_crashed %s: %r", task.get_name(), task.exception(),
                      exc_info=task.exception())

    async def _start_http(self, listen: str) -> None:
        host, port = split_host_port(listen)
        self._runner = web.AppRunner(build_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]"), port)
        await site.start()
        server = getattr(site, "_server", None)
        self.http_addresses = [s.getsockname()[:2] for s in server.sockets] if server else []

    # --- records ---------------------------------------------------------------
    def _build_records(self, state: ClusterState) -> RecordSet:
        """Runs in a worker thread: hostname lookups of masters/agents may block."""
        from discoveryd.dns.records import build_records
        from discoveryd.dns.zonefile import listener_ips, system_resolver

        s = self.settings
        if time.monotonic() - self._resolve_cache_at > HOST_CACHE_SECONDS:
            self._resolve_cache, self._resolve_cache_at = {}, time.monotonic()
            self._listen_ips = None
        if self._listen_ips is None or self._listen_ips[0] != s.dns.listen:
            # This host's own addresses (a read of /proc) are refreshed with the host
            # lookups or when dns.listen changes (SIGHUP), not on every record build.
            self._listen_ips = (list(s.dns.listen), listener_ips(s.dns.listen))
        assert state.mesos is not None
        return build_records(
            state.mesos, domain=s.dns.domain, masters=state.masters,
            ip_sources=s.mesos.ip_sources, enforce_rfc952=s.mesos.enforce_rfc952,
            mname=s.dns.soa.mname, listen_ips=self._listen_ips[1],
            resolve=system_resolver(self._resolve_cache),
        )

    async def _records_loop(self) -> None:
        state = self.store.current
        built_from: tuple[int, tuple[str, ...]] | None = None
        while True:
            if state.mesos is not None and built_from != (id(state.mesos), state.masters):
                built_from = (id(state.mesos), state.masters)
                await self._rebuild(state)
            state = await self.store.wait_newer(state.version)

    async def _rebuild(self, state: ClusterState) -> None:
        """Build records and the DNS answer cache in a worker thread, then swap them in:
        the loop keeps answering queries from the previous cache meanwhile."""
        dns = self.dns
        try:
            rs = await asyncio.to_thread(self._build_records, state)
            if dns is not None and dns.serving and _same_records(rs, self.record_set):
                return  # a refresh that changed nothing: keep the answer cache (and serial)
            dns_skipped = await asyncio.to_thread(dns.update, rs) if dns is not None else []
            if self.dns_workers is not None:
                await asyncio.to_thread(self.dns_workers.update, rs)
        except Exception:
            log.exception("records_failed keeping the previous record set")
            return
        self.record_set = rs
        for what, reason in rs.skipped:
            log.warning("record_skipped %s: %s", what, reason)
            self.metrics.mesos_skipped.labels(what.split(" ", 1)[0]).inc()
        for name, reason in dns_skipped:
            log.warning("answer_skipped %s: %s", name, reason)
        log.debug("records_built %s", rs.counts())

    async def _notify_ready(self) -> None:
        while self.readiness():
            await asyncio.sleep(0.2)
        sd_notify("READY=1")

    # --- what the API reads ------------------------------------------------------
    def readiness(self) -> dict[str, str]:
        """What /ready waits for (token -> why); empty = ready.

        CONTRACT 4: ready once the first cluster state is loaded and DNS is serving. With
        Mesos configured that is the Mesos state and DNS: a Marathon or HAProxy problem must
        not make systemd or an orchestrator kill a DNS server that answers (those show in
        `pending`). Without Mesos (the HAProxy sidecar alone) the cluster state is Marathon's,
        and what is served is the installed haproxy.cfg."""
        return self.ready_split()[0]

    def pending(self) -> dict[str, str]:
        """What is not ready yet but does not hold /ready (see `readiness`)."""
        return self.ready_split()[1]

    def ready_split(self) -> tuple[dict[str, str], dict[str, str]]:
        """(readiness(), pending()) from one look at the components."""
        every = self._not_ready()
        blocking = ({"mesos_state", "dns", "sources"} if self.mesos_enabled
                    else {"marathon_snapshot", "haproxy_config", "sources"})
        return ({k: v for k, v in every.items() if k in blocking},
                {k: v for k, v in every.items() if k not in blocking})

    def _not_ready(self) -> dict[str, str]:
        state, waiting = self.store.current, {}
        if self.mesos_enabled and state.mesos is None:
            waiting["mesos_state"] = "no state loaded from a leading Mesos master yet"
        if self.settings.dns.enabled and self.mesos_enabled and not (
                self.dns is not None and self.dns.serving):
            waiting["dns"] = "not serving records yet"
        if self.marathon_enabled and state.marathon is None:
            waiting["marathon_snapshot"] = "no app snapshot from Marathon yet"
        if self.haproxy_enabled and not (self.haproxy is not None and self.haproxy.ready):
            waiting["haproxy_config"] = "no valid haproxy.cfg installed yet"
        if not (self.mesos_enabled or self.marathon_enabled):
            waiting["sources"] = "neither mesos.zk/masters nor marathon.urls is configured"
        return waiting

    def state_report(self) -> dict[str, Any]:
        st = self.store.current
        mesos_status = self.mesos.status() if self.mesos else None
        haproxy_status = self.haproxy.status() if self.haproxy else None
        marathon_status = self.marathon.status() if self.marathon else None
        leader = st.leader
        rs = self.record_set
        return {
            "version": st.version,
            "leader": leader.address if leader else None,
            "leader_source": leader.source if leader else None,
            "masters": list(st.masters),
            "mesos": mesos_status,
            "marathon": marathon_status,
            "marathon_url": marathon_status["url"] if marathon_status else None,
            "haproxy": haproxy_status,
            "last_refresh": {"mesos": st.mesos_updated_at, "marathon": st.marathon_updated_at},
            "counts": {
                "tasks": st.mesos.task_count if st.mesos is not None else 0,
                "records": sum(rs.counts().values()) if rs else 0,
                "apps": len(st.marathon.apps) if st.marathon else 0,
                "marathon_tasks": st.marathon.task_count if st.marathon else 0,
                "backends": len(haproxy_status["backends"]) if haproxy_status else 0,
            },
            "ready": not self.readiness(),
        }

    def haproxy_config(self) -> str | None:
        return self.haproxy.current_config() if self.haproxy else None

    async def haproxy_reload(self) -> dict[str, Any] | None:
        return await self.haproxy.reload_now() if self.haproxy else None
