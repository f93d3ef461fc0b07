"""The glibc stub resolver (getent, getaddrinfo) resolves task names through discoveryd.

glibc only speaks to port 53 and asks A and AAAA together, so discoveryd must answer NODATA
for AAAA correctly. The daemon, the simulated master and getent run inside a private network
and mount namespace (`unshare --net --mount`): loopback port 53 is free there, and
/etc/resolv.conf and /etc/nsswitch.conf are bind-mounted test copies that nothing outside
the namespace sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

DRIVER = textwrap.dedent("""
    import asyncio, json, subprocess, sys, time

    from discoveryd.daemon import Daemon
    from discoveryd.settings import Settings
    from discoveryd.sim.mesos_master import SimMesosMaster

    def getent(*args):
        p = subprocess.run(["getent", *args], capture_output=True, text=True, timeout=60)
        return {"code": p.returncode, "out": p.stdout}

    def getaddrinfo(name):
        code = ("import socket, sys; print(sorted({a[4][0] for a in "
                "socket.getaddrinfo(sys.argv[1], 80, type=socket.SOCK_STREAM)}))")
        p = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                           timeout=60)
        return {"code": p.returncode, "out": p.stdout, "err": p.stderr[-500:]}

    async def main():
        master = SimMesosMaster()
        await master.start()
        daemon = Daemon(Settings.model_validate({
            "mesos": {"masters": [master.address], "refresh_seconds": 5},
            "dns": {"listen": ["127.0.0.1:53"], "external": False},
            "http": {"listen": None},
        }))
        await daemon.start()
        deadline = time.monotonic() + 60
        while daemon.readiness() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        result = {"ready": not daemon.readiness()}
        # Blocking lookups run in a thread so the daemon on this loop keeps answering.
        for key, fn, args in [
            ("ahosts", getent, ("ahosts", "liquor-store.marathon.mesos")),
            ("ahostsv4", getent, ("ahostsv4", "leader.mesos")),
            ("missing", getent, ("ahosts", "no-such-task.marathon.mesos")),
            ("getaddrinfo", getaddrinfo, ("liquor-store.marathon.mesos",)),
        ]:
            result[key] = await asyncio.to_thread(fn, *args)
        await daemon.stop()
        await master.stop()
        print(json.dumps(result))

    asyncio.run(main())
""")


def namespace_prefix() -> list[str]:
    """unshare as root, or rootless through a user namespace; skip when neither works."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None or shutil.which("getent") is None:
        pytest.skip("needs unshare (util-linux), ip (iproute2) and getent")
    for prefix in ([unshare, "--net", "--mount"], [unshare, "--user", "--map-root-user",
                                                   "--net", "--mount"]):
        probe = subprocess.run([*prefix, "sh", "-c", "ip link set lo up"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip("cannot create a network+mount namespace here (no CAP_SYS_ADMIN and no user "
                "namespaces): glibc needs a private port 53")


@pytest.mark.timeout(240)
def test_getent_and_getaddrinfo_resolve_through_discoveryd(tmp_path):
    prefix = namespace_prefix()
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:3\n")
    (tmp_path / "nsswitch.conf").write_text("hosts: files dns\n")
    (tmp_path / "driver.py").write_text(DRIVER)
    script = (
        "set -e; ip link set lo up; "
        # Documentation addresses (reach nothing): with only loopback addresses, glibc's
        # AI_ADDRCONFIG would skip the lookup (v4) or never ask AAAA (v6), unlike a real host.
        "ip addr add 192.0.2.1/32 dev lo; ip addr add 2001:db8::1/128 dev lo; "
        f"mount --bind {tmp_path}/resolv.conf /etc/resolv.conf; "
        f"mount --bind {tmp_path}/nsswitch.conf /etc/nsswitch.conf; "
        # a host nscd would answer from outside the namespace: hide its socket
        "if [ -d /run/nscd ]; then mount -t tmpfs none /run/nscd; fi; "
        f"exec {sys.executable} {tmp_path}/driver.py"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True,
                          env=env, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ready"], proc.stderr[-3000:]

    ahosts = result["ahosts"]
    assert ahosts["code"] == 0, (ahosts, proc.stderr[-2000:])
    addresses = {line.split()[0] for line in ahosts["out"].splitlines()}
    assert addresses == {"1.2.3.11", "1.2.3.12"}  # AAAA NODATA did not spoil the A answer
    assert "liquor-store.marathon.mesos" in ahosts["out"]  # the canonical name line

    assert result["ahostsv4"]["code"] == 0
    assert result["ahostsv4"]["out"].split()[0] == "127.0.0.1"
    assert result["missing"]["code"] == 2  # getent: key not found (NXDOMAIN)

    gai = result["getaddrinfo"]
    assert gai["code"] == 0, gai
    assert gai["out"].strip() == "['1.2.3.11', '1.2.3.12']"
