"""Bad command-line arguments: one line naming the argument, exit 2, never a traceback
(CONTRACT 1); and $DISCOVERYD_CONFIG wherever --config is absent (CONTRACT 2.2)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fakes.ports import free_port
from tests.fixture_files import FIXTURES

APPS = FIXTURES / "marathon15-apps.json"
STATE = FIXTURES / "mesos-state-fake.json"


def discoveryd(*args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "discoveryd", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def one_line(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    return r.stderr.strip()


@pytest.mark.parametrize("value", ["99999", "0", "-1", "dns"])
def test_demo_port_out_of_range(value: str) -> None:
    message = one_line(discoveryd("demo", "--dns-port", value))
    assert "--dns-port" in message and "port number" in message


def test_demo_workdir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = one_line(discoveryd("demo", "--workdir", str(blocker / "sub")))
    assert message.startswith("discoveryd: --workdir: cannot create")


def test_demo_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        r = discoveryd("demo", "--dns-port", str(port), "--http-port", str(free_port()),
                       "--workdir", str(tmp_path / "demo"), timeout=90)
    message = one_line(r, code=1)
    assert message.startswith("discoveryd: demo: ") and "address" in message.lower()


def test_render_output_that_cannot_be_written(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "haproxy.cfg"
    message = one_line(discoveryd("render", "--apps-file", str(APPS), "--output", str(out)))
    assert message.startswith(f"discoveryd: --output: cannot write {out}")


def test_render_templates_dir_that_does_not_exist(tmp_path: Path) -> None:
    message = one_line(discoveryd("render", "--apps-file", str(APPS),
                                  "--templates", str(tmp_path / "nope")))
    assert message == f"discoveryd: --templates: {tmp_path / 'nope'} is not a directory"


def test_config_templates_dir_that_does_not_exist(tmp_path: Path) -> None:
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"haproxy": {"templates_dir": str(tmp_path / "nope")}}))
    message = one_line(discoveryd("check-config", str(p)))
    assert message.startswith("discoveryd: config error: haproxy.templates_dir: ")
    assert "is not a directory" in message


@pytest.mark.parametrize("zk", ["zk://::1/mesos", "zk://fe80::1:2181/mesos"])
def test_bare_ipv6_zookeeper_host_is_a_config_error(zk: str, tmp_path: Path) -> None:
    """kazoo refuses them ("bad hostname"): caught by check-config, not at run time."""
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"mesos": {"zk": zk}}))
    message = one_line(discoveryd("check-config", str(p)))
    assert message.startswith("discoveryd: config error: mesos.zk: ") and "brackets" in message
    p.write_text(yaml.safe_dump({"mesos": {"zk": "zk://[::1]:2181,[fe80::1]/mesos"}}))
    assert discoveryd("check-config", str(p)).returncode == 0


def test_records_reads_discoveryd_config_when_config_is_absent(tmp_path: Path) -> None:
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"dns": {"domain": "example"}}))
    by_env = discoveryd("records", "--state", str(STATE), env={"DISCOVERYD_CONFIG": str(p)})
    by_flag = discoveryd("records", "--state", str(STATE), "--config", str(p))
    assert by_env.returncode == 0 and by_env.stdout == by_flag.stdout
    assert "\nleader.example. " in by_env.stdout and "leader.mesos." not in by_env.stdout
