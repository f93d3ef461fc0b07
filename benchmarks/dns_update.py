"""Time the DNS answer-cache build: a full build, then incremental updates after small changes.

    python benchmarks/dns_update.py [N ...]     (default: 1000 10000)

For each size: the full `build_zone` (no previous zone) and `build_zone(..., previous)` after
removing one task, adding one task and moving one agent's tasks to a new IP; best of 3 each.
The GC thresholds are the daemon's (`cli.serve`).
"""

from __future__ import annotations

import copy
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gen_state import generate_state  # noqa: E402
from discoveryd.dns.records import build_records  # noqa: E402
from discoveryd.dns.recordset import RecordSet  # noqa: E402
from discoveryd.dns.resolver import build_zone  # noqa: E402
from discoveryd.settings import DnsSettings  # noqa: E402
from discoveryd.sources.mesos_state import parse_master_state  # noqa: E402

SETTINGS = DnsSettings()


def records(raw: dict) -> RecordSet:
    return build_records(parse_master_state(raw), domain="mesos", masters=["10.0.0.1:5050"],
                         ip_sources=["netinfo", "mesos", "host"], enforce_rfc952=False,
                         mname="ns1.mesos", listen_ips=["10.0.0.53"])


def variants(raw: dict) -> dict[str, dict]:
    """Small changes of the generated state: one task fewer, one more, one agent's IP moved."""
    tasks = raw["frameworks"][0]["tasks"]
    removed = copy.deepcopy(raw)
    del removed["frameworks"][0]["tasks"][len(tasks) // 2 + 1]  # generated: every 50th stages
    added = copy.deepcopy(raw)
    extra = copy.deepcopy(tasks[1])
    extra["id"] = extra["id"].replace("-0000-11e6", "-ffff-11e6")
    added["frameworks"][0]["tasks"].append(extra)
    moved = copy.deepcopy(raw)
    agent = moved["slaves"][len(moved["slaves"]) // 2 + 1]
    agent["pid"] = agent["pid"].replace("@10.1.", "@10.201.")
    return {"remove one task": removed, "add one task": added, "change one agent": moved}


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(sizes: list[int]) -> None:
    gc.set_threshold(100_000, 50, 100)
    print(f"{'tasks':>7} {'records':>8} {'names':>7}  {'case':<18} {'ms':>9}")
    for n in sizes:
        raw = generate_state(n)
        base = records(raw)
        total, names = sum(base.counts().values()), len(base.names())
        t = best_of(lambda base=base: build_zone(base, SETTINGS, 1))
        print(f"{n:>7} {total:>8} {names:>7}  {'full build':<18} {t * 1000:>9.1f}")
        previous, _ = build_zone(base, SETTINGS, 1)
        for case, changed in variants(raw).items():
            rs = records(changed)
            t = best_of(lambda rs=rs, previous=previous: build_zone(rs, SETTINGS, 2, previous))
            print(f"{n:>7} {total:>8} {names:>7}  {case:<18} {t * 1000:>9.1f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
