"""`discoveryd demo`: the newcomer's first command serves DNS, HTTP and a valid haproxy.cfg."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message

from discoveryd.demo import run_demo
from tests.daemon_harness import eventually
from tests.fakes.ports import free_port


async def _a(port, name):
    q = dns.message.make_query(name, "A")
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
    return sorted(rr.address for rrset in r.answer for rr in rrset)


async def test_demo_serves_and_follows_changes(tmp_path, capsys, monkeypatch):
    dns_port, http_port = free_port(), free_port()
    stop = asyncio.Event()
    monkeypatch.chdir(tmp_path)  # the default --workdir is relative: ./demo-run
    demo = asyncio.create_task(run_demo(dns_port, http_port, Path("demo-run"), change_every=0.5,
                                        stop=stop))
    tmp_path = tmp_path / "demo-run"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready():
                try:
                    async with http.get(f"http://127.0.0.1:{http_port}/ready") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=30, what="demo ready")
            web = await _a(dns_port, "web.marathon.mesos")
            assert len(web) == 2 and all(ip.startswith("127.0.1.") for ip in web)
            assert await _a(dns_port, "api-shop.marathon.mesos")
            # the simulated Marathon scales /web to 3 within a few changes
            await eventually(lambda: _count(dns_port, "web.marathon.mesos", 3), timeout=30,
                             what="/web scaled")
            async with http.get(f"http://127.0.0.1:{http_port}/v1/haproxy/config") as r:
                cfg = await r.text()
    finally:
        stop.set()
        assert await asyncio.wait_for(demo, 15) == 0
    assert "frontend marathon_http_in" in cfg and "web.example.com" in cfg
    assert "dash.internal" not in cfg  # another HAPROXY_GROUP
    assert (tmp_path / "haproxy.cfg").read_text() == cfg
    if shutil.which("haproxy"):
        check = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    assert f"dig @127.0.0.1 -p {dns_port}" in capsys.readouterr().out


async def _count(port, name, n):
    return len(await _a(port, name)) == n
