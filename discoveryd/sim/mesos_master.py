"""A simulated Mesos master: a real aiohttp server answering `/master/state`.

Used by `discoveryd demo` and by the tests. It speaks the real JSON; the state is
settable, and the master can pretend to follow another leader, fail with 5xx,
hang, answer garbage or a cut-off document, or drop the connection mid-body, so
failure paths can be exercised end to end.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Literal

from aiohttp import web

Mode = Literal["ok", "error", "hang", "garbage", "truncated", "disconnect", "redirect"]
STATE_PATHS = ("/master/state", "/master/state.json", "/state", "/state.json")
SIM_AGENT_ID = "sim-agent-0000-S1"
SIM_FRAMEWORK_ID = "sim-framework-0000-marathon"


def sample_state() -> dict[str, Any]:
    """The bundled sample state (tests/fixtures/mesos-state-fake.json)."""
    text = resources.files("discoveryd").joinpath("data/mesos-state-fake.json").read_text()
    return json.loads(text)


def running_task(app: str, ip: str, port: int) -> dict[str, Any]:
    """A TASK_RUNNING Marathon task of `app` on the sim agent, its IP in network_infos."""
    return {
        "id": f"{app}.{ip.replace('.', '-').replace(':', '-')}-{port}",
        "name": app, "framework_id": SIM_FRAMEWORK_ID, "executor_id": "",
        "slave_id": SIM_AGENT_ID, "state": "TASK_RUNNING",
        "resources": {"cpus": 0.1, "mem": 64, "disk": 0, "ports": f"[{port}-{port}]"},
        "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0, "container_status": {
            "network_infos": [{"ip_addresses": [{"protocol": "IPv4", "ip_address": ip}]}]}}],
    }


def apps_state(apps: Mapping[str, Sequence[tuple[str, int]]], *,
               agent_ip: str = "10.255.0.1",
               completed_tasks: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A small `/master/state`: one agent and a `marathon` framework running, for each app
    name, one task per (ip, port). `completed_tasks` go where Mesos keeps finished tasks
    (they make big documents, as in real clusters, but no records)."""
    tasks = [running_task(app, ip, port) for app, pairs in apps.items() for ip, port in pairs]
    return {
        "version": "1.11.0",
        "slaves": [{"id": SIM_AGENT_ID, "hostname": agent_ip, "pid": f"slave(1)@{agent_ip}:5051",
                    "active": True}],
        "frameworks": [{"id": SIM_FRAMEWORK_ID, "name": "marathon", "active": True,
                        "hostname": agent_ip, "pid": f"scheduler-sim@{agent_ip}:8080",
                        "tasks": tasks, "completed_tasks": list(completed_tasks)}],
    }


class SimMesosMaster:
    """One simulated master on 127.0.0.1 (port 0 unless given).

    `state` is served with `pid` set to this master's own pid and `leader` set to
    `leader_pid` (this master unless told otherwise). `mode` selects a failure:
    "error" answers `error_status`, "hang" never answers, "garbage" is not JSON,
    "truncated" is the document's JSON cut in half (a complete HTTP response),
    "disconnect" announces the whole document but drops the connection halfway.
    `raw_body`, when set, is served in mode "ok" instead of encoding the document:
    a pre-encoded multi-megabyte state then costs the (shared) event loop nothing per request.
    """

    def __init__(self, state: dict[str, Any] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state if state is not None else sample_state()
        self.host = host
        self.port = port
        self.mode: Mode = "ok"
        self.error_status = 503
        self.raw_body: bytes | None = None
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

    def document(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """`state` (default: the current one) as this master serves it."""
        doc = copy.copy(self.state if state is None else state)
        doc["pid"] = self.pid
        doc["leader"] = self.pid if self.leader_pid is None else self.leader_pid
        return doc

    def encode(self, state: dict[str, Any] | None = None) -> bytes:
        """The JSON body mode "ok" serves for `state` (default: the current one)."""
        return json.dumps(self.document(state)).encode()

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
            return web.Response(status=self.error_status, text="simulated failure")
        if self.mode == "hang":
            await self._hang.wait()
            return web.Response(status=503, text="stopped")
        if self.mode == "garbage":
            return web.Response(text="<html>this is not JSON", content_type="application/json")
        if self.mode == "truncated":
            body = self.encode()
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        if self.mode == "disconnect":
            return await self._disconnect(request)
        if self.mode == "redirect" and self.redirect_to:
            # Mesos >= 1.x answers a non-leader's /master/state with a protocol-relative 307.
            raise web.HTTPTemporaryRedirect(f"//{self.redirect_to}{request.path}")
        if self.raw_body is not None:
            return web.Response(body=self.raw_body, content_type="application/json")
        return web.json_response(self.document())

    async def _disconnect(self, request: web.Request) -> web.StreamResponse:
        """Send the headers and half the body, then drop the connection (a crashing master)."""
        body = self.encode()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.abort()
        return resp
