"""Extra DNS worker processes (`dns.workers` > 1) sharing the listen sockets.

One Python process answers about 70-80k queries/s; the GIL stops threads from doing more.
Each worker is a process running its own `DnsServer` bound to the same addresses with
SO_REUSEPORT, so the kernel spreads clients over all of them. The daemon stays the only
process that talks to Mesos and Marathon: it sends every new record set down a pipe, and
each worker rebuilds its answer cache incrementally, as the main server does, and confirms
each record set it has swapped in. Workers send their counters up the same pipe every
second; the daemon's /metrics adds them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from discoveryd.dns.recordset import RecordSet
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings

log = logging.getLogger("discoveryd.dns")

STATS_SECONDS = 1.0
START_TIMEOUT = 30.0
# Worker counters forwarded to the daemon's metrics (the query stats travel separately).
FORWARDED = ("dns_forwarded", "dns_forward_failures", "dns_malformed")


def read_messages(conn: Connection, loop: asyncio.AbstractEventLoop,
                  handle: Callable[[tuple[Any, ...] | None], None]) -> threading.Thread:
    """Receive on `conn` in a thread and hand each message (None at EOF) to the loop.

    Not loop.add_reader: the loop may make the pipe non-blocking, and then a pickled record
    set larger than the pipe buffer fails to arrive in one piece."""

    def pump() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = None
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                loop.call_soon_threadsafe(handle, message)
            if message is None:
                return

    thread = threading.Thread(target=pump, name="dns-worker-pipe", daemon=True)
    thread.start()
    return thread


def _counter_values(metrics: Metrics) -> dict[tuple[str, tuple[str, ...]], float]:
    out = {}
    for attr in FORWARDED:
        for family in getattr(metrics, attr).collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[(attr, tuple(s.labels.values()))] = s.value
    return out


class DnsWorkers:
    """`count` worker processes serving `addresses` (the main server's actual bindings)."""

    def __init__(self, settings: DnsSettings, metrics: Metrics, count: int,
                 addresses: list[tuple[str, int]]) -> None:
        self.settings = settings.model_copy(update={
            "listen": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses]})
        self.metrics = metrics
        self.count = count
        self._procs: list[tuple[Any, Connection]] = []
        self._last: dict[int, dict[tuple[str, tuple[str, ...]], float]] = {}
        self._stopping = False
        self._sent = 0  # sequence number of the last record set sent
        self._applied: dict[int, int] = {}  # worker -> sequence number it serves
        self._progress = asyncio.Event()  # set on each confirmation

    async def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no copy of the daemon's threads or loop
        loop = asyncio.get_running_loop()
        for i in range(self.count):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(self.settings.model_dump(), theirs),
                               name=f"discoveryd-dns-{i + 1}", daemon=True)
            proc.start()
            theirs.close()
            self._procs.append((proc, ours))
        for i, (_proc, conn) in enumerate(self._procs):
            ready = await loop.run_in_executor(None, conn.poll, START_TIMEOUT)
            if not ready or conn.recv() != ("ready",):
                await self.stop()
                raise OSError(f"DNS worker {i + 1} did not start")
            read_messages(conn, loop, functools.partial(self._on_message, i))
        log.info("dns_workers_started count=%d", self.count)

    def update(self, record_set: RecordSet) -> int:
        """Send a new record set to every worker (blocking: call it from a thread); returns
        its sequence number, for `wait_applied`."""
        self._sent += 1
        for proc, conn in self._procs:
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    conn.send(("records", self._sent, record_set))
        return self._sent

    async def wait_applied(self, seq: int, timeout: float) -> bool:
        """Whether every live worker serves record set `seq` (or a newer one) within
        `timeout` seconds. A worker that skips to a newer set confirms that one."""
        def done() -> bool:
            return all(self._applied.get(i, 0) >= seq
                       for i, (proc, _) in enumerate(self._procs) if proc.is_alive())

        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    def _on_message(self, worker: int, message: tuple[Any, ...] | None) -> None:
        if message is None:
            self._progress.set()  # a waiter stops waiting for a dead worker
            if not self._stopping:  # the main server keeps answering on its own socket
                proc = self._procs[worker][0]
                log.error("dns_worker_exited worker=%d pid=%s exitcode=%s", worker + 1,
                          proc.pid, proc.exitcode)
            return
        kind, *payload = message
        if kind == "applied":
            self._applied[worker] = max(self._applied.get(worker, 0), payload[0])
            self._progress.set()
        elif kind == "stats":
            queries, buckets, latency_sum, counters = payload
            self.metrics.dns.set_remote(worker, queries, buckets, latency_sum)
            last = self._last.setdefault(worker, {})
            for key, value in counters.items():
                attr, labels = key
                delta = value - last.get(key, 0.0)
                if delta > 0:
                    getattr(self.metrics, attr).labels(*labels).inc(delta)
                last[key] = value

    async def stop(self) -> None:
        self._stopping = True
        loop = asyncio.get_running_loop()
        for _proc, conn in self._procs:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
        for proc, conn in self._procs:
            await loop.run_in_executor(None, proc.join, 3.0)
            if proc.is_alive():
                proc.kill()
                await loop.run_in_executor(None, proc.join, 3.0)
            conn.close()
        self._procs = []


def worker_main(settings: dict[str, Any], conn: Connection) -> None:
    """Entry point of a worker process."""
    try:
        import uvloop

        uvloop.run(_serve(DnsSettings.model_validate(settings), conn))
    except ImportError:
        asyncio.run(_serve(DnsSettings.model_validate(settings), conn))


async def _serve(settings: DnsSettings, conn: Connection) -> None:
    from discoveryd.dns.server import DnsServer

    loop = asyncio.get_running_loop()
    metrics = Metrics()
    server = DnsServer(settings, metrics, reuse_port=True)
    await server.start()
    conn.send(("ready",))
    stop = asyncio.Event()
    updates: asyncio.Queue[tuple[int, RecordSet]] = asyncio.Queue()

    def on_message(message: tuple[Any, ...] | None) -> None:
        if message is None:  # the daemon is gone
            stop.set()
            return
        kind, *payload = message
        if kind == "records":
            updates.put_nowait((payload[0], payload[1]))
        elif kind == "stop":
            stop.set()

    async def apply_updates() -> None:
        while True:
            seq, rs = await updates.get()
            while not updates.empty():  # latest wins
                seq, rs = updates.get_nowait()
            await asyncio.to_thread(server.update, rs)
            conn.send(("applied", seq))

    async def report() -> None:
        while True:
            await asyncio.sleep(STATS_SECONDS)  # a reporting period, not synchronisation
            q = metrics.dns
            conn.send(("stats", q.totals(), list(q.bucket_counts), q.latency_sum,
                       _counter_values(metrics)))

    read_messages(conn, loop, on_message)
    tasks = [asyncio.create_task(apply_updates()), asyncio.create_task(report())]
    started = time.monotonic()
    await stop.wait()
    for t in tasks:
        t.cancel()
    await server.stop()
    log.debug("dns_worker_stopped after %.0fs", time.monotonic() - started)
