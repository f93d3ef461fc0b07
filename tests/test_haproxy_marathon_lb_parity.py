"""Behaviours where marathon-lb users would notice a difference, checked through a real
HAProxy: auth never asked over plain HTTP before a redirect to https, Location rewrites
only for the app's own hosts, sticky cookies that do not reveal backends, rule order ties
broken as marathon-lb does, and label values marathon-lb passes that HAProxy accepts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from discoveryd.haproxy.files import write_file
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import build_view
from discoveryd.settings import HAProxySettings
from tests.fakes.haproxy import HAPROXY, app, snapshot, task
from tests.fakes.ports import free_port
from tests.test_faults_haproxy import haproxy_accepts
from tests.test_haproxy_integration import Rig, echoes, rig  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")
S = HAProxySettings(group="external")
CRYPTED = "$5$salt$hashedvalue"


async def _location(r: Rig, path: str, host: str) -> tuple[int, str | None]:  # noqa: F811
    async with r.session.get(f"http://127.0.0.1:{r.haproxy.http_port}{path}",
                             headers={"Host": host}, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location")


@pytest.mark.integration
async def test_redirect_to_https_asks_no_password_over_http(rig: Rig, echoes) -> None:  # noqa: F811
    web = await echoes("web")
    rig.publish(snapshot(app("/web", (free_port(),), labels={
        "HAPROXY_0_VHOST": "s.example.com", "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
        "HAPROXY_0_AUTH": f"Realm:admin:{CRYPTED}"}, tasks=(task("/web", web.port),))))
    await rig.wait_served({"status 301"}, rig.haproxy.http_port, Host="s.example.com")
    status, location = await _location(rig, "/x", "s.example.com")
    assert status == 301 and location == "https://s.example.com/x"  # no 401 first


@pytest.mark.integration
async def test_revproxy_rewrites_only_the_apps_own_locations(rig: Rig, echoes) -> None:  # noqa: F811
    api = await echoes("api")
    rig.publish(snapshot(app("/api", (free_port(),), labels={
        "HAPROXY_0_VHOST": "api.example.com,*.apps.example.com",
        "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": "/api"}, tasks=(task("/api", api.port),))))
    await rig.wait_served({"api"}, rig.haproxy.http_port, Host="api.example.com")
    cases = {
        "/next": "/api/next",  # relative: rewritten
        "http://api.example.com/next": "http://api.example.com/api/next",
        "https://api.example.com:8443/n": "https://api.example.com:8443/api/n",
        "http://x.apps.example.com/n": "http://x.apps.example.com/api/n",  # the wildcard host
        "https://login.other.org/auth": "https://login.other.org/auth",  # another site: kept
        "https://api.example.com.evil.org/a": "https://api.example.com.evil.org/a",
    }
    for given, expected in cases.items():
        assert await _location(rig, f"/redirect?to={given}", "api.example.com") == (
            302, expected), given


def test_sticky_cookie_is_a_digest_of_the_server_name() -> None:
    view, _ = build_view(snapshot(app("/web", (10001,), labels={
        "HAPROXY_0_VHOST": "w.example.com", "HAPROXY_0_STICKY": "true"},
        tasks=(task("/web", 31001),))), S)
    text = Renderer().render(view)
    [server] = view.backends[0].servers
    digest = hashlib.sha1(server.name.encode()).hexdigest()[:10]
    assert f" cookie {digest}" in text and f"cookie {server.name}" not in text


def test_equal_weight_vhost_rules_keep_marathon_lb_order() -> None:
    """Ties: app id, then service port number (not its string), then VHOST label order;
    the longest single prefix of a PATH label orders path rules."""
    view, _ = build_view(snapshot(
        app("/app2", (10002,), labels={"HAPROXY_0_VHOST": "shared.com"},
            tasks=(task("/app2", 31002),)),
        app("/app/x", (10001,), labels={"HAPROXY_0_VHOST": "shared.com"},
            tasks=(task("/app/x", 31001),)),
        app("/svc", (9000, 10000), labels={"HAPROXY_0_VHOST": "b.com,a.com",
                                           "HAPROXY_1_VHOST": "b.com"},
            tasks=(task("/svc", 31010, ports=(31010, 31011)),)),
        app("/p", (10003, 10004), labels={"HAPROXY_0_VHOST": "p.com", "HAPROXY_0_PATH": "/api /a",
                                          "HAPROXY_1_VHOST": "p.com", "HAPROXY_1_PATH": "/api/v2"},
            tasks=(task("/p", 31020, ports=(31020, 31021)),)),
    ), S)
    order = [(r.host, r.path, r.backend) for r in view.host_rules]
    shared = [b for h, _, b in order if h == "shared.com"]
    assert shared == ["app_x_10001", "app2_10002"]
    assert [(h, b) for h, _, b in order if h in ("a.com", "b.com")] == [
        ("b.com", "svc_9000"), ("a.com", "svc_9000"), ("b.com", "svc_10000")]
    assert [p for h, p, _ in order if h == "p.com"] == ["/api/v2", "/api /a"]
    # service ports out of index order: the lower service port wins the tie, as the app-id
    # frontend picks it too
    view, _ = build_view(snapshot(app("/svc", (10010, 10005), labels={
        "HAPROXY_0_VHOST": "shared.com", "HAPROXY_1_VHOST": "shared.com"},
        tasks=(task("/svc", 31010, ports=(31010, 31011)),))), S)
    assert [r.backend for r in view.host_rules] == ["svc_10005", "svc_10010"]
    assert [r.backend for r in view.appid_rules] == ["svc_10005"]


@pytest.mark.parametrize("label,value", [
    ("HAPROXY_0_BALANCE", "random(2)"), ("HAPROXY_0_BALANCE", "uri whole"),
    ("HAPROXY_0_BALANCE", "url_param sid check_post"),
    ("HAPROXY_0_BALANCE", "hdr(host) use_domain_only"),
    ("HAPROXY_0_BIND_OPTIONS", "ciphers HIGH:!aNULL:!MD5"),
    ("HAPROXY_0_VHOST", "my_app.example.com"),
])
async def test_values_marathon_lb_passes_render_and_validate(label: str, value: str,
                                                             tmp_path: Path) -> None:
    view, skipped = build_view(snapshot(app("/a", (10001,), labels={
        "HAPROXY_0_MODE": "http", label: value}, tasks=(task("/a", 31001),))), S)
    assert skipped == [] and len(view.backends) == 1
    text = Renderer().render(view)
    assert re.search(re.escape(value), text)
    path = tmp_path / "haproxy.cfg"
    write_file(str(path), text.replace("/var/run/haproxy/admin.sock",
                                       str(tmp_path / "admin.sock")))
    assert await haproxy_accepts(path)
