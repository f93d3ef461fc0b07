"""A simulated Marathon: a real aiohttp server speaking Marathon's REST and SSE APIs.

Used by `discoveryd demo`, the tests and the benchmarks. Apps are held as raw
Marathon 1.5 JSON (converted to 1.4 shapes on the way out when asked); every
mutation (`add_app`, `scale`, `kill_task`, `set_health`, ...) updates the app list
and pushes the events the real Marathon would send, in the same order.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from discoveryd.sim.marathon_garbage import garbage_response

# Mesos offers 31000-32000 by default; cycling keeps hour-long soaks inside the valid range.
_port_counter = itertools.cycle(range(31000, 32001))


def now_iso() -> str:
    # isoformat, not strftime: a flood of 10,000 events formats 13,000 timestamps.
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task(app_id: str, *, host: str = "10.0.1.11", ports: tuple[int, ...] | list[int] = (),
         state: str = "TASK_RUNNING", task_id: str | None = None, ip: str | None = None,
         alive: bool | None = None, version: str = "2018-01-10T08:00:00.000Z") -> dict[str, Any]:
    """A task as /v2/apps?embed=apps.tasks shows it (health results when `alive` is set)."""
    app_id = "/" + app_id.strip("/")
    tid = task_id or f"{app_id.strip('/').replace('/', '_')}.{uuid.uuid4()}"
    raw: dict[str, Any] = {
        "id": tid, "appId": app_id, "host": host, "ports": list(ports), "state": state,
        "ipAddresses": [{"ipAddress": ip or host, "protocol": "IPv4"}],
        "stagedAt": now_iso(), "startedAt": now_iso() if state == "TASK_RUNNING" else None,
        "slaveId": "sim-agent-S" + host.rsplit(".", 1)[-1], "version": version,
    }
    if alive is not None:
        raw["healthCheckResults"] = [{"alive": alive, "consecutiveFailures": 0 if alive else 1,
                                      "firstSuccess": now_iso() if alive else None,
                                      "lastFailure": None if alive else now_iso(),
                                      "taskId": tid}]
    return raw


def app(app_id: str, *, instances: int = 0, service_ports: tuple[int, ...] = (10000,),
        networking: str = "host", labels: dict[str, str] | None = None,
        health_path: str | None = None, container_port: int = 8080,
        version: str = "2018-01-10T08:00:00.000Z") -> dict[str, Any]:
    """An app definition in Marathon 1.5+ shape; tasks are added by `SimMarathon`."""
    raw: dict[str, Any] = {
        "id": "/" + app_id.strip("/"), "cmd": "sleep 1000", "cpus": 0.1, "mem": 32,
        "instances": instances, "labels": dict(labels or {}), "version": version,
        "networks": [{"mode": {"host": "host", "bridge": "container/bridge",
                               "container": "container"}[networking]}],
        "healthChecks": [], "deployments": [], "tasks": [],
    }
    if networking == "host":
        raw["portDefinitions"] = [{"port": p, "protocol": "tcp", "labels": {}}
                                  for p in service_ports]
    else:
        raw["container"] = {"type": "DOCKER", "docker": {"image": "sim/app"}, "portMappings": [
            {"containerPort": container_port + i, "hostPort": 0 if networking == "bridge" else None,
             "servicePort": p, "protocol": "tcp", "labels": {}}
            for i, p in enumerate(service_ports)]}
        if networking == "container":
            raw["networks"][0]["name"] = "sim"
    if health_path is not None:
        raw["healthChecks"] = [{"protocol": "HTTP", "path": health_path, "portIndex": 0,
                                "intervalSeconds": 5, "timeoutSeconds": 2,
                                "gracePeriodSeconds": 10, "maxConsecutiveFailures": 3}]
    return raw


def as_marathon14(raw: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a 1.5 app into the shape Marathon 1.4 served (docker.network, ipAddress)."""
    out = copy.deepcopy(raw)
    mode = (out.pop("networks", None) or [{"mode": "host"}])[0]["mode"]
    container = out.get("container")
    mappings = container.pop("portMappings", []) if container else []
    out["ipAddress"] = None
    if mode == "container/bridge" and container is not None:
        container.setdefault("docker", {}).update(network="BRIDGE", portMappings=mappings)
    elif mode == "container":
        out["ipAddress"] = {"groups": [], "labels": {}, "networkName": "sim", "discovery": {
            "ports": [{"number": m["containerPort"], "name": m.get("name", f"p{i}"),
                       "protocol": m.get("protocol", "tcp")} for i, m in enumerate(mappings)]}}
    out["ports"] = [p["port"] for p in out.get("portDefinitions", [])]
    return out


class _Stream:
    def __init__(self, types: frozenset[str], stalled: bool) -> None:
        self.types = types
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.stalled = stalled


class SimMarathon:
    """One simulated Marathon on 127.0.0.1 (port 0 unless given)."""

    def __init__(self, *, version: str = "1.5", host: str = "127.0.0.1", port: int = 0,
                 keepalive_seconds: float = 5.0, auth: str | None = None,
                 agents: tuple[str, ...] = ("10.0.1.11", "10.0.1.12", "10.0.1.13")) -> None:
        self.version = version  # "1.4" serves 1.4 JSON shapes
        self.host, self.port = host, port
        self.keepalive_seconds = keepalive_seconds
        self.auth = auth
        self.agents = agents
        self.apps: dict[str, dict[str, Any]] = {}
        self.fetches = 0  # GET /v2/apps requests
        self.event_connects = 0  # GET /v2/events requests
        self.event_filters: list[list[str]] = []  # event_type filters of each connection
        self.event_plan_formats: list[str | None] = []  # plan-format= of each connection
        self.status: int | None = None  # set by fail_with
        self.redirect: str | None = None  # set by redirect_to
        # Fault switches (see "faults" below); all off by default.
        self.apps_garbage: str | None = None  # set by serve_garbage
        self.stall_new_streams = False  # new streams send headers, then nothing at all
        self.stream_lifetime: float | None = None  # each stream ends cleanly after this long
        # A slow /v2/apps (a big Marathon): the answer shows the state at the end of the wait.
        self.apps_delay = 0.0
        # Stream bytes go out in pieces of at most this size, as a network delivers a big
        # event in segments (None: each burst in one write).
        self.stream_segment: int | None = None
        self.events_pushed: Counter[str] = Counter()  # by type, whether or not anyone listens
        self._streams: set[_Stream] = set()
        self._runner: web.AppRunner | None = None
        self._next_agent = itertools.cycle(agents)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connected_streams(self) -> int:
        return len(self._streams)

    async def start(self) -> str:
        wapp = web.Application(middlewares=[self._gate])
        wapp.router.add_get("/v2/apps", self._apps)
        wapp.router.add_get("/v2/apps/{app_id:.+}", self._app)
        wapp.router.add_get("/v2/deployments", self._deployments)
        wapp.router.add_get("/v2/info", self._info)
        wapp.router.add_get("/v2/leader", self._leader)
        wapp.router.add_get("/v2/events", self._events)
        self._runner = web.AppRunner(wapp, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        self.drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimMarathon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what tests and the demo drive ------------------------------------------------

    def add_app(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) an app and start `instances` tasks, with the events."""
        raw = copy.deepcopy(raw)
        n, raw["instances"], raw["tasks"] = raw.get("instances", 0), 0, []
        self.apps[raw["id"]] = raw
        self.push_event("api_post_event", {"clientIp": "127.0.0.1", "uri": f"/v2/apps{raw['id']}",
                                           "appDefinition": self._strip(raw)})
        self.scale(raw["id"], n)
        return raw

    def remove_app(self, app_id: str) -> None:
        self.scale(app_id, 0)
        del self.apps[app_id]
        self.push_event("app_terminated_event", {"appId": app_id})

    def scale(self, app_id: str, n: int) -> list[dict[str, Any]]:
        """Start or kill (youngest first) tasks until `n` run; returns the new tasks."""
        raw = self.apps[app_id]
        plan = {"id": str(uuid.uuid4()), "version": now_iso(), "affectedApps": [app_id]}
        self.push_event("deployment_info", {"plan": plan, "currentStep": {"actions": [
            {"action": "ScaleApplication", "app": app_id}]}})
        raw["instances"] = n
        started = []
        while len(raw["tasks"]) < n:
            started.append(self.start_task(app_id))
        while len(raw["tasks"]) > n:
            self.kill_task(app_id, raw["tasks"][-1]["id"])
        self.push_event("deployment_success", {"id": plan["id"], "plan": plan})
        return started

    def start_task(self, app_id: str, **fields: Any) -> dict[str, Any]:
        """Launch one task: it appears in /v2/apps and a TASK_RUNNING event is pushed."""
        raw = self.apps[app_id]
        count = len(raw.get("portDefinitions") or raw.get("container", {}).get("portMappings", []))
        fields.setdefault("host", next(self._next_agent))
        if raw["networks"][0]["mode"] == "container":  # IP per task: no host ports
            fields.setdefault("ports", [])
            fields.setdefault("ip", f"9.0.0.{next(_port_counter) % 250 + 2}")
        fields.setdefault("ports", [next(_port_counter) for _ in range(count)])
        if raw["healthChecks"]:
            fields.setdefault("alive", True)
        t = task(app_id, version=raw["version"], **fields)
        raw["tasks"].append(t)
        self._status_event(t, t["state"])
        if "healthCheckResults" in t:  # Marathon reports the first check's result too
            self._health_event(t, t["healthCheckResults"][0]["alive"])
        return t

    def kill_task(self, app_id: str, task_id: str, state: str = "TASK_KILLED") -> None:
        raw = self.apps[app_id]
        t = next(t for t in raw["tasks"] if t["id"] == task_id)
        raw["tasks"].remove(t)
        self._status_event(t, state)

    def set_health(self, app_id: str, task_id: str, alive: bool) -> None:
        t = next(t for t in self.apps[app_id]["tasks"] if t["id"] == task_id)
        t["healthCheckResults"] = [{"alive": alive, "consecutiveFailures": 0 if alive else 1,
                                    "taskId": task_id}]
        self._health_event(t, alive)

    def resend_status(self, app_id: str, task_id: str) -> None:
        """Repeat a task's current status (Marathon does so on reconciliation)."""
        t = next(t for t in self.apps[app_id]["tasks"] if t["id"] == task_id)
        self._status_event(t, t["state"])

    def push_event(self, event_type: str, payload: dict[str, Any]) -> None:
        """Send one event to every subscribed stream whose filter admits it."""
        self.events_pushed[event_type] += 1
        body = json.dumps({"eventType": event_type, "timestamp": now_iso(), **payload})
        frame = f"event: {event_type}\ndata: {body}\n\n".encode()
        for s in self._streams:
            if not s.types or event_type in s.types:
                s.queue.put_nowait(frame)

    def drop_streams(self) -> None:
        """Close every open event stream (the client sees a clean end of stream)."""
        for s in self._streams:
            s.queue.put_nowait(None)

    def stall_streams(self) -> None:
        """Keep the open streams open but send nothing more on them, not even keep-alives."""
        for s in self._streams:
            s.stalled = True

    # --- faults --------------------------------------------------------------------------

    def serve_garbage(self, mode: str | None) -> None:
        """Answer /v2/apps with a broken document (a `GARBAGE_MODES` name); None: normal."""
        if mode is not None:
            garbage_response(mode, [])  # reject an unknown mode now, not in the handler
        self.apps_garbage = mode

    def flood(self, count: int, seed: int = 0, app_ids: list[str] | None = None) -> int:
        """Push at least `count` events from real mutations of the running tasks of
        `app_ids` (default: every app): health flips, repeated statuses, task failures
        replaced by new tasks, scale deployments. /v2/apps follows every one, so its final
        answer is the truth to converge to. Returns the number of events pushed."""
        rng = random.Random(seed)
        targets = sorted(app_ids if app_ids is not None else self.apps)
        start = self.events_pushed.total()
        while self.events_pushed.total() - start < count:
            app_id = rng.choice(targets)
            raw = self.apps[app_id]
            if not raw["tasks"]:
                self.scale(app_id, 1)
                continue
            t = rng.choice(raw["tasks"])
            roll = rng.random()
            if roll < 0.45 and raw["healthChecks"]:
                self.set_health(app_id, t["id"], not t["healthCheckResults"][0]["alive"])
            elif roll < 0.85:
                self.resend_status(app_id, t["id"])
            elif roll < 0.97:
                self.kill_task(app_id, t["id"], state="TASK_FAILED")
                self.start_task(app_id)  # Marathon relaunches a failed task
            else:
                self.scale(app_id, max(1, len(raw["tasks"]) + rng.choice((-1, 1))))
        return self.events_pushed.total() - start

    def fail_with(self, status: int | None) -> None:
        """Answer every request with `status` (None: back to normal)."""
        self.status = status

    def redirect_to(self, url: str | None) -> None:
        """Answer every request with a 307 to the same path on `url` (a non-leader)."""
        self.redirect = url.rstrip("/") if url else None

    # --- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.json_response({"message": "Unauthorized"}, status=401)
        if self.redirect:
            raise web.HTTPTemporaryRedirect(self.redirect + request.path_qs)
        if self.status is not None:
            return web.json_response({"message": "simulated failure"}, status=self.status)
        return await handler(request)

    def _shape(self, raw: dict[str, Any], tasks: bool) -> dict[str, Any]:
        out = as_marathon14(raw) if self.version == "1.4" else copy.deepcopy(raw)
        if not tasks:
            out.pop("tasks", None)
        return out

    def _strip(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in self._shape(raw, False).items() if k != "deployments"}

    async def _apps(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.apps_delay:
            await asyncio.sleep(self.apps_delay)
        embed = request.query.getall("embed", [])
        tasks = "apps.tasks" in embed or "app.tasks" in embed
        apps = [self._shape(a, tasks) for a in self.apps.values()]
        if self.apps_garbage is not None:
            return garbage_response(self.apps_garbage, apps)
        return web.json_response({"apps": apps})

    async def _app(self, request: web.Request) -> web.Response:
        raw = self.apps.get("/" + request.match_info["app_id"].strip("/"))
        if raw is None:
            return web.json_response({"message": "App does not exist"}, status=404)
        return web.json_response({"app": self._shape(raw, True)})

    async def _deployments(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "name": "marathon", "version": "1.4.13" if self.version == "1.4" else "1.5.6",
            "leader": f"{self.host}:{self.port}", "frameworkId": "sim-framework-0000",
            "elected": True, "event_subscriber": {"type": "http_callback", "http_endpoints": []},
        })

    async def _leader(self, request: web.Request) -> web.Response:
        return web.json_response({"leader": f"{self.host}:{self.port}"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.event_connects += 1
        types = request.query.getall("event_type", [])
        self.event_filters.append(types)
        self.event_plan_formats.append(request.query.get("plan-format"))
        stream = _Stream(frozenset(types), stalled=self.stall_new_streams)
        ends = None if self.stream_lifetime is None else (
            asyncio.get_running_loop().time() + self.stream_lifetime)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        # Registered before the headers go out: once a client sees the response, switches
        # such as stall_streams() and events pushed reach this stream.
        self._streams.add(stream)
        try:
            await resp.prepare(request)
            peer = request.remote or "127.0.0.1"
            if not stream.stalled and (not stream.types
                                       or "event_stream_attached" in stream.types):
                attached = {"eventType": "event_stream_attached", "timestamp": now_iso(),
                            "remoteAddress": peer}
                await resp.write(f"event: event_stream_attached\ndata: {json.dumps(attached)}"
                                 "\n\n".encode())
            while True:
                wait = self.keepalive_seconds
                if ends is not None:
                    wait = min(wait, ends - asyncio.get_running_loop().time())
                    if wait <= 0:
                        break  # stream_lifetime: a clean end of stream
                frames: list[bytes | None] = []
                try:
                    async with asyncio.timeout(wait):
                        frames.append(await stream.queue.get())
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client left (a stalled stream never writes to notice)
                    if wait == self.keepalive_seconds:
                        frames.append(b":\n")  # keep-alive comment
                while not stream.queue.empty():  # a burst goes out in one write, as TCP would
                    frames.append(stream.queue.get_nowait())
                closing = None in frames
                if closing:
                    del frames[frames.index(None):]
                if frames and not stream.stalled:
                    await self._send(resp, b"".join(f for f in frames if f))
                if closing:
                    break
        except ConnectionResetError:
            pass
        finally:
            self._streams.discard(stream)
        return resp

    async def _send(self, resp: web.StreamResponse, data: bytes) -> None:
        step = self.stream_segment or len(data)
        for i in range(0, len(data), step):
            await resp.write(data[i:i + step])
            if step < len(data):
                await asyncio.sleep(0)  # let the reader take each piece as it comes

    def _status_event(self, t: dict[str, Any], state: str) -> None:
        self.push_event("status_update_event", {
            "slaveId": t["slaveId"], "taskId": t["id"], "taskStatus": state, "message": "",
            "appId": t["appId"], "host": t["host"], "ports": t["ports"],
            "ipAddresses": t["ipAddresses"], "version": t["version"],
        })

    def _health_event(self, t: dict[str, Any], alive: bool) -> None:
        """1.4 names the task; 1.5+ names the instance that holds it."""
        ref = {"taskId": t["id"]} if self.version == "1.4" else {
            "instanceId": t["id"].replace(".", ".marathon-", 1)}
        self.push_event("health_status_changed_event", {"appId": t["appId"], **ref,
                                                        "alive": alive, "version": t["version"]})
