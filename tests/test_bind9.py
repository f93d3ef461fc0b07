"""bind9 in front of discoveryd: a real `named` with a forward zone for the domain, as an
operator would put discoveryd behind an existing resolver."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.daemon_harness import eventually
from tests.fakes.ports import free_port

pytestmark = pytest.mark.integration

NAMED = shutil.which("named") or ("/usr/sbin/named" if os.path.exists("/usr/sbin/named") else None)


def named_conf(workdir: Path, port: int, discoveryd_port: int) -> str:
    return f"""
options {{
  directory "{workdir}";
  pid-file "{workdir}/named.pid";
  session-keyfile "{workdir}/session.key";
  managed-keys-directory "{workdir}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion yes;
  allow-query {{ 127.0.0.1; }};
  allow-recursion {{ 127.0.0.1; }};
  dnssec-validation no;
  notify no;
}};
controls {{ }};
logging {{ category default {{ default_stderr; }}; }};
zone "mesos" {{
  type forward;
  forward only;
  forwarders {{ 127.0.0.1 port {discoveryd_port}; }};
}};
"""


@pytest.fixture
async def named(tmp_path, ready_daemon):
    if NAMED is None:
        if os.environ.get("CI") == "true":
            pytest.fail("named (bind9) is required in CI")
        pytest.skip("named (bind9) is not installed")
    port = free_port()
    conf = tmp_path / "named.conf"
    conf.write_text(named_conf(tmp_path, port, ready_daemon.dns_port))
    check = subprocess.run(["named-checkconf", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # -g: foreground, logs to stderr; -n 1: one worker thread; -4: IPv4 only.
    cmd = [NAMED, "-g", "-4", "-n", "1", "-c", str(conf)]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]  # stay root: the tmp dir is root's (named drops to -u otherwise)
    log = (tmp_path / "named.log").open("w")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        await eventually(lambda: _answers(port, "version.bind", "TXT", "CH"), timeout=60,
                         interval=0.2, what=f"named on port {port} ({tmp_path}/named.log)")
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        log.close()


async def _answers(port: int, name: str, rdtype: str = "A", rdclass: str = "IN"):
    q = dns.message.make_query(name, rdtype, rdclass)
    try:
        return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
    except (dns.exception.Timeout, OSError):
        return None


async def test_named_forwards_the_domain_to_discoveryd(named):
    r = await eventually(lambda: _answers(named, "liquor-store.marathon.mesos"), timeout=30,
                         what="an answer through named")
    assert r.rcode() == dns.rcode.NOERROR
    addresses = {rr.address for rrset in r.answer for rr in rrset
                 if rrset.rdtype == dns.rdatatype.A}
    assert addresses == {"1.2.3.11", "1.2.3.12"}
    assert not r.flags & dns.flags.AA  # named answers from its cache, not authoritatively
    srv = await _answers(named, "_liquor-store._tcp.marathon.mesos", "SRV")
    assert srv is not None and srv.answer and srv.answer[0].rdtype == dns.rdatatype.SRV
    missing = await _answers(named, "no-such-task.marathon.mesos")
    assert missing is not None and missing.rcode() == dns.rcode.NXDOMAIN


async def test_discoveryd_refuses_names_outside_the_domain(ready_daemon):
    # settings_for sets dns.external: false, as behind a forwarding named.
    r = await ready_daemon.query("example.com")
    assert r.rcode() == dns.rcode.REFUSED
    inside = await ready_daemon.query("liquor-store.marathon.mesos")
    assert inside.rcode() == dns.rcode.NOERROR
