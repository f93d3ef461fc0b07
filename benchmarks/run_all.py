#!/usr/bin/env python3
"""Run every benchmark in turn and let each print its own figures (`make bench`).

`--quick` shortens the long ones (for a smoke run); the figures in the README come
from the defaults. A failing benchmark is reported and the rest still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plan(quick: bool) -> list[list[str]]:
    py = sys.executable
    return [
        [py, str(HERE / "records_build.py")],
        [py, str(HERE / "dns_update.py")],
        [py, str(HERE / "dns_qps"), "--seconds", "3" if quick else "8", "--bind9"],
        [py, str(HERE / "leader_failover.py"), "--rounds", "3" if quick else "10"],
        [py, str(HERE / "marathon_event_latency.py"), "50" if quick else "300"],
        [py, str(HERE / "event_to_dns.py"), "3" if quick else "10"],
        [py, str(HERE / "render.py")],
        [py, str(HERE / "soak"), *(["--seconds", "20"] if quick else [])],
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="short runs, for a smoke check")
    args = p.parse_args()
    failed = []
    for argv in plan(args.quick):
        name = Path(argv[1]).name
        print(f"\n=== {name} {' '.join(argv[2:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(argv)
        print(f"=== {name}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
