"""Start a whole daemon in-process on loopback port 0, and wait on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rdatatype

from discoveryd.daemon import Daemon
from discoveryd.settings import Settings


def settings_for(**sections: Any) -> Settings:
    doc: dict[str, Any] = {"dns": {"listen": ["127.0.0.1:0"], "external": False},
                           "http": {"listen": "127.0.0.1:0"}}
    for key, value in sections.items():
        doc.setdefault(key, {}).update(value)
    return Settings.model_validate(doc)


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Poll `check` (sync or async) until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@contextlib.asynccontextmanager
async def background(loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
                     ) -> AsyncIterator[None]:
    """Run `loop(stop)` as a task for the block, then set `stop` and wait for it to end.

    A flag, not a cancel alone: on 3.11 dnspython's `asyncio.wait_for` can swallow a cancel
    that lands as its query completes, and a query loop that lost its cancel runs forever
    (a test hung that way in CI). The cancel only cuts short the loop's current wait; a
    loop's own error is raised here, and a cancel of the caller is never swallowed.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(loop(stop))
    try:
        yield
    finally:
        stop.set()
        await stop_task(task)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` until it is done (a cancel can be lost, see `background`), without
    swallowing a cancel of the caller, as `suppress(CancelledError)` around an await would."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)


class Running:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @property
    def dns_port(self) -> int:
        return self.daemon.dns.addresses[0][1]

    @property
    def http(self) -> str:
        host, port = self.daemon.http_addresses[0]
        return f"http://{host}:{port}"

    async def query(self, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, getattr(dns.rdatatype, rdtype))
        if tcp:
            return await dns.asyncquery.tcp(q, "127.0.0.1", port=self.dns_port, timeout=5)
        return await dns.asyncquery.udp(q, "127.0.0.1", port=self.dns_port, timeout=5)

    async def addresses(self, name: str) -> set[str]:
        r = await self.query(name)
        return {rr.address for rrset in r.answer for rr in rrset if hasattr(rr, "address")}

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.http + path) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = await (resp.json() if "json" in ctype else resp.text())
            return resp.status, body


async def start_daemon(settings: Settings) -> Running:
    daemon = Daemon(settings)
    await daemon.start()
    return Running(daemon)
