"""Leader failover delay: ZooKeeper znode deleted -> new leader's state served.

Starts a real ZooKeeper (Debian `zookeeper` package), two simulated Mesos masters on
127.0.0.2 and 127.0.0.3 and discoveryd; each round deletes the leader's `json.info_`
node and times until (a) the store holds the new leader's state and (b) DNS answers
`leader.mesos` with the new leader's IP. Prints the median and spread over the rounds.

    python benchmarks/leader_failover.py [--rounds 10] [--no-dns]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.asyncquery  # noqa: E402
import dns.message  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402

from discoveryd.settings import parse_settings  # noqa: E402
from discoveryd.sim.mesos_master import SimMesosMaster  # noqa: E402
from discoveryd.store import Store  # noqa: E402
from tests.fakes.zookeeper import ZooKeeperServer, free_port, register_master  # noqa: E402


async def dns_leader(port: int) -> str | None:
    q = dns.message.make_query("leader.mesos.", "A")
    try:
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=0.5)
    except dns.exception.Timeout:
        return None
    return next((rr.address for rrset in r.answer for rr in rrset), None)


async def until(check, deadline: float = 30.0) -> float:
    """Poll `check()` (sync or async) until true; returns the perf_counter time it was."""
    end = time.perf_counter() + deadline
    while time.perf_counter() < end:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.perf_counter()
        await asyncio.sleep(0.001)
    raise TimeoutError("condition not met")


async def bench(rounds: int, with_dns: bool) -> None:
    zk = ZooKeeperServer()
    zk.start()
    admin = KazooClient(hosts=zk.hosts)
    admin.start(timeout=30)
    sims = [SimMesosMaster(host="127.0.0.2"), SimMesosMaster(host="127.0.0.3")]
    for s in sims:
        await s.start()
    dns_port = free_port()
    settings, _ = parse_settings({
        "mesos": {"zk": f"zk://{zk.hosts}/mesos", "refresh_seconds": 3600},
        "dns": {"enabled": with_dns, "listen": [f"127.0.0.1:{dns_port}"], "external": False},
        "haproxy": {"enabled": False}, "http": {"listen": None},
    })
    from discoveryd.daemon import Daemon

    store = Store()
    daemon = Daemon(settings, store=store)
    nodes = {s.host: register_master(admin, "/mesos", s.host, s.port) for s in sims}
    await daemon.start()
    to_store, to_dns = [], []
    try:
        for i in range(rounds):
            old, new = sims[i % 2], sims[(i + 1) % 2]
            await until(lambda old=old: store.current.mesos is not None
                        and store.current.mesos.leader == old.pid)
            if with_dns:
                await until(lambda old=old: _eq(dns_leader(dns_port), old.host))
            start = time.perf_counter()
            admin.delete(nodes[old.host])
            t_store = until(lambda new=new: store.current.mesos is not None
                            and store.current.mesos.leader == new.pid)
            t_dns = until(lambda new=new: _eq(dns_leader(dns_port), new.host)) if with_dns else None
            done = await asyncio.gather(t_store, *([t_dns] if t_dns else []))
            to_store.append(done[0] - start)
            if with_dns:
                to_dns.append(done[1] - start)
            nodes[old.host] = register_master(admin, "/mesos", old.host, old.port)  # rejoins
    finally:
        await daemon.stop()
        for s in sims:
            await s.stop()
        admin.stop()
        admin.close()
        zk.destroy()
    report("znode deleted -> store holds new leader's state", to_store)
    if with_dns:
        report("znode deleted -> DNS answers leader.mesos with new IP", to_dns)


async def _eq(answer, expected: str) -> bool:
    return (await answer) == expected


def report(what: str, samples: list[float]) -> None:
    ms = sorted(x * 1000 for x in samples)
    print(f"{what}: median {statistics.median(ms):.1f} ms, min {ms[0]:.1f} ms, "
          f"max {ms[-1]:.1f} ms over {len(ms)} rounds")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-dns", action="store_true", help="time to the store update only")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(bench(args.rounds, not args.no_dns))


if __name__ == "__main__":
    main()
