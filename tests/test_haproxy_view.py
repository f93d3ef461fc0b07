"""The pure parts: labels, build_view, rendering order, bisection, one-shot render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from discoveryd.haproxy.bisection import find_bad_apps
from discoveryd.haproxy.master_socket import parse_reloads
from discoveryd.haproxy.oneshot import render_command
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import build_view
from discoveryd.model.marathon import HealthCheck, MarathonSnapshot
from discoveryd.settings import HAProxySettings
from tests.fakes.haproxy import app, snapshot, task
from tests.fixture_files import FIXTURES

S = HAProxySettings(group="external")
MARATHON_FIXTURES = FIXTURES / "marathon"


def view_of(*apps, settings: HAProxySettings = S):
    return build_view(snapshot(*apps), settings)


@pytest.mark.parametrize("label,value,reason", [
    ("HAPROXY_0_VHOST", "a.test\n  bind :1", "bad_vhost"),
    ("HAPROXY_0_VHOST", "a.test # x", "bad_vhost"),
    ("HAPROXY_0_PATH", "/a b", "bad_path"),
    ("HAPROXY_0_PATH", "/a\nlisten x", "bad_path"),
    ("HAPROXY_0_PORT", "80x", "bad_int"),
    ("HAPROXY_0_MODE", "udp", "bad_mode"),
    ("HAPROXY_0_BALANCE", "roundrobin\n  server x 1.2.3.4:1", "bad_balance"),
    ("HAPROXY_0_AUTH", "realm:user", "bad_auth"),
    ("HAPROXY_0_AUTH", 'r"x:user:pw', "bad_auth"),
    ("HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL", "10.0.0.0/8 nonsense", "bad_network"),
    ("HAPROXY_0_BIND_OPTIONS", "accept-proxy #", "bad_bind_options"),
    ("HAPROXY_0_SSL_CERT", "/a.pem\nx", "bad_ssl_cert"),
    ("HAPROXY_0_AUTH", "realm:user:pw\n", "bad_auth"),
])
def test_bad_label_skips_that_port_only(label: str, value: str, reason: str) -> None:
    view, skipped = view_of(app("/bad", (10001,), labels={label: value}, tasks=(task("/bad", 1),)),
                            app("/good", (10002,), tasks=(task("/good", 2),)))
    assert skipped == [("/bad", 0, reason)]
    assert [b.name for b in view.backends] == ["good_10002"]
    assert "\n  bind :1" not in Renderer().render(view).replace("bind *:", "")


def test_groups_per_port_group_replaces_app_group() -> None:
    a = app("/multi", (10001, 10002), labels={"HAPROXY_1_GROUP": "internal,other"},
            tasks=(task("/multi", 1, ports=(1, 2)),))
    assert [b.name for b in view_of(a)[0].backends] == ["multi_10001"]
    internal = HAProxySettings(group="internal")
    assert [b.name for b in view_of(a, settings=internal)[0].backends] == ["multi_10002"]
    star = HAProxySettings(group="*")
    ungrouped = app("/nogroup", (10003,), group=None, tasks=(task("/nogroup", 3),))
    assert len(view_of(a, ungrouped, settings=star)[0].backends) == 3
    assert view_of(ungrouped)[0].backends == ()
    disabled = served("/off", (10004,), labels={"HAPROXY_0_ENABLED": "false"})
    assert view_of(disabled)[0].backends == ()


def test_deterministic_whatever_the_input_order() -> None:
    apps = [app(f"/a{i}", (10000 + i,), labels={"HAPROXY_0_VHOST": f"h{i % 3}.test"},
                tasks=(task(f"/a{i}", 100 + i), task(f"/a{i}", 200 + i, n=1))) for i in range(20)]
    shuffled = [a.with_tasks(tuple(reversed(a.tasks))) for a in reversed(apps)]
    r = Renderer()
    one = r.render(build_view(MarathonSnapshot({a.app_id: a for a in apps}), S)[0])
    two = r.render(build_view(MarathonSnapshot({a.app_id: a for a in shuffled}), S)[0])
    assert one == two


def test_server_ids_stable_when_tasks_come_and_go() -> None:
    one = view_of(app("/s", (10001,), tasks=(task("/s", 31001),)))[0]
    two = view_of(app("/s", (10001,), tasks=(task("/s", 31000, n=1), task("/s", 31001))))[0]
    ids1 = {s.name: s.id for s in one.backends[0].servers}
    ids2 = {s.name: s.id for s in two.backends[0].servers}
    assert ids1["127_0_0_1_31001"] == ids2["127_0_0_1_31001"]
    assert len(set(ids2.values())) == 2


def test_addresses_by_networking() -> None:
    host = app("/h", (10001,), tasks=(task("/h", 31001, host="10.0.0.1"),))
    bridge = app("/b", (10002,), networking="bridge", container_ports=(80,),
                 tasks=(task("/b", 31002, host="10.0.0.2"),))
    ipt = app("/i", (10003,), networking="container", container_ports=(8080,),
              tasks=(task("/i", 0, ports=(), ips=("fd00::1", "172.16.0.9")),))
    view, _ = view_of(host, bridge, ipt)
    addrs = {b.name: [(s.address, s.port) for s in b.servers] for b in view.backends}
    assert addrs == {"h_10001": [("10.0.0.1", 31001)], "b_10002": [("10.0.0.2", 31002)],
                     "i_10003": [("172.16.0.9", 8080)]}


def test_task_filter_states_and_health() -> None:
    hc = (HealthCheck("HTTP", "/ping"),)
    a = app("/t", (10001,), health_checks=hc, tasks=(
        task("/t", 1, alive=True), task("/t", 2, alive=False), task("/t", 3),
        task("/t", 4, state="TASK_KILLING", alive=True),
        task("/t", 5, state="TASK_UNREACHABLE", alive=True), task("/t", 6, host="", alive=True)))
    (b,) = view_of(a)[0].backends
    assert sorted(s.port for s in b.servers) == [1, 5]
    assert b.mode == "http" and b.check and b.check.path == "/ping" and b.check.fall == 4


def served(app_id: str, ports: tuple[int, ...] = (10000,), **kw):
    """An app with one running task (marathon-lb renders no frontend for an app without)."""
    alive = True if kw.get("health_checks") else None
    return app(app_id, ports, tasks=(task(app_id, 31000, ports=(31000,) * len(ports),
                                          alive=alive),), **kw)


def test_rule_order_weight_then_paths_first() -> None:
    view, _ = view_of(
        served("/root", (10001,), labels={"HAPROXY_0_VHOST": "x.test"}),
        served("/heavy", (10002,), labels={"HAPROXY_0_VHOST": "y.test",
                                           "HAPROXY_0_BACKEND_WEIGHT": "9"}),
        served("/api", (10003,), labels={"HAPROXY_0_VHOST": "x.test", "HAPROXY_0_PATH": "/api"}),
        served("/apiv2", (10004,), labels={"HAPROXY_0_VHOST": "x.test",
                                           "HAPROXY_0_PATH": "/api/v2"}),
        served("/last", (10005,), labels={"HAPROXY_0_VHOST": "x.test", "HAPROXY_0_PATH": "/z",
                                          "HAPROXY_0_BACKEND_WEIGHT": "-1"}),
    )
    # marathon-lb: weight first (a path of weight 0 counts as 1), then our path-before-host.
    assert [r.backend for r in view.host_rules] == ["heavy_10002", "apiv2_10004", "api_10003",
                                                    "root_10001", "last_10005"]


def test_bool_labels_as_marathon_lb() -> None:
    for value, sticky in (("true", True), ("T", True), ("y", True), ("yes", True),
                          ("1", False), ("on", False), ("maybe", False)):
        (b,) = view_of(served("/s", labels={"HAPROXY_0_STICKY": value}))[0].backends
        assert b.labels.sticky is sticky, value
    assert view_of(served("/off", labels={"HAPROXY_0_ENABLED": "1"}))[0].backends == ()


def test_app_without_servers_gets_no_frontend() -> None:
    view, skipped = view_of(app("/idle", (10001,), labels={"HAPROXY_0_VHOST": "i.test"}),
                            app("/down", (10002,), tasks=(task("/down", 1, state="TASK_KILLED"),)))
    assert (view.backends, view.host_rules, view.appid_rules, skipped) == ((), (), (), [])


def test_multiple_paths_and_health_check_port() -> None:
    hc = (HealthCheck("HTTP", "/ping", port_index=None, port=8999),)
    a, b = view_of(served("/a", (10001, 10002), health_checks=hc, labels={
        "HAPROXY_0_VHOST": "a.test", "HAPROXY_0_PATH": "-i /x /y"}))[0].backends
    assert a.labels.path == "-i /x /y" and a.labels.weight == 1
    # a check with a fixed port covers every port (marathon-lb), checked on that port
    assert a.check and b.check and b.mode == "http"
    assert {s.check_port for s in a.servers + b.servers} == {8999}


def test_mode_from_checks_as_marathon_lb() -> None:
    def mode(protocol: str, **labels: str):
        hc = (HealthCheck(protocol, "/h"),)
        (b,) = view_of(served("/m", health_checks=hc, labels=labels))[0].backends
        return b.mode, b.check and b.check.kind
    assert mode("HTTP") == ("http", "http")
    assert mode("MESOS_HTTP") == ("tcp", "tcp")
    assert mode("MESOS_HTTP", HAPROXY_0_VHOST="m.test") == ("http", "http")
    assert mode("HTTP", HAPROXY_0_MODE="tcp") == ("tcp", "tcp")
    assert mode("HTTPS", HAPROXY_0_VHOST="m.test") == ("http", "tcp")


def test_blue_green_merged_with_old_colour_drained() -> None:
    def colour(name: str, started: str, port: int):
        return app(f"/c-{name}", (10005,), labels={
            "HAPROXY_DEPLOYMENT_GROUP": "c", "HAPROXY_DEPLOYMENT_STARTED_AT": started,
            "HAPROXY_0_PORT": "10000"}, tasks=(task(f"/c-{name}", port),))
    view, skipped = view_of(colour("blue", "2024-01-01", 1), colour("green", "2024-06-01", 2))
    (b,) = view.backends
    assert (b.name, b.app_id, skipped) == ("c_10000", "/c", [])
    assert {(s.port, s.disabled) for s in b.servers} == {(1, True), (2, False)}


def test_port_conflicts_skip_the_later_app() -> None:
    view, skipped = view_of(served("/a", (10001,)), served("/b", (10001,)),
                            served("/c", (9090,)))  # stats_port
    assert [b.app_id for b in view.backends] == ["/a"]
    assert skipped == [("/b", 0, "port_conflict"), ("/c", 0, "port_conflict")]


async def test_bisection_finds_every_bad_app_in_few_checks() -> None:
    apps = [f"/a{i:03d}" for i in range(256)]
    bad = {"/a007", "/a200"}
    calls = 0

    async def valid(subset) -> bool:
        nonlocal calls
        calls += 1
        return not bad & set(subset)

    assert sorted(await find_bad_apps(apps, valid)) == sorted(bad)
    assert calls < 40  # one by one would be 256


async def test_bisection_handles_a_clash_between_two_valid_apps() -> None:
    async def valid(subset) -> bool:
        return not {"/x", "/y"} <= set(subset)

    assert await find_bad_apps(["/w", "/x", "/y", "/z"], valid) == ["/y"]


def test_parse_show_proc() -> None:
    text = ("#<PID>  <type>  <reloads>  <uptime>  <version>\n"
            "21438   master  2 [failed: 1]   0d00h00m03s  2.6.12\n# workers\n")
    assert parse_reloads(text) == (2, 1)
    assert parse_reloads("garbage") is None


async def test_render_command_from_file_and_marathon(tmp_path: Path, capsys) -> None:
    apps_file = MARATHON_FIXTURES / "apps-marathon15.json"
    out = tmp_path / "haproxy.cfg"
    assert await render_command(None, str(apps_file), "external", str(out), None) == 0
    assert "backend shop_web_" in out.read_text()
    assert await render_command(None, str(tmp_path / "missing.json"), None, None, None) == 2
    assert "--apps-file" in capsys.readouterr().err

    raw = json.loads(apps_file.read_text())
    marathon = web.Application()
    async def apps(request: web.Request) -> web.Response:
        return web.json_response(raw)

    marathon.router.add_get("/v2/apps", apps)
    runner = web.AppRunner(marathon)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        dead = "http://127.0.0.1:1"
        assert await render_command([dead, f"http://127.0.0.1:{port}"], None, "external",
                                    None, None) == 0
        assert capsys.readouterr().out == out.read_text()
        assert await render_command([dead], None, None, None, None) == 1
    finally:
        await runner.cleanup()


async def test_render_command_broken_template_override_is_one_line(tmp_path: Path,
                                                                   capsys) -> None:
    """A partial is compiled only when first rendered: its error is still a usage error."""
    apps_file = MARATHON_FIXTURES / "apps-marathon15.json"
    (tmp_path / "_app.j2").write_text("{% if %}\n")
    assert await render_command(None, str(apps_file), "external", None, str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("discoveryd: --templates: TemplateSyntaxError") and \
        len(err.splitlines()) == 1, err


def test_templates_dir_overrides_one_partial(tmp_path: Path) -> None:
    (tmp_path / "_stats.j2").write_text("\nlisten stats\n  bind *:1\n  # custom\n")
    text = Renderer(str(tmp_path)).render(view_of(served("/a", (10001,)))[0])
    assert "# custom" in text and "backend a_10001" in text


def test_blue_green_drains_only_as_many_as_new_healthy_keeping_the_old_ports() -> None:
    """marathon-lb: the old colour's labels/ports win; drained = min(old tasks, new healthy,
    new healthy + old instances - TARGET_INSTANCES) when NEW_INSTANCES is set."""
    blue = app("/c-blue", (10000,), labels={
        "HAPROXY_DEPLOYMENT_GROUP": "c", "HAPROXY_DEPLOYMENT_STARTED_AT": "2024-01-01"},
        tasks=tuple(task("/c-blue", p) for p in (1, 2, 3)))
    green = app("/c-green", (10001,), labels={
        "HAPROXY_DEPLOYMENT_GROUP": "c", "HAPROXY_DEPLOYMENT_STARTED_AT": "2024-06-01",
        "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "2", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3"},
        tasks=tuple(task("/c-green", p) for p in (4, 5)))
    (b,) = view_of(blue, green)[0].backends
    assert b.name == "c_10000"
    assert sorted((s.port, s.disabled) for s in b.servers) == [
        (1, True), (2, True), (3, False), (4, False), (5, False)]
