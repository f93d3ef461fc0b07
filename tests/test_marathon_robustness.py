"""MarathonSource against malformed apps, hung URLs, credentials and odd task states.

Real loopback servers only: SimMarathon, or a bare aiohttp app where Marathon itself
cannot misbehave that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from discoveryd.metrics import Metrics
from discoveryd.settings import MarathonSettings
from discoveryd.sim.marathon import SimMarathon, app
from discoveryd.sources.marathon import MarathonSource, split_userinfo
from discoveryd.sources.marathon_apps import parse_apps
from discoveryd.store import Store
from tests.daemon_harness import eventually, stop_task
from tests.test_marathon_source import running, wait_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Shapes a real Marathon never serves, but a proxy, a plugin or a bug might.
GARBAGE_APPS = [
    {"id": "/bad/mode", "networks": [{"mode": ["container"]}]},
    {"id": "/bad/ipaddress", "ipAddress": "10.0.0.1"},
    {"id": "/bad/discovery", "ipAddress": {"discovery": [1]}},
    {"id": "/bad/discovery-ports", "ipAddress": {"discovery": {"ports": "80"}}},
    {"id": "/bad/container", "container": "docker"},
    {"id": "/bad/networks", "networks": "host"},
    {"id": "/bad/tasks", "tasks": {"id": "t"}},
    {"id": "/bad/labels", "labels": ["a"]},
]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A bare aiohttp server on 127.0.0.1 answering every GET with `handler`."""
    wapp = web.Application()
    wapp.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(wapp, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def settled(h) -> bool:
    """Stream up, its re-sync fetch done, and no fetch wanted or running: what the model
    shows next comes from events alone until something asks for a fetch."""
    src = h.source
    return (src.connected and h.fetches() >= 2 and not src._fetch_wanted.is_set()
            and src._replay is None)


def test_garbage_app_shapes_are_skipped_one_by_one():
    snap = parse_apps({"apps": [{"id": "/ok", "portDefinitions": [{"port": 10000}]},
                                *GARBAGE_APPS]})
    assert list(snap.apps) == ["/ok"]
    assert sorted(app_id for app_id, _ in snap.skipped) == sorted(a["id"] for a in GARBAGE_APPS)
    # A task of an unexpected shape costs that task, not its app.
    snap = parse_apps({"apps": [{"id": "/w", "tasks": [
        {"id": "w.1", "host": "h"}, {"id": "w.2", "ipAddresses": {"a": 1}},
        {"id": ["w.3"]}]}]})
    assert [t.task_id for t in snap.apps["/w"].tasks] == ["w.1"]
    assert len(snap.skipped) == 2


async def test_malformed_app_is_skipped_and_fetching_goes_on(caplog):
    caplog.set_level(logging.WARNING, "discoveryd.marathon")
    async with SimMarathon(keepalive_seconds=0.5) as sim:
        sim.add_app(app("/shop/web", instances=1))
        async with running(sim) as h:
            await wait_for(lambda: h.source.connected, "stream")
            for raw in GARBAGE_APPS:
                sim.apps[raw["id"]] = {"healthChecks": [], "tasks": [], **raw}
            sim.add_app(app("/shop/api", instances=1))  # its events ask for a fetch
            await wait_for(lambda: h.tasks("/shop/api"), "fetch despite malformed apps")
            assert h.tasks("/shop/web")
            skipped = " ".join(r.getMessage() for r in caplog.records)
            for raw in GARBAGE_APPS:
                assert f"marathon_app_skipped app_id={raw['id']} " in skipped
            # ... and every later fetch still works.
            sim.add_app(app("/shop/late", instances=1))
            await wait_for(lambda: h.tasks("/shop/late"), "a later fetch")
            assert h.fetches("error") == 0


class DiesOnce(MarathonSource):
    """A fetch that raises out of the fetch loop once (a bug fetch_once did not catch)."""

    calls = 0

    async def fetch_once(self) -> bool:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("simulated fetcher bug")
        return await super().fetch_once()


async def test_dead_fetcher_is_noticed_and_restarted(caplog, monkeypatch):
    caplog.set_level(logging.ERROR, "discoveryd.marathon")
    monkeypatch.setattr("tests.test_marathon_source.MarathonSource", DiesOnce)
    async with SimMarathon(keepalive_seconds=0.5) as sim:
        sim.add_app(app("/shop/web", instances=1))
        async with running(sim) as h:
            assert isinstance(h.source, DiesOnce)
            await wait_for(lambda: h.source.connected, "stream")
            sim.add_app(app("/shop/api", instances=1))
            await wait_for(lambda: h.tasks("/shop/api"), "fetch after the fetcher died")
            assert h.source.calls >= 3
            assert any("marathon_fetcher_died" in r.getMessage() for r in caplog.records)


async def test_url_that_never_answers_fails_over_for_the_stream():
    release = asyncio.Event()
    connects = 0

    async def hang(request: web.Request) -> web.StreamResponse:
        nonlocal connects
        connects += 1
        await release.wait()  # accepted, and not a byte of an answer
        return web.Response(status=503)

    async with SimMarathon(keepalive_seconds=0.5) as sim, serve(hang) as hung:
        sim.add_app(app("/shop/web", instances=1))
        try:
            # timeout 1 s: /v2/apps fails over after it too, so the first snapshot arrives.
            async with running(sim, urls=[hung, sim.url], timeout=1.0) as h:
                await wait_for(lambda: h.source.connected and sim.connected_streams == 1,
                               "event stream from the second URL")
                assert connects >= 1 and sim.event_connects >= 1
                new = sim.start_task("/shop/web")
                await wait_for(lambda: new["id"] in h.tasks("/shop/web"), "event applied")
        finally:
            release.set()


def test_userinfo_is_split_from_urls():
    assert split_userinfo("http://ops:p%40ss@m1:8080/base") == ("http://m1:8080/base",
                                                                "ops:p@ss")
    assert split_userinfo("https://m1:8443") == ("https://m1:8443", None)


async def test_credentials_in_url_and_auth_setting_together(caplog):
    caplog.set_level(logging.WARNING, "discoveryd.marathon")
    async with SimMarathon(auth="ops:p@ss", keepalive_seconds=0.5) as sim:
        sim.add_app(app("/shop/web", instances=1))
        with_creds = sim.url.replace("://", "://ops:p%40ss@")
        async with running(sim, urls=[with_creds]) as h:  # URL credentials alone
            await wait_for(lambda: h.source.connected, "stream with URL credentials")
        wrong = sim.url.replace("://", "://ops:wrong@")
        async with running(sim, urls=[wrong], auth="ops:p@ss") as h:  # marathon.auth wins
            await wait_for(lambda: h.source.connected, "stream with marathon.auth")
            assert h.tasks("/shop/web") and h.fetches("error") == 0
            assert "wrong" not in str(h.source.status())
        warned = [r for r in caplog.records
                  if "marathon_auth_overrides_url_credentials" in r.getMessage()]
        assert len(warned) == 1 and "wrong" not in warned[0].getMessage()


async def test_redirect_loop_error_does_not_show_credentials():
    async def loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.path_qs)

    async def loop_with_credentials(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://u:secret@{request.host}{request.path_qs}")

    for handler in (loop, loop_with_credentials):
        async with serve(handler) as url:
            settings = MarathonSettings(urls=[url.replace("://", "://u:secret@")], events=False)
            source = MarathonSource(settings, Store(), Metrics(), backoff_base=0.05,
                                    backoff_cap=0.2)
            task = asyncio.create_task(source.run())
            try:
                error = await eventually(lambda s=source: s.last_error, what="a failed fetch")
                assert "too many redirects" in error and "secret" not in error
                assert not task.done()
            finally:
                await stop_task(task)


async def test_task_lost_is_kept_like_the_snapshot_shows_it():
    async with SimMarathon(keepalive_seconds=0.5) as sim:
        sim.add_app(app("/shop/web", instances=2))
        async with running(sim) as h:
            await wait_for(lambda: settled(h) and len(h.tasks("/shop/web")) == 2,
                           "stream and tasks")
            lost = sim.apps["/shop/web"]["tasks"][0]
            lost["state"] = "TASK_LOST"  # Marathon keeps it: its agent may come back
            ok = h.fetches()
            sim.resend_status("/shop/web", lost["id"])
            await wait_for(lambda: (t := h.tasks("/shop/web").get(lost["id"])) is not None
                           and t.state == "TASK_LOST", "task kept as TASK_LOST")
            await wait_for(lambda: h.fetches() > ok, "the fetch TASK_LOST asks for")
            assert h.tasks("/shop/web")[lost["id"]].state == "TASK_LOST"


async def test_alive_event_of_a_multi_check_app_waits_for_a_fetch():
    async with SimMarathon(keepalive_seconds=0.5) as sim:
        raw = app("/shop/web", health_path="/health")
        raw["healthChecks"].append({"protocol": "TCP", "portIndex": 0})
        sim.add_app(raw)
        async with running(sim) as h:
            await wait_for(lambda: settled(h), "stream and its re-sync")
            t = sim.start_task("/shop/web", alive=False)
            t["healthCheckResults"].append(dict(t["healthCheckResults"][0]))  # both failing
            await wait_for(lambda: t["id"] in h.tasks("/shop/web"), "task")
            await wait_for(lambda: [x.alive for x in h.tasks("/shop/web")[t["id"]].health]
                           == [False, False] and settled(h), "both checks failing")
            # Marathon: the HTTP check passes, the TCP one still fails; the event says alive.
            t["healthCheckResults"][0]["alive"] = True
            sim._health_event(t, True)
            await wait_for(lambda: [x.alive for x in h.tasks("/shop/web")[t["id"]].health]
                           == [True, False], "the fetch the event asks for")


async def test_event_stream_asks_for_light_plans():
    async with SimMarathon(keepalive_seconds=0.5) as sim:
        sim.add_app(app("/shop/web", instances=1))
        async with running(sim) as h:
            await wait_for(lambda: h.source.connected and sim.event_plan_formats, "stream")
            assert sim.event_plan_formats == ["light"]
            assert "status_update_event" in sim.event_filters[0]
