"""HAProxy fault injection: validate_command and reload_command fail, hang or flap.

Every test asserts no wrong answer and no lost record: the live haproxy.cfg never
changes to something unvalidated (byte-for-byte the old file while validation fails,
always accepted by a real `haproxy -c`), no app is left out because of a fault that
was not its own, and every change is installed once the command works again. DNS keeps
answering meanwhile, and a killed command leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from discoveryd.settings import Settings
from discoveryd.sim.cluster import SimCluster
from discoveryd.sim.marathon import app
from tests.daemon_harness import Running, eventually, settings_for, start_daemon
from tests.fakes.commands import SwitchedCommand, still_running
from tests.fakes.haproxy import HAPROXY, snapshot, task
from tests.fakes.haproxy import app as typed_app
from tests.fakes.ports import free_port
from tests.scrape import sample
from tests.test_daemon_haproxy import cluster  # noqa: F401 - fixture
from tests.test_haproxy_integration import Rig, echoes, rig  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")]
FAILURES = "discoveryd_haproxy_validation_failures_total"
RELOADS = "discoveryd_haproxy_reloads_total"
TIMEOUT = 1.5  # validate_timeout and reload_timeout: short, so a hang costs little
DEADLINE = 40.0  # generous: other test suites load the same 2 cores


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, cluster: SimCluster, validator: SwitchedCommand,  # noqa: F811
                 reloader: SwitchedCommand | None = None) -> AsyncIterator[Running]:
    """The whole daemon (DNS + HAProxy half) against the simulated cluster, with one app
    already installed: the starting point every fault is measured against."""
    r = await start_daemon(settings(tmp_path, cluster, validator, reloader))
    try:
        add(cluster, "/web")
        await eventually(lambda: has_backend(tmp_path, "/web"), DEADLINE, what="first install")
        await eventually(lambda: r.addresses("web.marathon.mesos."), DEADLINE, what="web in DNS")
        if reloader is not None:  # and loaded, so no reload is in flight when a test begins
            await eventually(lambda: at_least(r, 1, RELOADS, result="ok"), DEADLINE,
                             what="first reload")
        yield r
    finally:
        await r.daemon.stop()


def settings(tmp_path: Path, cluster: SimCluster, validator: SwitchedCommand,  # noqa: F811
             reloader: SwitchedCommand | None) -> Settings:
    return settings_for(
        mesos={"masters": [cluster.master.address], "refresh_seconds": 3600},
        marathon={"urls": [cluster.marathon.url]},
        haproxy={"config_path": str(tmp_path / "haproxy.cfg"), "bind_address": "127.0.0.1",
                 "validate_command": f"{validator.path} {{path}}",
                 "reload_command": str(reloader.path) if reloader else None,
                 "validate_timeout": TIMEOUT, "reload_timeout": TIMEOUT,
                 "retry_interval": 1.0,
                 "min_reload_interval": 0, "http_port": free_port(),
                 "https_port": free_port(), "appid_port": free_port(),
                 "stats_port": free_port(), "stats_socket": str(tmp_path / "admin.sock")})


def add(cluster: SimCluster, app_id: str, port: int | None = None) -> None:  # noqa: F811
    cluster.marathon.add_app(app(app_id, instances=1, service_ports=(port or free_port(),),
                                 labels={"HAPROXY_GROUP": "external"}))
    cluster.sync()


def backend(app_id: str) -> str:
    return f"backend {app_id.strip('/').replace('/', '_')}_"


def live(tmp_path: Path) -> bytes:
    return (tmp_path / "haproxy.cfg").read_bytes()


def has_backend(tmp_path: Path, app_id: str) -> bool:
    path = tmp_path / "haproxy.cfg"
    return path.exists() and backend(app_id) in path.read_text()


async def haproxy_accepts(path: Path) -> bool:
    proc = await asyncio.create_subprocess_exec(
        HAPROXY or "haproxy", "-c", "-f", str(path), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def at_least(r: Running, value: float, name: str, **labels: str) -> bool:
    return await sample(r, name, **labels) >= value


async def state(r: Running) -> dict:
    _, body = await r.get("/v1/state")
    return body["haproxy"]


@pytest.mark.parametrize("recovery", ["retry timer", "next change"])
async def test_failing_validation_keeps_the_live_file_then_the_retry_installs(
        tmp_path: Path, cluster: SimCluster, recovery: str) -> None:  # noqa: F811
    validator = SwitchedCommand(tmp_path, "validate", 'haproxy -c -f "$1"')
    async with daemon(tmp_path, cluster, validator) as r:
        before, failures = live(tmp_path), await sample(r, FAILURES)
        validator.set("fail")
        add(cluster, "/api")
        # The retry timer validates again with no new change: two failures, same file.
        await eventually(lambda: at_least(r, failures + 2, FAILURES), DEADLINE,
                         what="a failure and its retry counted")
        assert live(tmp_path) == before
        assert (await r.get("/v1/haproxy/config"))[1].encode() == before
        assert await haproxy_accepts(tmp_path / "haproxy.cfg")
        assert (await r.get("/ready"))[0] == 200  # a valid file is still in force
        assert "failure" in (await state(r))["last_error"]
        assert await r.addresses("web.marathon.mesos.")
        validator.set("ok")
        if recovery == "next change":  # the "the next change retries"
            add(cluster, "/db")
            await eventually(lambda: has_backend(tmp_path, "/db"), DEADLINE, what="next change")
        # With no new change, the retry timer alone installs /api.
        await eventually(lambda: has_backend(tmp_path, "/api"), DEADLINE, what="retry installs")
        assert has_backend(tmp_path, "/web") and (await state(r))["excluded_apps"] == []
        assert await haproxy_accepts(tmp_path / "haproxy.cfg")


async def test_one_spurious_validation_failure_excludes_no_app(
        tmp_path: Path, cluster: SimCluster) -> None:  # noqa: F811
    """A validator that fails once for reasons of its own (not the file's) must not make
    bisection blame, and leave out, an app that is fine."""
    validator = SwitchedCommand(tmp_path, "validate", 'haproxy -c -f "$1"')
    async with daemon(tmp_path, cluster, validator) as r:
        for app_id in ("/a", "/b", "/c"):
            add(cluster, app_id)
        await eventually(lambda: all(has_backend(tmp_path, a) for a in ("/a", "/b", "/c")),
                         DEADLINE, what="three more apps installed")
        failures = await sample(r, FAILURES)
        validator.set("fail-once")
        add(cluster, "/d")
        await eventually(lambda: has_backend(tmp_path, "/d"), DEADLINE, what="/d installed")
        assert await sample(r, FAILURES) == failures + 1
        assert (await state(r))["excluded_apps"] == []
        assert all(has_backend(tmp_path, a) for a in ("/web", "/a", "/b", "/c", "/d"))


async def test_hung_validation_is_killed_and_the_pipeline_goes_on(
        tmp_path: Path, cluster: SimCluster) -> None:  # noqa: F811
    validator = SwitchedCommand(tmp_path, "validate", 'haproxy -c -f "$1"')
    async with daemon(tmp_path, cluster, validator) as r:
        before, failures = live(tmp_path), await sample(r, FAILURES)
        validator.set("hang")
        add(cluster, "/api")
        await eventually(validator.children, DEADLINE,
                         what="validator hanging on its child")
        started = time.monotonic()
        while not await at_least(r, failures + 1, FAILURES):
            # DNS answers while the validator hangs (and while it is killed).
            assert await r.addresses("web.marathon.mesos."), "DNS stopped answering"
            assert time.monotonic() - started < DEADLINE, "hung validation never killed"
        # A hang says nothing about the file: no bisection (each step another timeout).
        assert not [args for _, _, args in validator.calls() if ".bisect" in args]
        await eventually(lambda: not still_running(validator.pids()), DEADLINE,
                         what="the validator and its child killed")
        assert live(tmp_path) == before and await haproxy_accepts(tmp_path / "haproxy.cfg")
        validator.set("ok")
        add(cluster, "/db")
        await eventually(lambda: has_backend(tmp_path, "/db"), DEADLINE, what="not stuck")
        assert has_backend(tmp_path, "/api") and (await state(r))["excluded_apps"] == []


@pytest.mark.long
async def test_failing_and_hung_reloads_are_retried(tmp_path: Path,
                                                    cluster: SimCluster) -> None:  # noqa: F811
    validator = SwitchedCommand(tmp_path, "validate", 'haproxy -c -f "$1"')
    reloader = SwitchedCommand(tmp_path, "reload", "true")
    async with daemon(tmp_path, cluster, validator, reloader) as r:
        await reload_fault_then_retry(r, tmp_path, cluster, reloader, "fail", "/api")
        await reload_fault_then_retry(r, tmp_path, cluster, reloader, "hang", "/db")


async def reload_fault_then_retry(r: Running, tmp_path: Path, cluster: SimCluster,  # noqa: F811
                                  reloader: SwitchedCommand, fault: str, app_id: str) -> None:
    errors = await sample(r, RELOADS, result="error")
    oks = await sample(r, RELOADS, result="ok")
    reloader.set(fault)
    add(cluster, app_id)
    await eventually(lambda: at_least(r, errors + 1, RELOADS, result="error"), DEADLINE,
                     what=f"{fault} reload counted as an error")
    # The validated file is installed; only HAProxy has not loaded it yet. (The error may
    # be that of an intermediate state: the app first appears without its task.)
    await eventually(lambda: has_backend(tmp_path, app_id), DEADLINE, what="installed")
    assert await haproxy_accepts(tmp_path / "haproxy.cfg")
    await eventually(lambda: not still_running(reloader.pids()), DEADLINE,
                     what="no reload command left running")
    ran = len(reloader.calls("run"))
    reloader.set("ok")  # no new change: the retry timer reloads
    await eventually(lambda: at_least(r, oks + 1, RELOADS, result="ok"), DEADLINE,
                     what=f"retry after a {fault} reload")
    assert len(reloader.calls("run")) == ran + 1
    assert (await state(r))["last_reload"]["ok"] is True


async def test_a_reload_cut_short_by_a_stop_is_redone_by_the_next_start(
        tmp_path: Path, cluster: SimCluster) -> None:  # noqa: F811
    """The file was installed but HAProxy never loaded it: a restart that renders the same
    text must still reload, or HAProxy would run the old configuration indefinitely."""
    validator = SwitchedCommand(tmp_path, "validate", 'haproxy -c -f "$1"')
    reloader = SwitchedCommand(tmp_path, "reload", "true")
    async with daemon(tmp_path, cluster, validator, reloader) as r:
        reloader.set("hang")
        add(cluster, "/api")
        await eventually(reloader.children, DEADLINE, what="reload under way")
        await r.daemon.stop()  # as on SIGTERM
        same = r.daemon.settings
    assert has_backend(tmp_path, "/api") and not still_running(reloader.pids())
    reloader.set("ok")
    ran = len(reloader.calls("run"))
    r = await start_daemon(same)
    try:
        await eventually(lambda: at_least(r, 1, RELOADS, result="ok"), DEADLINE,
                         what="the interrupted reload redone")
        assert len(reloader.calls("run")) == ran + 1
        assert not (tmp_path / ".haproxy.cfg.reload-pending").exists()
    finally:
        await r.daemon.stop()


async def occupy(port: int) -> socket.socket:
    """A listening socket without SO_REUSEPORT: HAProxy cannot bind the port while it is
    open, which `haproxy -c` does not notice (it binds nothing)."""
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@pytest.mark.long
async def test_real_haproxy_serves_through_a_failed_reload(rig: Rig, echoes) -> None:  # noqa: F811
    """A reload the master refuses (a port is taken) keeps the old workers serving; the
    retry succeeds once the port is free. No request fails at any point."""
    old, new = await echoes("old"), await echoes("new")
    p_old, p_new = free_port(), free_port()
    first = typed_app("/old", (p_old,), tasks=(task("/old", old.port),))
    rig.publish(snapshot(first))
    await rig.wait_served({"old"}, p_old)
    errors = rig.metrics.haproxy_reloads.labels("error")
    oks = rig.metrics.haproxy_reloads.labels("ok")
    blocker = await occupy(p_new)
    try:
        async with rig.traffic(p_old, 3, body="old") as seen:
            rig.publish(snapshot(first, typed_app("/new", (p_new,),
                                                  tasks=(task("/new", new.port),))))
            await eventually(lambda: errors._value.get() >= 1, DEADLINE, what="refused reload")
            assert "new_" in Path(rig.haproxy.config_path).read_text()
            assert await haproxy_accepts(Path(rig.haproxy.config_path))
            ok_before, served_before = oks._value.get(), seen.served
            await eventually(lambda: seen.served > served_before + 20, DEADLINE,
                             what="traffic after the refused reload")
            blocker.close()
            await eventually(lambda: oks._value.get() > ok_before, DEADLINE,
                             what="retried reload")
            await rig.wait_served({"new"}, p_new)
    finally:
        blocker.close()
    assert seen.failures == [] and seen.served > 20
