"""A real HAProxy in master-worker mode on loopback, for integration tests."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from pathlib import Path

import aiohttp

from discoveryd.model.marathon import (
    App,
    HealthCheck,
    HealthResult,
    MarathonSnapshot,
    ServicePort,
    Task,
)
from tests.fakes.ports import free_port

HAPROXY = shutil.which("haproxy")


class HAProxyProcess:
    """`haproxy -W -S <master socket> -f <cfg>`; ready when the stats health check answers."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = str(workdir / "haproxy.cfg")
        self.master_socket = str(workdir / "master.sock")
        self.stats_socket = str(workdir / "admin.sock")
        self.pid_file = str(workdir / "haproxy.pid")
        self.log_path = workdir / "haproxy.log"
        self.stats_port = free_port()
        self.http_port = free_port()
        self.appid_port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def reload_command(self) -> str:
        return f"{sys.executable} -m discoveryd.haproxy.master_socket reload {self.master_socket}"

    async def start(self, timeout: float = 30.0) -> None:
        assert HAPROXY, "haproxy is not installed"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self._proc = await asyncio.create_subprocess_exec(
            HAPROXY, "-W", "-S", self.master_socket, "-f", self.config_path, "-p", self.pid_file,
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.stats_port}/_haproxy_health_check"
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self._proc and self._proc.returncode is not None:
                    raise RuntimeError(f"haproxy exited: {self.log_path.read_text()}")
                try:
                    async with session.get(url) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # poll interval
        raise TimeoutError(f"haproxy not healthy: {self.log_path.read_text()}")

    async def stop(self) -> None:
        if self._proc and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


# --- builders for typed Marathon apps (readable tests) ---------------------------------

def task(app_id: str, port: int, *, host: str = "127.0.0.1", n: int = 0, state: str | None =
         "TASK_RUNNING", alive: bool | None = None, ports: tuple[int, ...] | None = None,
         ips: tuple[str, ...] = ()) -> Task:
    health = () if alive is None else (HealthResult(alive),)
    return Task(task_id=f"{app_id.strip('/').replace('/', '_')}.{port}.{n}", app_id=app_id,
                host=host, ip_addresses=ips, ports=ports if ports is not None else (port,),
                state=state, health=health)


def app(app_id: str, service_ports: tuple[int, ...] = (10000,), *, labels: dict[str, str] |
        None = None, tasks: tuple[Task, ...] = (), networking: str = "host",
        container_ports: tuple[int | None, ...] | None = None,
        health_checks: tuple[HealthCheck, ...] = (), group: str | None = "external") -> App:
    lab = dict(labels or {})
    if group is not None:
        lab.setdefault("HAPROXY_GROUP", group)
    cps = container_ports or (None,) * len(service_ports)
    ports = tuple(ServicePort(sp, container_port=cp) for sp, cp in zip(service_ports, cps,
                                                                          strict=True))
    return App(app_id=app_id, labels=lab, networking=networking, ports=ports,
               health_checks=health_checks, tasks=tasks, instances=len(tasks))


def snapshot(*apps: App) -> MarathonSnapshot:
    return MarathonSnapshot(apps={a.app_id: a for a in apps})
