"""The soak's load: dnsperf at a fixed rate (-Q) over the probed names, and its figures.

dnsperf 2.x prints no percentiles, so it runs with -v (one line per query:
`> NOERROR name A 0.000123`, `> T name A` when lost) into a file that is read after
the run, where it cannot take CPU from the daemon.
"""

from __future__ import annotations

import asyncio
import random
import re
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.soak_cluster import Probe

PERCENTILES = (50, 90, 99, 99.9)


def write_queries(probes: list[Probe], path: Path, lines: int = 10000, seed: int = 3) -> None:
    rng = random.Random(seed)
    path.write_text("".join(f"{name} {rdtype}\n"
                            for name, rdtype in (rng.choice(probes) for _ in range(lines))))


async def run_dnsperf(port: int, queries: Path, qps: int, seconds: float, out: Path,
                      clients: int = 4) -> int:
    with out.open("wb") as f:
        proc = await asyncio.create_subprocess_exec(
            "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
            "-c", str(clients), "-Q", str(qps), "-l", str(seconds), "-t", "2", "-v",
            stdout=f, stderr=asyncio.subprocess.STDOUT)
        try:
            return await proc.wait()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise


def percentiles_ms(values: Any) -> dict[str, float]:
    """p50..p99.9 and max of latencies in seconds, as milliseconds (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {f"p{p:g}": round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1e3, 3)
           for p in PERCENTILES}
    out["max"] = round(ordered[-1] * 1e3, 3)
    return out


def parse_dnsperf(out: Path) -> dict[str, Any]:
    latencies = array("d")
    rcodes: Counter[str] = Counter()
    summary: dict[str, float] = {}
    pattern = re.compile(r"^\s*(Queries sent|Queries completed|Queries lost|"
                         r"Queries per second|Run time \(s\)):\s+([\d.]+)")
    with out.open(errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                rcodes[parts[1]] += 1
                if parts[1] != "T" and len(parts) >= 5:
                    latencies.append(float(parts[-1]))
            elif m := pattern.match(line):
                summary[m.group(1)] = float(m.group(2))
    lost = rcodes.pop("T", 0)
    return {
        "sent": int(summary.get("Queries sent", 0)),
        "completed": int(summary.get("Queries completed", 0)),
        "lost": int(summary.get("Queries lost", lost)),
        "qps": round(summary.get("Queries per second", 0.0), 1),
        "run_time_s": summary.get("Run time (s)", 0.0),
        "rcodes": dict(rcodes),
        "latency_ms": percentiles_ms(latencies),
    }
