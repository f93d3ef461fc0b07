"""`discoveryd demo`: the daemon against an in-process simulated cluster on loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import signal
from pathlib import Path

from discoveryd.daemon import Daemon
from discoveryd.settings import Settings
from discoveryd.sim.cluster import SimCluster
from discoveryd.sim.marathon import app

log = logging.getLogger("discoveryd.demo")

DEMO_APPS = (
    app("/web", instances=2, service_ports=(10001,), health_path="/",
        labels={"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example.com"}),
    app("/shop/api", instances=2, service_ports=(10002,), networking="bridge",
        labels={"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop.example.com",
                "HAPROXY_0_PATH": "/api"}),
    app("/db/redis", instances=1, service_ports=(10003,),
        labels={"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "tcp"}),
    app("/internal/dashboard", instances=1, service_ports=(10004,),
        labels={"HAPROXY_GROUP": "internal", "HAPROXY_0_VHOST": "dash.internal"}),
)


def demo_settings(cluster: SimCluster, dns_port: int, http_port: int, workdir: Path) -> Settings:
    have_haproxy = shutil.which("haproxy") is not None
    return Settings.model_validate({
        "mesos": {"masters": [cluster.master.address], "refresh_seconds": 10},
        "marathon": {"urls": [cluster.marathon.url], "refresh_seconds": 30},
        "dns": {"listen": [f"127.0.0.1:{dns_port}"], "external": False},
        "haproxy": {
            "config_path": str(workdir / "haproxy.cfg"), "bind_address": "127.0.0.1",
            # no -q: HAProxy then hides the very errors a failed check should log
            "validate_command": "haproxy -c -f {path}" if have_haproxy else "true {path}",
            "http_port": 10080, "https_port": 10443, "appid_port": 10091, "stats_port": 10090,
            "stats_socket": str(workdir / "haproxy-admin.sock"),
        },
        "http": {"listen": f"127.0.0.1:{http_port}"},
    })


def populate(cluster: SimCluster) -> None:
    for raw in DEMO_APPS:
        cluster.marathon.add_app(raw)
    web = cluster.marathon.apps["/web"]["tasks"]
    cluster.marathon.set_health("/web", web[-1]["id"], False)  # one unhealthy task
    cluster.sync()


def next_change(cluster: SimCluster, step: int) -> str:
    """One realistic change; returns what it did."""
    m = cluster.marathon
    action = step % 3
    if action == 0:
        n = 3 if len(m.apps["/web"]["tasks"]) == 2 else 2
        m.scale("/web", n)
        what = f"scaled /web to {n} tasks"
    elif action == 1:
        old = m.apps["/shop/api"]["tasks"][0]
        m.kill_task("/shop/api", old["id"])
        m.start_task("/shop/api")
        what = "restarted a task of /shop/api"
    else:
        m.scale("/db/redis", 2 if len(m.apps["/db/redis"]["tasks"]) == 1 else 1)
        what = f"scaled /db/redis to {len(m.apps['/db/redis']['tasks'])} tasks"
    cluster.sync()
    return what


def banner(dns_port: int, http_port: int, workdir: Path) -> str:
    dig = f"dig @127.0.0.1 -p {dns_port} +short"
    return f"""
discoveryd demo is running (Ctrl-C to stop). Try:
  {dig} web.marathon.mesos             # A records of the /web tasks
  {dig} api-shop.marathon.mesos        # Marathon app /shop/api (groups become dashes, as in mesos-dns)
  {dig} _web._tcp.marathon.mesos SRV   # SRV with ports
  {dig} leader.mesos                   # the (simulated) leading master
  {dig} toy-store.ipv6-framework.mesos AAAA
  curl -s 127.0.0.1:{http_port}/v1/state | python3 -m json.tool
  curl -s 127.0.0.1:{http_port}/metrics | grep ^discoveryd_
  curl -s 127.0.0.1:{http_port}/v1/haproxy/config     # also {workdir / 'haproxy.cfg'}
Every few seconds the simulated Marathon scales an app or restarts a task.
"""


async def run_demo(dns_port: int, http_port: int, workdir: Path, *,
                   change_every: float = 5.0, stop: asyncio.Event | None = None) -> int:
    workdir = workdir.resolve()  # HAProxy reads a relative socket path as host:port
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = SimCluster()
    await cluster.start()
    populate(cluster)
    daemon = Daemon(demo_settings(cluster, dns_port, http_port, workdir))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread (tests)
            pass
    try:
        await daemon.start()
        print(banner(dns_port, http_port, workdir), flush=True)
        for step in itertools.count():
            try:
                async with asyncio.timeout(change_every):
                    await stop.wait()
                break
            except TimeoutError:
                log.info("demo_change %s", next_change(cluster, step))
    finally:
        await daemon.stop()
        await cluster.stop()
    return 0
