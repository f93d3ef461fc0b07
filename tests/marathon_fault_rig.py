"""A whole daemon (DNS + HAProxy halves) against a simulated Mesos master and Marathon,
for the Marathon fault tests: the faults are switched on the simulator, and the truth
the daemon must converge to is read back from the simulator's own `/v2/apps`.

The daemon runs in-process (its internals can be tuned and inspected) or as a real
`discoveryd run` process (its own CPU and memory, measured apart from the simulator's).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype

from discoveryd.haproxy.oneshot import render_command
from discoveryd.settings import Settings
from discoveryd.sim.cluster import SimCluster, mesos_task_name
from discoveryd.sim.marathon import SimMarathon, app
from tests.daemon_harness import Running, eventually, settings_for, start_daemon
from tests.daemon_process import DaemonProcess
from tests.fakes.ports import free_port

HAPROXY = shutil.which("haproxy")
_SECTION = re.compile(r"^(backend|frontend|listen) (\S+)", re.M)


def fault_app(n: int) -> dict[str, Any]:
    """App n of a varied set: vhosts and HTTP health checks on even n, bridge on n % 3 == 0."""
    labels = {"HAPROXY_GROUP": "external"}
    if n % 2 == 0:
        labels["HAPROXY_0_VHOST"] = f"app{n}.example.com"
    return app(f"/faults/app{n}", instances=2, service_ports=(10100 + n,), labels=labels,
               health_path="/health" if n % 2 == 0 else None,
               networking="bridge" if n % 3 == 0 else "host")


def backends(text: str) -> dict[str, frozenset[str]]:
    """backend name -> its `server` lines: what HAProxy routes to."""
    out: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = out.setdefault(m.group(2), set()) if m.group(1) == "backend" else None
        elif current is not None and line.strip().startswith("server "):
            current.add(line.strip())
    return {k: frozenset(v) for k, v in out.items()}


def srv_name(app_id: str) -> str:
    return f"_{mesos_task_name(app_id).replace('.', '-')}._tcp.marathon.mesos"


class ProcessRunning(Running):
    """`discoveryd run` as a real process, asked through Running's DNS and HTTP helpers."""

    def __init__(self, process: DaemonProcess) -> None:
        self.daemon = None  # type: ignore[assignment]
        self.process = process

    @property
    def dns_port(self) -> int:
        return self.process.dns_port

    @property
    def http(self) -> str:
        return self.process.http

    def rss_mib(self) -> float:
        return self.process.rss_kib() / 1024

    async def stop(self) -> None:
        try:
            await self.process.stop(timeout=10)
        finally:
            await self.process.kill()


async def start_process(settings: Settings, workdir: Path) -> ProcessRunning:
    doc = settings.model_dump(mode="json")
    doc["dns"]["listen"], doc["http"]["listen"] = [f"127.0.0.1:{free_port()}"], \
        f"127.0.0.1:{free_port()}"
    running = ProcessRunning(await DaemonProcess(workdir / "discoveryd.yaml", doc).start())

    async def answers() -> bool:
        assert running.process.alive, running.process.log_text()[-3000:]
        return (await running.process.get("/health"))[0] == 200

    await eventually(answers, timeout=30, interval=0.1, what="discoveryd run answering")
    return running


class Rig:
    def __init__(self, tmp_path: Path, cluster: SimCluster, running: Running,
                 settings: Settings) -> None:
        self.tmp_path, self.cluster, self.running = tmp_path, cluster, running
        self.settings = settings
        self.daemon = running.daemon  # None when the daemon is a process
        self.config_path = tmp_path / "haproxy.cfg"
        self.reload_log = tmp_path / "reloads"
        self.removed: set[str] = set()
        self._next_app = 100

    @property
    def sim(self) -> SimMarathon:
        return self.cluster.marathon

    def reloads(self) -> int:
        """Reloads the daemon ran (its reload command appends one line each)."""
        return len(self.reload_log.read_text().splitlines()) if self.reload_log.exists() else 0

    def live(self) -> str:
        return self.config_path.read_text()

    async def expected(self) -> str:
        """What `discoveryd render` makes of the simulator's /v2/apps right now."""
        out = self.tmp_path / "expected.cfg"
        code = await render_command([self.sim.url], None, None, str(out), None,
                                    self.settings.haproxy)
        assert code == 0, "discoveryd render failed against the simulator"
        return out.read_text()

    async def srv_ports(self, app_id: str) -> set[int] | None:
        """The ports DNS serves for the app's SRV name; None for NXDOMAIN."""
        r = await self.running.query(srv_name(app_id), "SRV", tcp=True)
        if r.rcode() == dns.rcode.NXDOMAIN:
            return None
        return {rr.port for rrset in r.answer if rrset.rdtype == dns.rdatatype.SRV
                for rr in rrset}

    async def dns_diff(self) -> str:
        """Empty when every app's SRV ports are its tasks' ports (removed apps: NXDOMAIN)."""
        for app_id, raw in self.sim.apps.items():
            ports = {p for t in raw["tasks"] for p in t["ports"]} or None
            got = await self.srv_ports(app_id)
            if got != ports:
                return f"SRV of {app_id}: {got}, want {ports}"
        for app_id in self.removed - set(self.sim.apps):
            if await self.srv_ports(app_id) is not None:
                return f"SRV of removed {app_id} still answered"
        return ""

    async def diff(self) -> str:
        """Empty once haproxy.cfg and DNS show the simulator's current cluster."""
        if not self.config_path.exists():
            return "no haproxy.cfg"
        live, want = backends(self.live()), backends(await self.expected())
        if live != want:
            wrong = sorted(k for k in live.keys() | want.keys() if live.get(k) != want.get(k))
            return f"haproxy.cfg backends differ: {wrong}"
        if self.live() != await self.expected():
            return "haproxy.cfg differs outside the backends' servers"
        return await self.dns_diff()

    async def wait_converged(self, timeout: float = 60.0, what: str = "convergence") -> None:
        last = ""

        async def check() -> bool:
            nonlocal last
            last = await self.diff()
            return not last

        try:
            await eventually(check, timeout=timeout, interval=0.2, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; {last}") from None

    async def haproxy_accepts_live(self) -> None:
        """The real `haproxy -c` accepts the live file."""
        proc = await asyncio.create_subprocess_exec(
            HAPROXY or "haproxy", "-c", "-f", str(self.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()

    def add_app(self) -> str:
        self._next_app += 1
        raw = self.sim.add_app(fault_app(self._next_app))
        return str(raw["id"])

    def mutate(self, rng: random.Random, spare: frozenset[str] = frozenset()) -> str:
        """One random change of Marathon's apps (never to the `spare` ones); Mesos follows."""
        ids = sorted(set(self.sim.apps) - spare)
        roll = rng.random()
        if roll < 0.15 or len(ids) < 2:
            what = f"add {self.add_app()}"
        elif roll < 0.25:
            app_id = rng.choice(ids)
            self.sim.remove_app(app_id)
            self.removed.add(app_id)
            what = f"remove {app_id}"
        else:
            app_id = rng.choice(ids)
            tasks = self.sim.apps[app_id]["tasks"]
            if roll < 0.55 or not tasks:
                n = rng.randint(0, 4)
                self.sim.scale(app_id, n)
                what = f"scale {app_id} {n}"
            elif roll < 0.75 or not self.sim.apps[app_id]["healthChecks"]:
                t = rng.choice(tasks)
                self.sim.kill_task(app_id, t["id"], state="TASK_FAILED")
                self.sim.start_task(app_id)
                what = f"replace a task of {app_id}"
            else:
                t = rng.choice(tasks)
                alive = not t["healthCheckResults"][0]["alive"]
                self.sim.set_health(app_id, t["id"], alive)
                what = f"health {app_id} {alive}"
        self.cluster.sync()
        return what


@contextlib.asynccontextmanager
async def fault_rig(tmp_path: Path, *, version: str = "1.5", apps: int = 6,
                    min_reload_interval: float = 0.5, process: bool = False,
                    stall_timeout: float = 60.0) -> AsyncIterator[Rig]:
    """A converged rig: Marathon (1.4 or 1.5 shapes) with `apps` apps, Mesos following it,
    a daemon whose only way to learn of changes is the Marathon source under test
    (both refresh intervals are an hour)."""
    cluster = SimCluster()
    cluster.marathon.version = version
    cluster.marathon.keepalive_seconds = 0.5
    await cluster.start()
    for n in range(apps):
        cluster.marathon.add_app(fault_app(n))
    cluster.sync()
    settings = settings_for(
        mesos={"masters": [cluster.master.address], "refresh_seconds": 3600},
        marathon={"urls": [cluster.marathon.url], "refresh_seconds": 3600,
                  "stall_timeout": stall_timeout},
        haproxy={"config_path": str(tmp_path / "haproxy.cfg"), "bind_address": "127.0.0.1",
                 "validate_command": "haproxy -c -f {path}",
                 "reload_command": f"echo reload >> {tmp_path / 'reloads'}",
                 "min_reload_interval": min_reload_interval, "http_port": free_port(),
                 "https_port": free_port(), "appid_port": free_port(),
                 "stats_port": free_port(), "stats_socket": str(tmp_path / "admin.sock")},
    )
    running: Running | None = None
    try:
        running = await (start_process(settings, tmp_path) if process
                         else start_daemon(settings))
        rig = Rig(tmp_path, cluster, running, settings)
        await rig.wait_converged(what="the initial state")
        yield rig
    finally:
        if isinstance(running, ProcessRunning):
            await running.stop()
        elif running is not None:
            await running.daemon.stop()
        await cluster.stop()
