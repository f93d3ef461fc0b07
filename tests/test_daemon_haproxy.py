"""The daemon's HAProxy half through the HTTP API: readiness, config, reload, metrics."""

import shutil

import aiohttp
import pytest

from discoveryd.sim.cluster import SimCluster
from discoveryd.sim.marathon import app
from tests.daemon_harness import eventually, settings_for, start_daemon
from tests.fakes.ports import free_port


@pytest.fixture
async def cluster():
    c = SimCluster(agents=("127.0.0.1",))
    await c.start()
    yield c
    await c.stop()


async def test_haproxy_endpoints_readiness_and_metrics(tmp_path, cluster):
    validate = "haproxy -c -q -f {path}" if shutil.which("haproxy") else "true {path}"
    reloads = tmp_path / "reloads"
    cluster.marathon.fail_with(503)  # before the start: no snapshot can arrive yet
    r = await start_daemon(settings_for(
        mesos={"masters": [cluster.master.address]},
        marathon={"urls": [cluster.marathon.url]},
        haproxy={"config_path": str(tmp_path / "haproxy.cfg"), "bind_address": "127.0.0.1",
                 "validate_command": validate, "reload_command": f"echo x >> {reloads}",
                 "min_reload_interval": 0, "http_port": free_port(), "https_port": free_port(),
                 "appid_port": free_port(), "stats_port": free_port(),
                 "stats_socket": str(tmp_path / "admin.sock")},
    ))
    try:
        # Marathon answers 503: readiness names what is missing.
        status, body = await r.get("/ready")
        # Mesos is configured: Marathon and HAProxy are pending but never hold /ready
        assert {"marathon_snapshot", "haproxy_config"} <= set(body["pending"])
        assert not {"marathon_snapshot", "haproxy_config"} & set(body["waiting_for"])
        await eventually(lambda: _status(r, "/ready", 200), timeout=30, what="DNS half ready")
        assert {"marathon_snapshot", "haproxy_config"} <= set((await r.get("/ready"))[1]["pending"])
        # a reload asked for before there is anything to render: wait, not fail
        async with aiohttp.ClientSession() as s, s.post(r.http + "/v1/haproxy/reload") as resp:
            assert resp.status == 503 and (await resp.json())["ok"] is False
        cluster.marathon.fail_with(None)
        cluster.marathon.add_app(app("/shop/web", instances=2, service_ports=(10200,),
                                     labels={"HAPROXY_GROUP": "external",
                                             "HAPROXY_0_VHOST": "shop.example.com"}))
        cluster.sync()
        await eventually(lambda: _ready(r), timeout=30, what="ready")
        status, cfg = await r.get("/v1/haproxy/config")
        assert status == 200 and "shop.example.com" in cfg and "backend shop_web_10200" in cfg
        assert (tmp_path / "haproxy.cfg").read_text() == cfg

        cluster.marathon.scale("/shop/web", 3)
        cluster.sync()
        await eventually(lambda: _servers(r, 3), what="third server rendered")
        async with aiohttp.ClientSession() as s, s.post(r.http + "/v1/haproxy/reload") as resp:
            assert resp.status == 200
            result = await resp.json()
        assert result["ok"] is True
        _, state = await r.get("/v1/state")
        assert state["counts"]["backends"] == 1 and state["haproxy"] is not None
        _, text = await r.get("/metrics")
        assert 'discoveryd_haproxy_reloads_total{result="ok"}' in text
        assert "discoveryd_haproxy_backends 1.0" in text
        assert "discoveryd_haproxy_render_seconds_count" in text
        assert reloads.read_text().count("x") >= 1
    finally:
        await r.daemon.stop()


async def _ready(r):
    """/ready answers 200 and nothing is pending either (the HAProxy half is up too)."""
    status, body = await r.get("/ready")
    return status == 200 and not body["pending"]


async def _status(r, path, expected):
    return (await r.get(path))[0] == expected


async def _servers(r, n):
    _, cfg = await r.get("/v1/haproxy/config")
    return sum(1 for line in cfg.splitlines() if line.strip().startswith("server ")) == n


async def test_sidecar_without_mesos_is_ready_once_haproxy_cfg_is_installed(tmp_path, cluster):
    """The marathon-lb replacement alone: its cluster state is Marathon's and what it serves
    is haproxy.cfg, so /ready waits for both (and not for DNS, which has nothing to say)."""
    validate = "haproxy -c -q -f {path}" if shutil.which("haproxy") else "true {path}"
    cluster.marathon.fail_with(503)  # before the start: no snapshot can arrive yet
    r = await start_daemon(settings_for(
        marathon={"urls": [cluster.marathon.url]},
        haproxy={"config_path": str(tmp_path / "haproxy.cfg"), "bind_address": "127.0.0.1",
                 "validate_command": validate, "http_port": free_port(),
                 "https_port": free_port(), "appid_port": free_port(),
                 "stats_port": free_port(), "stats_socket": str(tmp_path / "admin.sock")},
    ))
    try:
        status, body = await r.get("/ready")
        assert status == 503
        assert {"marathon_snapshot", "haproxy_config"} <= set(body["waiting_for"])
        cluster.marathon.fail_with(None)
        await eventually(lambda: _status(r, "/ready", 200), timeout=30, what="ready")
        assert (tmp_path / "haproxy.cfg").exists()
    finally:
        await r.daemon.stop()
