"""`discoveryd run --config PATH` as a real child process, the way operators run it.

Its JSON log lines are read as they come, so a test can wait for an event instead of
sleeping; `get` has the shape of `daemon_harness.Running.get` (and so works with
`tests.scrape.sample`). What only a real process shows is read from /proc: a crash (it
exits), its memory (VmRSS), its CPU time and the sockets it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import yaml

from discoveryd.sim.mesos_master import SimMesosMaster
from tests.daemon_harness import eventually
from tests.fakes.ports import free_port


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU time process `pid` has used (utime + stime), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DaemonProcess:
    def __init__(self, config: Path, doc: dict[str, Any]) -> None:
        self.config = config
        self.doc = doc  # where to reach it: the addresses of the first config
        self.logs: list[dict[str, Any]] = []
        self.lines: list[str] = []  # raw stderr, for "no traceback" checks
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.write(doc)

    def write(self, doc: dict[str, Any] | str) -> None:
        """Replace the config file (a dict is dumped as YAML, a str written as is)."""
        self.config.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))

    @property
    def http(self) -> str:
        return "http://" + self.doc["http"]["listen"]

    @property
    def dns_port(self) -> int:
        return int(self.doc["dns"]["listen"][0].rsplit(":", 1)[1])

    async def start(self) -> DaemonProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "discoveryd", "run", "--config", str(self.config),
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._reader = asyncio.create_task(self._read_logs())
        return self

    async def _read_logs(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            try:
                self.logs.append(json.loads(line))
            except json.JSONDecodeError:
                self.logs.append({"event": "unstructured", "level": "?", "msg": line})

    @classmethod
    async def for_master(cls, workdir: Path, master: SimMesosMaster,
                         ready_name: str = "leader.mesos") -> DaemonProcess:
        """The DNS half alone following `master`, on free ports, once `ready_name` resolves."""
        doc = {"mesos": {"masters": [master.address], "refresh_seconds": 1},
               "dns": {"listen": [f"127.0.0.1:{free_port()}"], "external": False},
               "http": {"listen": f"127.0.0.1:{free_port()}"},
               "haproxy": {"enabled": False}, "logging": {"format": "json", "level": "info"}}
        daemon = await cls(workdir / "discoveryd.yaml", doc).start()
        try:
            await eventually(lambda: daemon.resolves(ready_name), timeout=60, what="dns up")
        except BaseException:
            await daemon.kill()
            raise
        return daemon

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("level") in ("error", "ERROR", "critical")]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def get(self, path: str) -> tuple[int, Any]:
        """(status, JSON or text); (-1, error) while nothing listens."""
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, \
                    s.get(self.http + path) as resp:
                ctype = resp.headers.get("Content-Type", "")
                return resp.status, await (resp.json() if "json" in ctype else resp.text())
        except aiohttp.ClientError as e:
            return -1, repr(e)

    async def query(self, name: str, rdtype: str = "A") -> dns.message.Message | None:
        """A UDP answer, or None on timeout."""
        q = dns.message.make_query(name, rdtype)
        try:
            return await dns.asyncquery.udp(q, "127.0.0.1", port=self.dns_port, timeout=2)
        except (dns.exception.Timeout, OSError):
            return None

    async def resolves(self, name: str) -> bool:
        r = await self.query(name)
        return r is not None and bool(r.answer)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def sockets(self) -> int:
        """Sockets the process holds open (listening ones and connections)."""
        count = 0
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:  # closed while we looked
                pass
        return count

    async def signal_delivered(self, sig: int) -> None:
        """Send `sig` and wait until the kernel has handed it over: a second one sent
        while the first is still pending would merge with it."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        status = Path(f"/proc/{self.proc.pid}/status")

        def pending() -> bool:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            mask = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
            return bool(mask & (1 << (sig - 1)))

        deadline = time.monotonic() + 10
        while pending():
            assert time.monotonic() < deadline, f"signal {sig} never delivered"
            await asyncio.sleep(0.001)  # poll interval

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float]:
        """Send `sig` and wait for the exit: (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.alive:  # a crashed daemon has nothing left to signal
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        elapsed = time.monotonic() - started
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code, elapsed

    async def kill(self) -> None:
        """Cleanup after a failed test: never leave the daemon running."""
        if self.alive and self.proc is not None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
