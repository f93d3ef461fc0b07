"""`discoveryd run` as an operator runs it: a real process, signals, JSON logs."""

import asyncio
import json
import os
import signal
import sys
import time

import dns.asyncquery
import dns.message

from discoveryd.sim.mesos_master import SimMesosMaster
from tests.daemon_harness import eventually
from tests.fakes.ports import free_port


def write_config(path, master, dns_port, http_port, ttl=60, fmt="json"):
    path.write_text(
        f"mesos:\n  masters: ['{master.address}']\n  refresh_seconds: 1\n"
        f"dns:\n  listen: ['127.0.0.1:{dns_port}']\n  ttl: {ttl}\n  external: false\n"
        f"http:\n  listen: '127.0.0.1:{http_port}'\n"
        f"marathon:\n  urls: ['http://user:hunter2@127.0.0.1:1']\n"
        f"haproxy:\n  enabled: false\n"
        f"logging:\n  format: {fmt}\n  level: info\n"
    )


async def ttl_of(port, name="leader.mesos"):
    q = dns.message.make_query(name, "A")
    try:
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=1)
    except (TimeoutError, dns.exception.Timeout, OSError):
        return None
    return r.answer[0].ttl if r.answer else None


async def test_run_sighup_and_sigterm(tmp_path):
    master = SimMesosMaster()
    await master.start()
    dns_port, http_port = free_port(), free_port()
    cfg = tmp_path / "discoveryd.yaml"
    write_config(cfg, master, dns_port, http_port, ttl=60)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "discoveryd", "run", "--config", str(cfg),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    err_lines: list[str] = []
    reader = asyncio.create_task(_read_lines(proc.stderr, err_lines))
    try:
        assert await eventually(lambda: ttl_of(dns_port), timeout=30, what="dns") == 60
        cfg.write_text("dns: {ttl: [not, a, number]}\n")  # a broken file: the old config stays
        proc.send_signal(signal.SIGHUP)
        await eventually(lambda: any("config_reload_rejected" in line for line in err_lines),
                         timeout=30, what="the broken file rejected")
        assert await ttl_of(dns_port) == 60 and proc.returncode is None
        write_config(cfg, master, dns_port, http_port, ttl=7)
        proc.send_signal(signal.SIGHUP)
        assert await eventually(lambda: _is(ttl_of(dns_port), 7), timeout=30, what="new ttl")
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0 and time.monotonic() - started < 5
        await asyncio.wait_for(reader, 10)  # EOF: every line the process wrote
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        await master.stop()
    err = "\n".join(err_lines)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    events = {entry["event"] for entry in lines}
    assert "config_reload_rejected" in events and "config_reloaded" in events
    assert all({"ts", "level", "logger", "event", "msg"} <= set(e) for e in lines)
    assert "hunter2" not in err


async def _read_lines(stream, into):
    """Append each line of `stream` to `into` as it is written, until EOF."""
    async for line in stream:
        into.append(line.decode().rstrip("\n"))


async def _is(awaitable, value):
    return (await awaitable) == value
