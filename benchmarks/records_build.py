"""Time parse_master_state and build_records for generated states.

    python benchmarks/records_build.py [N ...]     (default: 1000 10000)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gen_state import generate_state  # noqa: E402
from discoveryd.dns.records import build_records  # noqa: E402
from discoveryd.sources.mesos_state import parse_master_state  # noqa: E402


def best_of(fn, repeat: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(sizes: list[int]) -> None:
    print(f"{'tasks':>8} {'parse ms':>10} {'build ms':>10} {'records':>9} {'names':>8}")
    for n in sizes:
        raw = generate_state(n)
        t_parse, state = best_of(lambda raw=raw: parse_master_state(raw))
        t_build, rs = best_of(
            lambda state=state: build_records(
                state,
                domain="mesos",
                masters=["10.0.0.1:5050", "10.0.0.2:5050", "10.0.0.3:5050"],
                ip_sources=["netinfo", "mesos", "host"],
                enforce_rfc952=False,
                mname="ns1.mesos",
                listen_ips=["10.0.0.53"],
            )
        )
        total = sum(rs.counts().values())
        print(f"{n:>8} {t_parse * 1000:>10.1f} {t_build * 1000:>10.1f} {total:>9} "
              f"{len(rs.names()):>8}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
