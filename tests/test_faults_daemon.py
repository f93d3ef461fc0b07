"""Faults of the daemon process itself: SIGHUP with a config that cannot be used, and
SIGTERM racing a reload or a validation. The daemon runs as `python -m discoveryd run`.

tests/test_run_process.py covers one wrong-typed key and JSON logs; here every kind of
broken file must leave DNS, HTTP and /v1/config exactly as they were, and a SIGTERM at
any moment of the HAProxy cycle must leave a complete, valid live haproxy.cfg that the
next start makes HAProxy load (no record lost to the interruption).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from discoveryd.sim.marathon import SimMarathon, app
from discoveryd.sim.mesos_master import SimMesosMaster
from tests.daemon_harness import eventually
from tests.daemon_process import DaemonProcess
from tests.fakes.commands import SwitchedCommand, still_running
from tests.fakes.haproxy import HAPROXY
from tests.fakes.ports import free_port

DEADLINE = 40.0  # generous: other test suites load the same 2 cores
STOP_BOUND = 5.0  # CONTRACT: SIGTERM -> clean exit 0 within 5 s


def dns_doc(master: SimMesosMaster, dns_port: int, http_port: int, ttl: int) -> dict[str, Any]:
    return {"mesos": {"masters": [master.address], "refresh_seconds": 1},
            "dns": {"listen": [f"127.0.0.1:{dns_port}"], "ttl": ttl, "external": False},
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "logging": {"format": "json", "level": "info"}}


async def leader_ttl(d: DaemonProcess) -> int | None:
    r = await d.query("leader.mesos.")
    return r.answer[0].ttl if r is not None and r.answer else None


async def ttl_is(d: DaemonProcess, ttl: int) -> bool:
    return await leader_ttl(d) == ttl


async def config_is(d: DaemonProcess, config: dict[str, Any]) -> bool:
    return await d.get("/v1/config") == (200, config)


@pytest.fixture
async def occupied() -> AsyncIterator[int]:
    """A port taken on UDP and TCP (no SO_REUSEPORT), so no DNS server can bind it."""
    port = free_port()
    with socket.socket(type=socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", port))
        t.bind(("127.0.0.1", port))
        t.listen()
        yield port


async def test_sighup_with_unusable_configs_keeps_the_running_one(
        tmp_path: Path, master: SimMesosMaster, occupied: int) -> None:
    dns_port, http_port = free_port(), free_port()
    good = dns_doc(master, dns_port, http_port, ttl=60)
    d = await DaemonProcess(tmp_path / "discoveryd.yaml", good).start()
    try:
        await eventually(lambda: ttl_is(d, 60), DEADLINE, what="DNS answering")
        status, config = await d.get("/v1/config")
        assert status == 200 and config["TTL"] == 60
        broken: list[tuple[str | dict[str, Any], str, str]] = [
            ("dns: {ttl: [60\n", "config_reload_rejected", "invalid YAML"),
            ("dns: {tll: 5}\n", "config_reload_rejected", "dns.tll"),
            ("dns: {ttl: five}\n", "config_reload_rejected", "dns.ttl"),
            # Valid, but its DNS address is taken: found only when applying it.
            ({**good, "dns": {**good["dns"], "listen": [f"127.0.0.1:{occupied}"], "ttl": 5}},
             "config_reload_failed", f"127.0.0.1:{occupied}"),
        ]
        for i, (doc, event, names) in enumerate(broken, 1):
            errors = len(d.errors())
            d.write(doc)
            d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            await eventually(lambda e=event: d.events(e), DEADLINE, what=f"{event} #{i}")
            new = d.errors()[errors:]
            assert len(new) == 1 and names in new[0]["msg"], new
            # The last one restarts the old configuration: HTTP comes back after DNS.
            await eventually(lambda: ttl_is(d, 60), DEADLINE, what=f"DNS after #{i}")
            await eventually(lambda: config_is(d, config), DEADLINE, what=f"HTTP after #{i}")
            assert d.alive
            assert (await d.get("/health"))[0] == 200
            assert not d.events("config_reloaded")
            d.logs.clear()
        d.write(dns_doc(master, dns_port, http_port, ttl=7))
        for _ in range(5):  # a burst, as a careless config-management run sends
            await d.signal_delivered(signal.SIGHUP)
        await eventually(lambda: len(d.events("config_reloaded")) == 5, DEADLINE,
                         what="five reloads, one after the other")
        assert d.errors() == [] and d.alive
        assert await ttl_is(d, 7)
        assert (await d.get("/v1/config"))[1]["TTL"] == 7
        code, took = await d.stop()
        assert code == 0 and took < STOP_BOUND
    finally:
        await d.kill()


# --- SIGTERM racing the HAProxy cycle ----------------------------------------------------


class Rig:
    """One Marathon, one config directory, and daemons started on it one after another
    (as systemd restarts it). The reload command copies the live file to `loaded.cfg`:
    what a HAProxy would now be running."""

    def __init__(self, tmp_path: Path, marathon: SimMarathon) -> None:
        self.dir, self.marathon = tmp_path, marathon
        self.live, self.loaded = tmp_path / "haproxy.cfg", tmp_path / "loaded.cfg"
        self.validator = SwitchedCommand(tmp_path, "validate", 'haproxy -c -f "$1"')
        self.reloader = SwitchedCommand(tmp_path, "reload", f"cp {self.live} {self.loaded}",
                                        slow_seconds=1.5)
        self.app_ids: list[str] = []
        self.doc = {
            "dns": {"enabled": False}, "http": {"listen": f"127.0.0.1:{free_port()}"},
            "marathon": {"urls": [marathon.url], "refresh_seconds": 3600},
            "haproxy": {"config_path": str(self.live), "bind_address": "127.0.0.1",
                        "validate_command": f"{self.validator.path} {{path}}",
                        "reload_command": str(self.reloader.path), "min_reload_interval": 0,
                        "http_port": free_port(), "https_port": free_port(),
                        "appid_port": free_port(), "stats_port": free_port(),
                        "stats_socket": str(tmp_path / "admin.sock")},
            "logging": {"format": "json", "level": "info"}}

    def add_app(self) -> str:
        app_id = f"/app{len(self.app_ids)}"
        self.marathon.add_app(app(app_id, instances=1, service_ports=(free_port(),),
                                  labels={"HAPROXY_GROUP": "external"}))
        self.app_ids.append(app_id)
        return app_id

    def settled(self) -> bool:
        """Every app is in the live file, and HAProxy runs exactly the live file."""
        if not (self.live.exists() and self.loaded.exists()):
            return False
        text = self.live.read_text()
        return (all(backend(a) in text for a in self.app_ids)
                and self.loaded.read_text() == text)


def backend(app_id: str) -> str:
    return f"backend {app_id.strip('/')}_"


async def haproxy_accepts(path: Path) -> bool:
    proc = await asyncio.create_subprocess_exec(
        HAPROXY or "haproxy", "-c", "-f", str(path), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def ready(d: DaemonProcess) -> bool:
    return (await d.get("/ready"))[0] == 200


def slow_runs(cmd: SwitchedCommand) -> int:
    return sum(1 for _, mode, _ in cmd.calls() if mode == "slow")


async def sigterm_race(rig: Rig, stage: str, delay: float) -> None:
    """Start a daemon, let it settle, change Marathon, and SIGTERM it `delay` seconds
    after the change (stage "change") or after the slow validation/reload started."""
    d = await DaemonProcess(rig.dir / "discoveryd.yaml", rig.doc).start()
    try:
        await eventually(lambda: ready(d), DEADLINE, what="ready")
        # A restart must finish what the previous daemon was stopped in the middle of.
        await eventually(rig.settled, DEADLINE, what="settled after a restart")
        before = rig.live.read_text()
        slow = {"validate": rig.validator, "reload": rig.reloader}.get(stage)
        runs = slow_runs(slow) if slow else 0
        if slow:
            slow.set("slow")
        app_id = rig.add_app()
        if slow:
            await eventually(lambda: slow_runs(slow) > runs, DEADLINE, what=f"{stage} started")
        await asyncio.sleep(delay)  # the moment of the fault, not a synchronisation
        code, took = await d.stop(signal.SIGTERM)
        assert (code, took < STOP_BOUND) == (0, True), f"{stage}+{delay}: exit {code} {took:.1f}s"
    finally:
        await d.kill()
    after = rig.live.read_text()
    assert after == before or backend(app_id) in after, f"{stage}+{delay}: unknown live file"
    assert await haproxy_accepts(rig.live), f"{stage}+{delay}: invalid live file"
    assert not still_running(rig.validator.pids() + rig.reloader.pids()), "left running"
    rig.validator.set("ok")
    rig.reloader.set("ok")


@pytest.mark.long
@pytest.mark.integration
@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")
async def test_sigterm_at_any_moment_of_a_reload_leaves_a_valid_live_file(
        tmp_path: Path) -> None:
    async with SimMarathon(agents=("127.0.0.1",)) as marathon:
        rig = Rig(tmp_path, marathon)
        rig.add_app()
        moments = [("reload", 0.0), ("reload", 0.4), ("reload", 0.9), ("reload", 1.3),
                   ("validate", 0.0), ("validate", 0.5), ("change", 0.0), ("change", 0.05),
                   ("change", 0.15), ("change", 0.3)]
        for stage, delay in moments:
            await sigterm_race(rig, stage, delay)
        d = await DaemonProcess(rig.dir / "discoveryd.yaml", rig.doc).start()
        try:
            await eventually(lambda: ready(d), DEADLINE, what="ready")
            await eventually(rig.settled, DEADLINE, what="settled after the last restart")
            assert (await d.stop())[0] == 0
        finally:
            await d.kill()
