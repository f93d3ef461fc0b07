"""MarathonSource against a real (simulated) Marathon over HTTP and SSE on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

from discoveryd.metrics import Metrics
from discoveryd.settings import MarathonSettings
from discoveryd.sim.marathon import SimMarathon, app
from discoveryd.sources.marathon import MarathonSource
from discoveryd.store import Store
from tests.daemon_harness import eventually
from tests.fakes.ports import free_port

DEADLINE = 20.0


async def wait_for(cond: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    await eventually(cond, timeout=deadline, interval=0.01, what=what)


class Harness:
    def __init__(self, sim: SimMarathon, source: MarathonSource, store: Store,
                 metrics: Metrics) -> None:
        self.sim, self.source, self.store, self.metrics = sim, source, store, metrics
        self.task_changes = 0

    def tasks(self, app_id: str) -> dict:
        snap = self.store.current.marathon
        a = snap.apps.get(app_id) if snap else None
        return {t.task_id: t for t in a.tasks} if a else {}

    def fetches(self, result: str = "ok") -> float:
        return self.metrics.registry.get_sample_value(
            "discoveryd_marathon_snapshot_fetches_total", {"result": result}) or 0


@contextlib.asynccontextmanager
async def running(sim: SimMarathon, urls: list[str] | None = None, **kw):
    opts = {"stall_timeout": 30.0, "backoff_base": 0.05, "backoff_cap": 1.0}
    settings_kw = {k: kw.pop(k) for k in ("events", "refresh_seconds", "auth", "timeout") if k in kw}
    opts.update(kw)
    store, metrics = Store(), Metrics()
    settings = MarathonSettings(urls=urls or [sim.url], **settings_kw)
    h = Harness(sim, None, store, metrics)  # type: ignore[arg-type]

    def changed() -> None:
        h.task_changes += 1

    h.source = MarathonSource(settings, store, metrics, on_task_change=changed, **opts)
    runner = asyncio.create_task(h.source.run())
    try:
        await wait_for(lambda: store.current.marathon is not None, "first snapshot")
        yield h
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


@pytest.fixture
async def sim():
    async with SimMarathon(keepalive_seconds=0.5) as s:
        s.add_app(app("/shop/web", instances=2, health_path="/health"))
        yield s


async def test_running_task_appears_and_killed_task_disappears(sim):
    async with running(sim) as h:
        await wait_for(lambda: h.source.connected and sim.connected_streams == 1, "stream")
        fetches = sim.fetches
        new = sim.start_task("/shop/web")
        await wait_for(lambda: new["id"] in h.tasks("/shop/web"), "new task in model")
        t = h.tasks("/shop/web")[new["id"]]
        assert t.host == new["host"] and list(t.ports) == new["ports"]
        assert t.state == "TASK_RUNNING"
        sim.kill_task("/shop/web", new["id"])
        await wait_for(lambda: new["id"] not in h.tasks("/shop/web"), "killed task gone")
        assert sim.fetches == fetches  # applied from the events alone
        assert h.task_changes >= 2
        events = h.metrics.registry.get_sample_value(
            "discoveryd_marathon_events_total", {"type": "status_update_event"})
        assert events >= 2
        assert h.metrics.registry.get_sample_value("discoveryd_marathon_connected") == 1


async def test_event_stream_is_filtered_server_side(sim):
    async with running(sim) as h:
        await wait_for(lambda: sim.event_filters, "a stream")
        assert "status_update_event" in sim.event_filters[0]
        assert h.source.status()["url"] == sim.url


@pytest.mark.parametrize("version", ["1.4", "1.5"])
async def test_health_flips(version):
    async with SimMarathon(version=version, keepalive_seconds=0.5) as sim:
        sim.add_app(app("/web", instances=1, health_path="/"))
        async with running(sim) as h:
            await wait_for(lambda: h.source.connected, "stream")
            tid = sim.apps["/web"]["tasks"][0]["id"]
            await wait_for(lambda: tid in h.tasks("/web"), "task")
            assert h.tasks("/web")[tid].health[0].alive is True
            sim.set_health("/web", tid, False)
            await wait_for(lambda: not h.tasks("/web")[tid].health[0].alive, "unhealthy")
            sim.set_health("/web", tid, True)
            await wait_for(lambda: h.tasks("/web")[tid].health[0].alive, "healthy again")


async def test_new_app_triggers_a_fetch(sim):
    async with running(sim) as h:
        await wait_for(lambda: h.source.connected, "stream")
        sim.add_app(app("/new", instances=1, networking="bridge", service_ports=(10500,)))
        await wait_for(lambda: len(h.tasks("/new")) == 1, "new app fetched")
        assert h.store.current.marathon.apps["/new"].networking == "bridge"
        sim.remove_app("/new")
        await wait_for(lambda: "/new" not in h.store.current.marathon.apps, "app removed")


async def test_failover_when_first_url_refuses_connections(sim):
    dead = f"http://127.0.0.1:{free_port()}"
    async with running(sim, urls=[dead, sim.url]) as h:
        await wait_for(lambda: h.source.connected, "stream via the second URL")
        assert h.source.status()["url"] == sim.url
        new = sim.start_task("/shop/web")
        await wait_for(lambda: new["id"] in h.tasks("/shop/web"), "event via second URL")


async def test_redirect_to_leader_is_followed(sim):
    async with SimMarathon() as follower:
        follower.redirect_to(sim.url)
        async with running(sim, urls=[follower.url], auth="ops:secret") as h:
            assert len(h.tasks("/shop/web")) == 2
            await wait_for(lambda: h.source.connected, "stream through redirect")
            new = sim.start_task("/shop/web")
            await wait_for(lambda: new["id"] in h.tasks("/shop/web"), "event")


async def test_basic_auth_is_sent():
    async with SimMarathon(auth="ops:secret") as sim:
        sim.add_app(app("/a", instances=1))
        async with running(sim, auth="ops:secret") as h:
            assert len(h.tasks("/a")) == 1


async def test_reconnect_after_dropped_stream_resyncs(sim):
    async with running(sim) as h:
        await wait_for(lambda: sim.event_connects == 1 and h.source.connected, "stream")
        fetches = sim.fetches
        sim.drop_streams()
        # Changed while disconnected: no event reaches us, only the re-sync can show it.
        sim.apps["/shop/web"]["tasks"].pop()
        await wait_for(lambda: sim.event_connects >= 2, "reconnect")
        await wait_for(lambda: len(h.tasks("/shop/web")) == 1, "re-sync after reconnect")
        assert sim.fetches > fetches


async def test_stalled_stream_is_detected_and_reconnected(sim):
    async with running(sim, stall_timeout=1.0) as h:
        await wait_for(lambda: sim.event_connects == 1 and h.source.connected, "stream")
        sim.stall_streams()
        await wait_for(lambda: sim.event_connects >= 2, "reconnect after stall")
        new = sim.start_task("/shop/web")
        await wait_for(lambda: new["id"] in h.tasks("/shop/web"), "events flow again")


async def test_keepalives_keep_a_quiet_stream_open(sim):
    async with running(sim, stall_timeout=2.0) as h:
        await wait_for(lambda: h.source.connected, "stream")
        end = time.monotonic() + 3.0  # longer than stall_timeout, with keep-alives every 0.5s
        await wait_for(lambda: time.monotonic() > end, "quiet period")
        assert sim.event_connects == 1


async def test_burst_of_200_events_costs_few_fetches(sim):
    async with running(sim) as h:
        await wait_for(lambda: h.source.connected, "stream")
        await wait_for(lambda: h.fetches() >= 2, "initial and on-connect fetches")
        await wait_for(lambda: not h.source._fetch_wanted.is_set()
                       and h.fetches() == sim.fetches, "no fetch pending or in flight")
        base = sim.fetches
        for i in range(200):
            sim.push_event("deployment_step_success", {"plan": {"id": str(i)}})
        sim.push_event("api_post_event", {"uri": "/v2/apps/last"})
        sim.apps["/shop/web"]["labels"]["MARK"] = "latest"
        await wait_for(lambda: h.store.current.marathon.apps["/shop/web"].labels.get("MARK")
                       == "latest", "latest state")
        await wait_for(lambda: h.metrics.registry.get_sample_value(
            "discoveryd_marathon_events_total", {"type": "api_post_event"}) or 0, "all events")
        await wait_for(lambda: not h.source._fetch_wanted.is_set(), "fetch queue drained")
        assert 1 <= sim.fetches - base <= 3


async def test_5xx_keeps_the_last_snapshot(sim):
    async with running(sim) as h:
        snap = h.store.current.marathon
        sim.fail_with(503)
        errors = h.fetches("error")
        h.source.request_fetch()
        await wait_for(lambda: h.fetches("error") > errors, "failed fetch")
        assert h.store.current.marathon is snap
        assert "503" in h.source.status()["last_error"]
        sim.fail_with(None)


async def test_invalid_json_keeps_the_last_snapshot(sim):
    async with running(sim) as h:
        snap = h.store.current.marathon
        sim.apps.clear()
        sim.apps["/bad"] = {"id": "/bad", "networks": [{"mode": "bogus"}], "tasks": []}
        h.source.request_fetch()
        await wait_for(lambda: h.fetches() >= 2 and h.store.current.marathon is not snap,
                       "fetch with a skipped app")
        assert h.store.current.marathon.skipped[0][0] == "/bad"


async def test_polling_mode():
    async with SimMarathon() as sim:
        sim.add_app(app("/a", instances=1))
        async with running(sim, events=False, refresh_seconds=0.2) as h:
            sim.scale("/a", 3)
            await wait_for(lambda: len(h.tasks("/a")) == 3, "poll picks up the scale")
            assert sim.event_connects == 0
            assert h.metrics.registry.get_sample_value("discoveryd_marathon_connected") == 1


async def test_unknown_event_types_count_as_other(sim):
    async with running(sim) as h:
        await wait_for(lambda: h.source.connected, "stream")
        h.source.handle_event("made_up_event", "{}")
        h.source.handle_event("status_update_event", "not json")
        assert h.metrics.registry.get_sample_value(
            "discoveryd_marathon_events_total", {"type": "other"}) == 1
