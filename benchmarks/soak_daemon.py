"""The daemon under soak: `python -m discoveryd run` as a real process, its HTTP API,
and samples of its memory, open files and CPU from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_process import cpu_seconds, rss_kib
from tests.fakes.ports import free_port


def write_config(work: Path, master: str, marathon: str) -> tuple[Path, int, int]:
    """A config on free loopback ports with the HAProxy half on: real `haproxy -c`, and a
    reload command that appends one line per reload to `work/reloads`."""
    dns_port, http_port = free_port(), free_port()
    path = work / "discoveryd.yaml"
    path.write_text(f"""\
mesos: {{masters: ["{master}"], refresh_seconds: 10}}
marathon: {{urls: ["{marathon}"], refresh_seconds: 30}}
dns: {{listen: ["127.0.0.1:{dns_port}"], external: false}}
http: {{listen: "127.0.0.1:{http_port}"}}
haproxy:
  config_path: {work / "haproxy.cfg"}
  validate_command: "haproxy -c -f {{path}}"
  reload_command: "echo reload >> {work / "reloads"}"
  bind_address: 127.0.0.1
  http_port: {free_port()}
  https_port: {free_port()}
  appid_port: {free_port()}
  stats_port: {free_port()}
  stats_socket: {work / "admin.sock"}
logging: {{level: info, format: json}}
""")
    return path, dns_port, http_port


def udp_receive_drops() -> int:
    """Datagrams the kernel dropped for full receive buffers, machine-wide (/proc/net/snmp)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]
    return int(dict(zip(rows[0], rows[1], strict=True)).get("RcvbufErrors", 0))


@dataclass
class Sample:
    at: float  # seconds since the daemon was ready
    rss_mb: float
    fds: int
    cpu_s: float


def sample(pid: int, since: float) -> Sample:
    return Sample(round(time.monotonic() - since, 2), rss_kib(pid) / 1024,
                  len(os.listdir(f"/proc/{pid}/fd")), cpu_seconds(pid))


@dataclass
class DaemonProcess:
    config: Path
    http_port: int
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    ready_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self, ready_timeout: float = 90.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "discoveryd", "run", "--config", str(self.config),
                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + ready_timeout
        async with aiohttp.ClientSession() as s:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}; see "
                                       f"{self.log_path}")
                try:
                    async with s.get(self.http + "/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon not ready in {ready_timeout} s")
                await asyncio.sleep(0.2)  # poll with a deadline
        self.ready_at = time.monotonic()

    async def sample_every(self, seconds: float, stop: asyncio.Event) -> None:
        assert self.proc is not None
        while not stop.is_set():
            self.samples.append(sample(self.proc.pid, self.ready_at))
            try:
                async with asyncio.timeout(seconds):
                    await stop.wait()
            except TimeoutError:
                pass
        self.samples.append(sample(self.proc.pid, self.ready_at))

    async def get(self, path: str) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.http + path) as resp:
            return await resp.text()

    async def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as `name{labels}` -> value."""
        out = {}
        for family in text_string_to_metric_families(await self.get("/metrics")):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[s.name + ("{" + labels + "}" if labels else "")] = s.value
        return out

    async def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1


def memory_report(samples: list[Sample], warmup: float) -> dict[str, Any]:
    """RSS after warm-up: start, end, max and growth (end - start, and the least-squares
    slope per minute), plus open files and CPU."""
    after = [s for s in samples if s.at >= warmup] or samples[-1:]
    first, last = after[0], after[-1]
    slope = 0.0
    if len(after) >= 3 and after[-1].at > after[0].at:
        slope = statistics.linear_regression([s.at for s in after],
                                             [s.rss_mb for s in after]).slope * 60
    return {
        "warmup_s": warmup, "samples": len(after),
        "rss_start_mb": round(first.rss_mb, 1), "rss_end_mb": round(last.rss_mb, 1),
        "rss_max_mb": round(max(s.rss_mb for s in after), 1),
        "rss_growth_mb": round(last.rss_mb - first.rss_mb, 1),
        "rss_growth_pct": round(100 * (last.rss_mb - first.rss_mb) / first.rss_mb, 1),
        "rss_slope_mb_per_min": round(slope, 2),
        "fds_start": first.fds, "fds_end": last.fds, "fds_max": max(s.fds for s in after),
        "cpu_s": round(samples[-1].cpu_s - samples[0].cpu_s, 1) if samples else 0.0,
    }


def count_log_levels(path: Path) -> dict[str, Any]:
    """Warnings and errors in the daemon's JSON log, by event name."""
    levels: dict[str, dict[str, int]] = {"warning": {}, "error": {}}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        level = str(entry.get("level", "")).lower()
        if level in levels:
            event = str(entry.get("event", "?"))
            levels[level][event] = levels[level].get(event, 0) + 1
    return levels
