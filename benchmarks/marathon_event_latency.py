"""Marathon event latency: SimMarathon -> SSE -> MarathonSource -> store.

Prints the median / p95 time from pushing a status_update_event to the store holding
the task, and the snapshot fetches a burst of 200 app-level events costs.
Run: python benchmarks/marathon_event_latency.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from discoveryd.metrics import Metrics
from discoveryd.settings import MarathonSettings
from discoveryd.sim.marathon import SimMarathon, app
from discoveryd.sources.marathon import MarathonSource
from discoveryd.store import Store


async def until(cond, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0)


async def main(n: int) -> None:
    async with SimMarathon(keepalive_seconds=5) as sim:
        sim.add_app(app("/bench", instances=3))
        store = Store()
        source = MarathonSource(MarathonSettings(urls=[sim.url]), store, Metrics())
        runner = asyncio.create_task(source.run())
        await until(lambda: source.connected and store.current.marathon is not None)

        def has(tid: str) -> bool:
            return any(t.task_id == tid for t in store.current.marathon.apps["/bench"].tasks)

        latencies = []
        for _ in range(n):
            t0 = time.perf_counter()
            tid = sim.start_task("/bench")["id"]
            await until(lambda tid=tid: has(tid))
            latencies.append(time.perf_counter() - t0)
            sim.kill_task("/bench", tid)
            await until(lambda tid=tid: not has(tid))
        latencies.sort()
        print(f"status_update_event -> store, n={n}: "
              f"median {statistics.median(latencies) * 1e3:.2f} ms, "
              f"p95 {latencies[int(0.95 * (n - 1))] * 1e3:.2f} ms, "
              f"max {latencies[-1] * 1e3:.2f} ms")

        await asyncio.sleep(0.5)  # let any pending fetch finish
        before = sim.fetches
        t0 = time.perf_counter()
        for i in range(199):
            sim.push_event("deployment_step_success", {"plan": {"id": str(i)}})
        sim.apps["/bench"]["labels"]["MARK"] = "last"
        sim.push_event("api_post_event", {"uri": "/v2/apps/bench"})
        await until(lambda: store.current.marathon.apps["/bench"].labels.get("MARK") == "last")
        took = time.perf_counter() - t0
        await asyncio.sleep(1.0)  # count fetches that arrive late, if any
        print(f"burst of 200 app events: {sim.fetches - before} snapshot fetch(es), "
              f"latest state in store after {took * 1e3:.0f} ms")
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
