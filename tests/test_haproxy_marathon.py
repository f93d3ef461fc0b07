"""Scaling through Marathon events: SimMarathon -> MarathonSource -> store -> HAProxyPipeline
-> a real HAProxy in front of echo servers. Which echo servers answer follows the events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from discoveryd.settings import MarathonSettings
from discoveryd.sim.marathon import SimMarathon, app
from discoveryd.sources.marathon import MarathonSource
from tests.fakes.haproxy import HAPROXY
from tests.fakes.ports import free_port
from tests.test_haproxy_integration import Rig, echoes, rig  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")]
HOST = "scale.example.com"


@contextlib.asynccontextmanager
async def marathon_feeding(rig: Rig) -> AsyncIterator[SimMarathon]:  # noqa: F811
    """A simulated Marathon whose tasks run on loopback, followed through /v2/events only
    (the periodic re-sync is an hour away, so nothing but events can move the config)."""
    async with SimMarathon(agents=("127.0.0.1",), keepalive_seconds=0.5) as sim:
        settings = MarathonSettings(urls=[sim.url], events=True, refresh_seconds=3600)
        source = MarathonSource(settings, rig.store, rig.metrics)
        runner = asyncio.create_task(source.run())
        try:
            yield sim
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


async def test_scaling_through_marathon_events(rig: Rig, echoes) -> None:  # noqa: F811
    e1, e2, e3 = await echoes("e1"), await echoes("e2"), await echoes("e3")
    port = free_port()
    async with marathon_feeding(rig) as sim:
        sim.add_app(app("/scale/web", service_ports=(port,), labels={
            "HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": HOST}))
        first = sim.start_task("/scale/web", ports=[e1.port], host="127.0.0.1")
        await rig.wait_served({"e1"}, rig.haproxy.http_port, Host=HOST)
        await rig.wait_served({"e1"}, port)

        sim.start_task("/scale/web", ports=[e2.port], host="127.0.0.1")
        sim.start_task("/scale/web", ports=[e3.port], host="127.0.0.1")
        await rig.wait_served({"e1", "e2", "e3"}, rig.haproxy.http_port, Host=HOST)
        assert await rig.served_by(rig.haproxy.appid_port,
                                   **{"X-Marathon-App-Id": "/scale/web"}) == {"e1", "e2", "e3"}

        sim.kill_task("/scale/web", first["id"])  # TASK_KILLED event
        await rig.wait_served({"e2", "e3"}, rig.haproxy.http_port, Host=HOST)

        sim.scale("/scale/web", 1)  # kills the youngest (e3)
        await rig.wait_served({"e2"}, rig.haproxy.http_port, Host=HOST)
        await rig.wait_served({"e2"}, port)
        assert rig.pipeline.status()["backends"] == ["scale_web_" + str(port)]


async def test_health_events_take_a_task_out(rig: Rig, echoes) -> None:  # noqa: F811
    e1, e2 = await echoes("h1"), await echoes("h2")
    port = free_port()
    async with marathon_feeding(rig) as sim:
        sim.add_app(app("/health/web", service_ports=(port,), health_path="/health",
                        labels={"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": HOST}))
        sick = sim.start_task("/health/web", ports=[e1.port], host="127.0.0.1")
        sim.start_task("/health/web", ports=[e2.port], host="127.0.0.1")
        await rig.wait_served({"h1", "h2"}, rig.haproxy.http_port, Host=HOST)

        sim.set_health("/health/web", sick["id"], False)  # health_status_changed_event
        await rig.wait_served({"h2"}, rig.haproxy.http_port, Host=HOST)
        sim.set_health("/health/web", sick["id"], True)
        await rig.wait_served({"h1", "h2"}, rig.haproxy.http_port, Host=HOST)


async def test_app_without_tasks_does_not_listen(rig: Rig, echoes) -> None:  # noqa: F811
    """marathon-lb renders no frontend for a port without servers; neither do we."""
    e1 = await echoes("only")
    idle, busy = free_port(), free_port()
    async with marathon_feeding(rig) as sim:
        sim.add_app(app("/idle", service_ports=(idle,), labels={"HAPROXY_GROUP": "external"}))
        sim.add_app(app("/busy", service_ports=(busy,), labels={"HAPROXY_GROUP": "external"}))
        sim.start_task("/busy", ports=[e1.port], host="127.0.0.1")
        await rig.wait_served({"only"}, busy)
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", idle)
            writer.close()
