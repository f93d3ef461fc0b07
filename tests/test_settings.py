"""The config schema: defaults, every error names its key, mesos-dns config.json."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from discoveryd.settings import ConfigError, Settings, load_settings, parse_settings


def test_defaults_match_contract():
    s = Settings()
    assert s.mesos.zk is None and s.mesos.zk_detection_timeout == 30
    assert s.mesos.ip_sources == ["netinfo", "mesos", "host"]
    assert s.dns.listen == ["0.0.0.0:53"] and s.dns.domain == "mesos" and s.dns.ttl == 60
    assert s.dns.soa.mname == "ns1.mesos" and s.dns.soa.expire == 86400
    assert s.haproxy.group == "external" and s.haproxy.validate_command == "haproxy -c -f {path}"
    assert s.http.listen == "127.0.0.1:8123" and s.logging.format == "text"


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"dns": {"listne": ["127.0.0.1:53"]}}, "dns.listne: unknown key"),
        ({"dns": {"ttl": "soon"}}, "dns.ttl"),
        ({"dns": {"listen": ["127.0.0.1"]}}, "dns.listen[0]"),
        ({"dns": {"listen": ["nothost:53"]}}, "dns.listen[0]"),
        ({"mesos": {"zk": "http://x/mesos"}}, "mesos.zk"),
        ({"mesos": {"ip_sources": ["netinfo", "dhcp"]}}, "mesos.ip_sources[1]"),
        ({"marathon": {"urls": ["ftp://m"]}}, "marathon.urls"),
        ({"haproxy": {"validate_command": "haproxy -c"}}, "haproxy.validate_command"),
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"dns": {"zone_resolvers": {"weave": []}}}, "dns.zone_resolvers"),
    ],
)
def test_errors_name_the_key(doc, key):
    with pytest.raises(ConfigError) as e:
        parse_settings(doc)
    assert key in str(e.value)
    assert "\n" not in str(e.value)


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as e:
        parse_settings({"dns": {"ttl": -1}, "http": {"listen": "x"}})
    assert "dns.ttl" in str(e.value) and "http.listen" in str(e.value)


def test_mesos_dns_config_json(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({
        "zk": "zk://10.0.0.1:2181,10.0.0.2:2181/mesos", "masters": ["10.0.0.1:5050"],
        "refreshSeconds": 30, "ttl": 10, "domain": "cluster", "port": 5353,
        "resolvers": ["8.8.8.8"], "timeout": 2, "listener": "127.0.0.1", "SOAMname": "ns1.cluster",
        "SOARname": "root.ns1.cluster", "SOARefresh": 60, "SOARetry": 600, "SOAExpire": 86400,
        "SOAMinttl": 60, "IPSources": ["netinfo", "host"], "httpon": True, "httpport": 8124,
        "externalon": False, "stateTimeoutSeconds": 7, "zkDetectionTimeout": 12,
        "enforceRFC952": True, "mesosCredentials": {"principal": "p", "secret": "s"},
    }))
    s, warnings = load_settings(p)
    assert s.mesos.zk.startswith("zk://10.0.0.1") and s.mesos.masters == ["10.0.0.1:5050"]
    assert s.mesos.refresh_seconds == 30 and s.mesos.state_timeout == 7
    assert s.mesos.zk_detection_timeout == 12 and s.mesos.enforce_rfc952 is True
    assert s.mesos.ip_sources == ["netinfo", "host"]
    assert s.dns.domain == "cluster" and s.dns.listen == ["127.0.0.1:5353"] and s.dns.ttl == 10
    assert s.dns.external is False and s.dns.timeout == 2 and s.dns.resolvers == ["8.8.8.8"]
    assert s.http.listen == "0.0.0.0:8124"  # mesos-dns: httpListener, not listener
    assert s.haproxy.enabled is False
    assert any("mesosCredentials" in w for w in warnings)


def test_mesos_dns_keys_read_as_go_reads_them():
    """encoding/json matches keys case-insensitively and skips unknown ones."""
    s, warnings = parse_settings({
        "Masters": ["1.2.3.4:5050"], "RefreshSeconds": 30, "Domain": "cluster", "TTL": 7,
        "HttpPort": 8124, "DnsOn": True, "HttpOn": True, "ipsources": ["host"],
        "httplistener": "127.0.0.1", "surprise": 1})
    assert s.mesos.masters == ["1.2.3.4:5050"] and s.mesos.refresh_seconds == 30
    assert s.dns.domain == "cluster" and s.dns.ttl == 7 and s.mesos.ip_sources == ["host"]
    assert s.http.listen == "127.0.0.1:8124"
    assert warnings == ["surprise: not a mesos-dns configuration key, ignored"]
    # SOA names keep mesos-dns's defaults whatever the domain
    assert (s.dns.soa.mname, s.dns.soa.rname) == ("ns1.mesos", "root.ns1.mesos")
    s, _ = parse_settings({"masters": ["1.2.3.4:5050"], "ttl": 5, "TTL": 9})
    assert s.dns.ttl == 9  # the later spelling wins, as in Go


def test_mesos_dns_recurseon_only_concerns_the_ra_bit():
    s, warnings = parse_settings({"masters": ["1.2.3.4:5050"], "recurseon": False})
    assert s.dns.external is True  # mesos-dns still forwards
    assert len(warnings) == 1 and warnings[0].startswith("recurseon: false only clears")
    s, warnings = parse_settings({"masters": ["1.2.3.4:5050"], "externalon": False,
                                  "recurseon": True})
    assert s.dns.external is False and warnings == []


def test_mesos_dns_values_it_normalises():
    s, _ = parse_settings({"masters": ["1.2.3.4:5050"], "SOARname": "admin@example.com.",
                           "timeout": 0, "httpListener": "::1"})
    assert s.dns.soa.rname == "admin.example.com" and s.dns.timeout == 5
    assert s.http.listen == "[::1]:8123"


def test_mesos_dns_email_becomes_rname():
    s, _ = parse_settings({"masters": ["1.2.3.4:5050"], "email": "admin@example.com"})
    assert s.dns.soa.rname == "admin.example.com"


def test_redacted_hides_secrets():
    s, _ = parse_settings({"mesos": {"zk": "zk://user:pw@10.0.0.1:2181/mesos"},
                           "marathon": {"urls": ["http://a:b@m:8080"], "auth": "u:secret"}})
    text = json.dumps(s.redacted())
    assert "pw" not in text and "secret" not in text and ":b@" not in text


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "discoveryd", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_check_config_bad_file_exit_2_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("dns:\n  ttl: many\n")
    r = _cli("check-config", str(p))
    assert r.returncode == 2
    assert "dns.ttl" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_check_config_yaml_syntax_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("dns: [\n")
    r = _cli("check-config", str(p))
    assert r.returncode == 2 and "invalid YAML" in r.stderr and "Traceback" not in r.stderr


def test_check_config_prints_effective_yaml(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("dns:\n  domain: Example.Mesos.\n")
    r = _cli("check-config", str(p))
    assert r.returncode == 0, r.stderr
    assert "domain: example.mesos" in r.stdout and "validate_command" in r.stdout


def test_usage_error_exit_2():
    r = _cli("records")
    assert r.returncode == 2 and "--state" in r.stderr and len(r.stderr.splitlines()) == 1


def test_version():
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("discoveryd ")


def test_run_missing_config_file(tmp_path):
    r = _cli("run", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "cannot read" in r.stderr


@pytest.mark.parametrize("name", ["discoveryd.yaml", "mesos-dns.json"])
def test_example_configs_are_valid(name):
    from pathlib import Path

    settings, warnings = load_settings(Path(__file__).parent.parent / "config" / name)
    assert settings.mesos.zk and settings.mesos.masters
    assert warnings == []


def test_run_reads_discoveryd_config_env(tmp_path):
    import os

    p = tmp_path / "bad.yaml"
    p.write_text("mesos:\n  masters: ['nohost:port']\n")
    r = _cli("run", env={**os.environ, "DISCOVERYD_CONFIG": str(p)})
    assert r.returncode == 2 and "mesos.masters[0]" in r.stderr and "Traceback" not in r.stderr


def test_relative_stats_socket_rejected():
    with pytest.raises(ConfigError) as e:
        parse_settings({"haproxy": {"stats_socket": "run/admin.sock"}})
    assert "haproxy.stats_socket" in str(e.value)


def test_example_config_shows_every_key():
    """config/discoveryd.yaml is the reference an operator copies: every key, with its
    default unless marked as an example."""
    doc = yaml.safe_load((Path(__file__).parent.parent / "config" / "discoveryd.yaml").read_text())

    def leaves(tree, prefix=""):
        out = set()
        for key, value in tree.items():
            nested = isinstance(value, dict) and key not in ("soa", "zone_resolvers")
            out |= leaves(value, f"{prefix}{key}.") if nested else {prefix + key}
        return out

    assert leaves(Settings().model_dump(mode="json")) <= leaves(doc)


def test_mesos_dns_keys_with_discoveryd_sections():
    """CONTRACT 2.3: the HAProxy half is off for a mesos-dns file "unless added with
    discoveryd keys": sections beside the mesos-dns keys are merged, and win."""
    s, warnings = parse_settings({
        "masters": ["1.2.3.4:5050"], "ttl": 7, "domain": "cluster",
        "dns": {"ttl": 9, "tcp_idle_timeout": 3},
        "marathon": {"urls": ["http://127.0.0.1:8080"]},
        "haproxy": {"config_path": "/tmp/h.cfg"}})
    assert warnings == []
    assert s.mesos.masters == ["1.2.3.4:5050"] and s.dns.domain == "cluster"
    assert s.dns.ttl == 9 and s.dns.tcp_idle_timeout == 3  # the section wins, rest kept
    assert s.haproxy.enabled is True and s.haproxy.config_path == "/tmp/h.cfg"
    s, _ = parse_settings({"masters": ["1.2.3.4:5050"],
                           "marathon": {"urls": ["http://127.0.0.1:8080"]}})
    assert s.haproxy.enabled is False  # Marathon alone (faster DNS) does not start HAProxy
    # errors name what the operator wrote: the section key, or the mesos-dns key
    # a stray mesos-dns key in a discoveryd YAML stays an error, not a change of format
    with pytest.raises(ConfigError, match=r"^TTL: unknown key"):
        parse_settings({"marathon": {"urls": ["http://127.0.0.1:8080"]}, "TTL": 60})
    with pytest.raises(ConfigError, match=r"^dns\.ttl: "):
        parse_settings({"masters": ["1.2.3.4:5050"], "ttl": 5, "dns": {"ttl": -1}})
    with pytest.raises(ConfigError, match=r"^ttl: "):
        parse_settings({"masters": ["1.2.3.4:5050"], "ttl": -1, "dns": {"timeout": 3}})
