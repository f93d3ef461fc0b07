"""Marathon event -> DNS answer, through the whole daemon.

A simulated Marathon starts a task (pushing the real status_update_event) while the
simulated Mesos master already lists it; the daemon's Marathon source sees the event and
triggers a debounced Mesos refresh, and the time until `app.marathon.mesos` answers with
the new task (its SRV record) is measured. `mesos.refresh_seconds` is an hour, so only the event path counts.
Run: python benchmarks/event_to_dns.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import dns.asyncquery
import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from discoveryd.daemon import Daemon  # noqa: E402
from discoveryd.settings import Settings  # noqa: E402
from discoveryd.sim.cluster import SimCluster  # noqa: E402
from discoveryd.sim.marathon import app  # noqa: E402


async def count(port: int, name: str) -> int:
    """SRV records: one per task port (A records are deduplicated per agent IP)."""
    r = await dns.asyncquery.tcp(dns.message.make_query(name, "SRV"), "127.0.0.1", port=port,
                                 timeout=2)
    return sum(len(rrset) for rrset in r.answer)


async def main(rounds: int) -> None:
    cluster = SimCluster()
    await cluster.start()
    cluster.marathon.add_app(app("/bench", instances=1, service_ports=(10100,)))
    cluster.sync()
    daemon = Daemon(Settings.model_validate({
        "mesos": {"masters": [cluster.master.address], "refresh_seconds": 3600},
        "marathon": {"urls": [cluster.marathon.url]},
        "dns": {"listen": ["127.0.0.1:0"], "external": False},
        "haproxy": {"enabled": False}, "http": {"listen": None},
    }))
    await daemon.start()
    port = daemon.dns.addresses[0][1]
    name = "_bench._tcp.marathon.mesos"
    while await count(port, name) != 1:
        await asyncio.sleep(0.01)
    delays = []
    for i in range(rounds):
        await asyncio.sleep(0.3)  # past the refresh debounce: each round is a "first" event
        want = 2 + i
        cluster.marathon.scale("/bench", want)  # the events go out now...
        cluster.sync()  # ...and the master already knows the task, as in a real cluster
        started = time.perf_counter()
        while await count(port, name) != want:
            await asyncio.sleep(0.002)
        delays.append(time.perf_counter() - started)
    await daemon.stop()
    await cluster.stop()
    ms = sorted(d * 1000 for d in delays)
    print(f"event -> DNS answer over {rounds} rounds: median {statistics.median(ms):.0f} ms, "
          f"min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
