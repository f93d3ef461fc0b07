"""`discoveryd run` as a child process on loopback, watched from outside.

For tests that need what only a real process shows: a crash (it exits), its memory
(VmRSS in /proc/<pid>/status), the sockets it holds (/proc/<pid>/fd) and its log.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

from discoveryd.sim.mesos_master import SimMesosMaster
from tests.daemon_harness import eventually
from tests.fakes.ports import free_port
from tests.test_run_process import write_config


class DaemonProcess:
    def __init__(self, proc: asyncio.subprocess.Process, dns_port: int, http_port: int,
                 log: Path) -> None:
        self.proc = proc
        self.dns_port = dns_port
        self.http_port = http_port
        self.log = log

    @classmethod
    async def start(cls, workdir: Path, master: SimMesosMaster,
                    ready_name: str = "leader.mesos") -> DaemonProcess:
        """Start it on free ports and wait until `ready_name` resolves."""
        dns_port, http_port = free_port(), free_port()
        config, log = workdir / "discoveryd.yaml", workdir / "discoveryd.log"
        write_config(config, master, dns_port, http_port)
        with log.open("wb") as err:  # a file, not a pipe: a full pipe would stall the daemon
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "discoveryd", "run", "--config", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        daemon = cls(proc, dns_port, http_port, log)
        try:
            await eventually(lambda: daemon.resolves(ready_name), timeout=60, what="dns up")
        except BaseException:
            await daemon.stop()
            raise
        return daemon

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def resolves(self, name: str) -> bool:
        q = dns.message.make_query(name, "A")
        try:
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=self.dns_port, timeout=2)
        except (dns.exception.Timeout, OSError):
            return False
        return bool(r.answer)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def sockets(self) -> int:
        """Sockets the process holds open (listening ones and connections)."""
        fds = Path(f"/proc/{self.pid}/fd")
        count = 0
        for fd in fds.iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:  # closed while we looked
                pass
        return count

    async def stop(self) -> int:
        if self.alive:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode
