"""discoveryd's pipeline driving a real HAProxy (master-worker) in front of echo servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from discoveryd.haproxy.pipeline import HAProxyPipeline
from discoveryd.metrics import Metrics
from discoveryd.model.cluster import ClusterState, with_marathon
from discoveryd.model.marathon import HealthCheck, MarathonSnapshot
from discoveryd.settings import HAProxySettings
from discoveryd.store import Store
from tests.daemon_harness import eventually
from tests.fakes.echo import EchoHTTP, EchoTCP
from tests.fakes.haproxy import HAPROXY, HAProxyProcess, app, snapshot, task
from tests.fakes.ports import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")]
DEADLINE = 30.0


@dataclass
class Traffic:
    served: int = 0
    failures: list[str] = field(default_factory=list)


class Rig:
    def __init__(self, haproxy: HAProxyProcess, store: Store, pipeline: HAProxyPipeline,
                 metrics: Metrics, session: aiohttp.ClientSession) -> None:
        self.haproxy, self.store, self.pipeline = haproxy, store, pipeline
        self.metrics, self.session = metrics, session

    def publish(self, snap: MarathonSnapshot) -> None:
        self.store.apply(lambda s: with_marathon(s, snap, time.time()))

    async def get(self, port: int, path: str = "/", **headers: str) -> tuple[int, str]:
        try:
            async with self.session.get(f"http://127.0.0.1:{port}{path}", headers=headers,
                                        allow_redirects=False) as r:
                return r.status, await r.text()
        except aiohttp.ClientError as e:
            return -1, repr(e)

    async def served_by(self, port: int, path: str = "/", tries: int = 12, **headers: str
                        ) -> set[str]:
        seen = set()
        for _ in range(tries):
            status, body = await self.get(port, path, **headers)
            seen.add(body if status == 200 else f"status {status}")
        return seen

    async def wait_served(self, expected: set[str], port: int, path: str = "/",
                          **headers: str) -> None:
        async def check() -> bool:
            return await self.served_by(port, path, **headers) == expected
        await eventually(check, DEADLINE, what=f"{path} on {port} {headers} served by {expected}")

    @contextlib.asynccontextmanager
    async def traffic(self, port: int, clients: int, body: str | None = None,
                      **headers: str) -> AsyncIterator[Traffic]:
        """`clients` requesting `port` back to back until the block ends; an answer other
        than 200 (with `body`, if given) is a failure."""
        seen, stop = Traffic(), asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                status, text = await self.get(port, **headers)
                seen.served += 1
                if status != 200 or body not in (None, text):
                    seen.failures.append(f"{status} {text}")

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        try:
            yield seen
        finally:
            stop.set()
            await asyncio.gather(*tasks)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    hp = HAProxyProcess(tmp_path)
    settings = HAProxySettings(
        group="external", config_path=hp.config_path, bind_address="127.0.0.1",
        http_port=hp.http_port, appid_port=hp.appid_port, stats_port=hp.stats_port,
        stats_socket=hp.stats_socket, reload_command=hp.reload_command,
        min_reload_interval=0.1, server_state_file=str(tmp_path / "server-state"))
    # HAProxy starts from what discoveryd renders for an empty Marathon.
    bootstrap = Store(ClusterState(marathon=MarathonSnapshot()))
    first = HAProxyPipeline(settings.model_copy(update={"reload_command": None}), bootstrap,
                            Metrics())
    assert (await first.reload_now())["ok"]
    await hp.start()
    store, metrics = Store(), Metrics()
    pipeline = HAProxyPipeline(settings, store, metrics)
    runner = asyncio.create_task(pipeline.run())
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        yield Rig(hp, store, pipeline, metrics, session)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await session.close()
        await hp.stop()


@pytest.fixture
async def echoes() -> AsyncIterator[Callable[..., Awaitable[EchoHTTP]]]:
    started: list[EchoHTTP | EchoTCP] = []

    async def make(name: str, tcp: bool = False) -> EchoHTTP:
        e = await (EchoTCP(name) if tcp else EchoHTTP(name)).start()
        started.append(e)
        return e  # type: ignore[return-value]

    yield make
    for e in started:
        await e.stop()


async def tcp_banner(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()


async def test_routing_vhost_path_appid_tcp_and_groups(rig: Rig, echoes) -> None:
    web1, web2, api, db = (await echoes("web1"), await echoes("web2"), await echoes("api"),
                           await echoes("db", tcp=True))
    other = await echoes("other")
    p_web, p_api, p_db, p_other = free_port(), free_port(), free_port(), free_port()
    rig.publish(snapshot(
        app("/shop/web", (p_web,), labels={"HAPROXY_0_VHOST": "shop.example.com"},
            tasks=(task("/shop/web", web1.port), task("/shop/web", web2.port, n=1))),
        app("/shop/api", (p_api,), labels={"HAPROXY_0_VHOST": "shop.example.com",
                                           "HAPROXY_0_PATH": "/api"},
            tasks=(task("/shop/api", api.port),)),
        app("/db", (p_db,), tasks=(task("/db", db.port),)),
        app("/internal", (p_other,), labels={"HAPROXY_0_VHOST": "internal.example.com"},
            group="internal", tasks=(task("/internal", other.port),)),
    ))
    await rig.wait_served({"web1", "web2"}, rig.haproxy.http_port, Host="shop.example.com")
    assert await rig.served_by(rig.haproxy.http_port, "/api/x",
                               Host="shop.example.com:80") == {"api"}
    assert await rig.served_by(rig.haproxy.appid_port, **{"X-Marathon-App-Id": "/shop/api"}
                               ) == {"api"}
    assert await rig.served_by(p_web) == {"web1", "web2"}
    assert await tcp_banner(p_db) == "db"
    # The other group's app is absent: no vhost rule, no frontend.
    assert await rig.served_by(rig.haproxy.http_port, tries=2,
                               Host="internal.example.com") == {"status 503"}
    assert "internal" not in (rig.pipeline.current_config() or "")
    assert rig.pipeline.ready
    # HAProxy's new worker can serve before the reload command (which polls `show proc`)
    # has returned, so the counter is waited for, not read at once.
    await eventually(lambda: rig.metrics.haproxy_reloads.labels("ok")._value.get() > 0,
                     DEADLINE, what="reload counted")
    assert rig.metrics.haproxy_backends._value.get() == 3


async def test_scaling_up_and_down_changes_servers(rig: Rig, echoes) -> None:
    es = [await echoes(f"t{i}") for i in range(3)]
    port = free_port()

    def scaled(n: int) -> MarathonSnapshot:
        return snapshot(app("/svc", (port,), labels={"HAPROXY_0_VHOST": "svc.test"},
                            tasks=tuple(task("/svc", e.port, n=i) for i, e in enumerate(es[:n]))))

    rig.publish(scaled(1))
    await rig.wait_served({"t0"}, rig.haproxy.http_port, Host="svc.test")
    rig.publish(scaled(3))
    await rig.wait_served({"t0", "t1", "t2"}, rig.haproxy.http_port, Host="svc.test")
    rig.publish(scaled(2))
    await rig.wait_served({"t0", "t1"}, rig.haproxy.http_port, Host="svc.test")


async def test_unhealthy_task_gets_no_traffic(rig: Rig, echoes) -> None:
    good, bad = await echoes("good"), await echoes("bad")
    bad.healthy = False
    port = free_port()
    hc = (HealthCheck("HTTP", "/health", 0, interval_seconds=1, timeout_seconds=1,
                      max_consecutive_failures=0),)
    rig.publish(snapshot(app("/h", (port,), health_checks=hc, tasks=(
        task("/h", good.port, alive=True), task("/h", bad.port, n=1, alive=False)))))
    await rig.wait_served({"good"}, port)
    assert "bad" not in await rig.served_by(port, tries=20)
    # Marathon says alive but HAProxy's own check fails: still no traffic.
    rig.publish(snapshot(app("/h", (port,), health_checks=hc, tasks=(
        task("/h", good.port, alive=True), task("/h", bad.port, n=1, alive=True)))))
    await eventually(lambda: str(bad.port) in (rig.pipeline.current_config() or ""), DEADLINE,
                     what="config with both tasks")
    assert "bad" not in await rig.served_by(port, tries=20)


async def test_bad_label_and_invalid_app_leave_the_rest_routed(rig: Rig, echoes) -> None:
    ok1, ok2 = await echoes("ok1"), await echoes("ok2")
    p1, p2, p_bad, p_broken = free_port(), free_port(), free_port(), free_port()
    rig.publish(snapshot(
        app("/ok1", (p1,), labels={"HAPROXY_0_VHOST": "ok1.test"}, tasks=(task("/ok1", ok1.port),)),
        app("/bad-label", (p_bad,), labels={"HAPROXY_0_VHOST": "x.test\n  bind :1"},
            tasks=(task("/bad-label", ok1.port),)),
        # Passes label checks but `haproxy -c` rejects it: the certificate does not exist.
        app("/broken", (p_broken,), labels={"HAPROXY_0_SSL_CERT": "/nonexistent/cert.pem"},
            tasks=(task("/broken", ok2.port),)),
        app("/ok2", (p2,), labels={"HAPROXY_0_VHOST": "ok2.test"}, tasks=(task("/ok2", ok2.port),)),
    ))
    await rig.wait_served({"ok1"}, rig.haproxy.http_port, Host="ok1.test")
    await rig.wait_served({"ok2"}, rig.haproxy.http_port, Host="ok2.test")
    status = rig.pipeline.status()
    assert status["excluded_apps"] == ["/broken"]
    assert {s["app_id"] for s in status["skipped"]} == {"/bad-label"}
    live = Path(rig.haproxy.config_path).read_text()
    assert "broken" not in live and "bad-label" not in live
    assert rig.metrics.haproxy_validation_failures._value.get() >= 1
    assert rig.metrics.haproxy_skipped.labels("bad_vhost")._value.get() == 1
    proc = await asyncio.create_subprocess_exec(HAPROXY, "-c", "-f", rig.haproxy.config_path,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0


async def test_twenty_reloads_drop_no_request(rig: Rig, echoes) -> None:
    es = [await echoes(f"r{i}") for i in range(3)]
    port = free_port()

    def version(i: int) -> MarathonSnapshot:
        chosen = (es[i % 3], es[(i + 1) % 3])
        return snapshot(app("/r", (port,), labels={"HAPROXY_0_VHOST": "r.test"},
                            tasks=tuple(task("/r", e.port, n=k) for k, e in enumerate(chosen))))

    rig.publish(version(0))
    await rig.wait_served({"r0", "r1"}, rig.haproxy.http_port, Host="r.test")
    reloads = rig.metrics.haproxy_reloads.labels("ok")
    async with rig.traffic(rig.haproxy.http_port, 4, Host="r.test") as seen:
        for i in range(1, 21):
            before = reloads._value.get()
            rig.publish(version(i))
            await eventually(lambda b=before: reloads._value.get() > b, DEADLINE,
                             what=f"reload {i}")
    assert seen.served > 20
    assert seen.failures == []
    assert rig.metrics.haproxy_reloads.labels("error")._value.get() == 0
