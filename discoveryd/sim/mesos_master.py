"""A simulated Mesos master: a real aiohttp server answering `/master/state`.

Used by `discoveryd demo` and by the tests. It speaks the real JSON; the state is
settable, and the master can pretend to follow another leader, fail with 5xx,
hang, or answer garbage, so failure paths can be exercised end to end.
"""

from __future__ import annotations

import asyncio
import copy
import json
from importlib import resources
from typing import Any, Literal

from aiohttp import web

Mode = Literal["ok", "error", "hang", "garbage", "redirect"]
STATE_PATHS = ("/master/state", "/master/state.json", "/state", "/state.json")


def sample_state() -> dict[str, Any]:
    """The bundled sample state (tests/fixtures/mesos-state-fake.json)."""
    text = resources.files("discoveryd").joinpath("data/mesos-state-fake.json").read_text()
    return json.loads(text)


class SimMesosMaster:
    """One simulated master on 127.0.0.1 (port 0 unless given).

    `state` is served with `pid` set to this master's own pid and `leader` set to
    `leader_pid` (this master unless told otherwise). `mode` selects a failure.
    """

    def __init__(self, state: dict[str, Any] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state if state is not None else sample_state()
        self.host = host
        self.port = port
        self.mode: Mode = "ok"
        self.leader_pid: str | None = None  # None: this master leads
        self.redirect_to: str | None = None  # "host:port" for mode "redirect"
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._hang = asyncio.Event()

    @property
    def pid(self) -> str:
        return f"master@{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def lead(self) -> None:
        """Become the leader again (undo `follow` and failure modes)."""
        self.leader_pid, self.mode = None, "ok"

    def follow(self, leader: SimMesosMaster | str | None) -> None:
        """Pretend to be a non-leader whose `leader` field names `leader` ("" when None)."""
        self.leader_pid = leader.pid if isinstance(leader, SimMesosMaster) else (leader or "")

    def document(self) -> dict[str, Any]:
        doc = copy.copy(self.state)
        doc["pid"] = self.pid
        doc["leader"] = self.pid if self.leader_pid is None else self.leader_pid
        return doc

    async def start(self) -> str:
        """Listen and return the base URL."""
        app = web.Application()
        for path in STATE_PATHS:
            app.router.add_get(path, self._handle_state)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._hang = asyncio.Event()
        return self.url

    async def stop(self) -> None:
        self._hang.set()  # release hanging handlers so shutdown is prompt
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle_state(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.mode == "error":
            return web.Response(status=503, text="simulated failure")
        if self.mode == "hang":
            await self._hang.wait()
            return web.Response(status=503, text="stopped")
        if self.mode == "garbage":
            return web.Response(text="<html>this is not JSON", content_type="application/json")
        if self.mode == "redirect" and self.redirect_to:
            # Mesos >= 1.x answers a non-leader's /master/state with a protocol-relative 307.
            raise web.HTTPTemporaryRedirect(f"//{self.redirect_to}{request.path}")
        return web.json_response(self.document())
