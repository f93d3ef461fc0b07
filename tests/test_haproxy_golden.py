"""Golden haproxy.cfg files for representative apps; `haproxy -c` must accept each.

Regenerate after an intended change: DISCOVERYD_REGEN_GOLDEN=1 python -m pytest tests/test_haproxy_golden.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import build_view
from discoveryd.model.marathon import HealthCheck, MarathonSnapshot
from discoveryd.settings import HAProxySettings
from discoveryd.sources.marathon_apps import parse_apps
from tests.fakes.haproxy import app, snapshot, task
from tests.fixture_files import load_json

GOLDEN = Path(__file__).parent / "golden"
CERT = "/etc/ssl/discoveryd-test.pem"  # replaced by a generated certificate for haproxy -c
REGEN = os.environ.get("DISCOVERYD_REGEN_GOLDEN") == "1"
HTTP_CHECK = HealthCheck("HTTP", "/health", 0, interval_seconds=5, timeout_seconds=2,
                         max_consecutive_failures=2)


def _fixture(name: str) -> MarathonSnapshot:
    return parse_apps(load_json(f"marathon/{name}"))


def _networking() -> MarathonSnapshot:
    return snapshot(
        app("/net/host", (10001,), tasks=(task("/net/host", 31001, host="10.0.0.1"),)),
        app("/net/bridge", (10002,), networking="bridge", container_ports=(8080,),
            tasks=(task("/net/bridge", 31002, host="agent-1.example.com"),)),
        app("/net/ipt", (10003,), networking="container", container_ports=(9000,),
            tasks=(task("/net/ipt", 0, ports=(), ips=("fd00::5", "172.16.0.5")),)),
    )


def _http_features() -> MarathonSnapshot:
    return snapshot(
        app("/web", (10010, 10011), labels={
            "HAPROXY_0_VHOST": "web.example.com,www.example.com", "HAPROXY_0_STICKY": "true",
            "HAPROXY_0_REDIRECT_TO_HTTPS": "true", "HAPROXY_0_USE_HSTS": "true",
            "HAPROXY_0_AUTH": "Web Realm:admin:$5$salt$hashedvalue",
            "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 192.168.1.7",
            "HAPROXY_0_BALANCE": "leastconn", "HAPROXY_1_MODE": "tcp",
            "HAPROXY_1_BIND_OPTIONS": "accept-proxy", "HAPROXY_1_PORT": "10099",
        }, health_checks=(HTTP_CHECK,), tasks=(
            task("/web", 31010, ports=(31010, 31011), alive=True),
            task("/web", 31020, ports=(31020, 31021), n=1, alive=False))),
        app("/api", (10012,), labels={
            "HAPROXY_0_VHOST": "web.example.com", "HAPROXY_0_PATH": "/api",
            "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/api",
            "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": "/api",
            "HAPROXY_0_BACKEND_WEIGHT": "5", "HAPROXY_0_SSL_CERT": CERT,
            "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": "1",
        }, tasks=(task("/api", 31030, ports=(31030, 31031), alive=True),), health_checks=(
            HealthCheck("TCP", port_index=1, interval_seconds=3, timeout_seconds=1),)),
        app("/landing", (10013,), labels={"HAPROXY_0_VHOST": "*.apps.example.com",
                                          "HAPROXY_0_HTTP_BACKEND_REDIR": "/index.html"},
            tasks=(task("/landing", 31040),)),
        app("/redis", (10014,), tasks=(task("/redis", 31050), task("/redis", 31051, n=1))),
    )


def _blue_green() -> MarathonSnapshot:
    def colour(name: str, started: str, ports: tuple[int, ...]) -> object:
        return app(f"/shop-{name}", (10021 if name == "green" else 10020,), labels={
            "HAPROXY_DEPLOYMENT_GROUP": "shop", "HAPROXY_DEPLOYMENT_ALT_PORT": "10021",
            "HAPROXY_DEPLOYMENT_STARTED_AT": started, "HAPROXY_0_PORT": "10020",
            "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "2", "HAPROXY_0_VHOST": "shop.example.com",
        }, tasks=tuple(task(f"/shop-{name}", p, n=i) for i, p in enumerate(ports)))

    return snapshot(colour("blue", "2024-01-01T00:00:00Z", (31060, 31061)),  # type: ignore[arg-type]
                    colour("green", "2024-02-01T00:00:00Z", (31070,)))  # type: ignore[arg-type]


CASES = {
    "marathon14": (_fixture, "apps-marathon14.json", {"group": "*"}),
    "marathon15": (_fixture, "apps-marathon15.json", {"group": "external"}),
    "networking": (lambda _: _networking(), None, {}),
    "http_features": (lambda _: _http_features(), None, {"ssl_certs": [CERT]}),
    "blue_green": (lambda _: _blue_green(), None, {"server_state_file": "/var/lib/haproxy/state"}),
}


def _render(case: str) -> str:
    build, arg, overrides = CASES[case]
    settings = HAProxySettings(**overrides)
    view, _ = build_view(build(arg), settings)  # type: ignore[operator]
    return Renderer().render(view)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=test", "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem")],
                   check=True, capture_output=True)
    (d / "both.pem").write_text((d / "c.pem").read_text() + (d / "k.pem").read_text())
    return d / "both.pem"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    text = _render(case)
    path = GOLDEN / f"{case}.cfg"
    if REGEN:
        path.write_text(text)
    assert text == path.read_text(), f"{case} differs; set DISCOVERYD_REGEN_GOLDEN=1 if intended"
    assert _render(case) == text  # deterministic


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_haproxy_accepts_golden(case: str, cert: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text((GOLDEN / f"{case}.cfg").read_text().replace(CERT, str(cert)))
    r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[ALERT]" not in r.stdout + r.stderr
