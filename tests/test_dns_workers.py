"""dns.workers > 1: extra processes answer on the same sockets and follow every update."""

import asyncio
import copy
import json

from discoveryd.sim.mesos_master import sample_state
from tests.daemon_harness import Running, eventually, settings_for, start_daemon


async def _all_clients_see(r, name, want, clients=24):
    """Query from many source ports: SO_REUSEPORT hashes each to one of the processes."""
    for _ in range(clients):
        if await r.addresses(name) != want:  # dnspython opens a new socket per query
            return False
    return True


def _queries_total(text):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("discoveryd_dns_queries_total{"))


async def test_workers_answer_follow_updates_and_report_metrics(master):
    r = await start_daemon(settings_for(mesos={"masters": [master.address],
                                               "refresh_seconds": 0.5},
                                        dns={"workers": 2}))
    try:
        assert r.daemon.dns_workers is not None and len(r.daemon.dns_workers._procs) == 1
        want = {"1.2.3.11", "1.2.3.12"}
        await eventually(lambda: _all_clients_see(r, "liquor-store.marathon.mesos", want),
                         timeout=30, what="every process answers")
        state = copy.deepcopy(sample_state())
        for f in state["frameworks"]:
            f["tasks"] = [t for t in f["tasks"] if "liquor" not in json.dumps(t)]
        master.state = state
        await eventually(lambda: _all_clients_see(r, "liquor-store.marathon.mesos", set()),
                         timeout=30, what="every process saw the update")
        stats = r.daemon.metrics.dns
        # the worker answered some of those queries, and /metrics counts them
        await eventually(lambda: sum(sum(q.values()) for q, _, _ in stats.remote.values()) > 0,
                         timeout=15, what="worker stats reported")
        local = sum(stats.totals().values())

        async def counted():
            _, text = await r.get("/metrics")
            return _queries_total(text) > local

        await eventually(counted, timeout=15, what="worker queries in /metrics")
    finally:
        await r.daemon.stop()
    assert r.daemon.dns_workers is None


async def test_large_record_set_reaches_every_worker():
    """A record set far larger than a pipe buffer (~2 MB pickled) arrives whole."""
    from discoveryd.dns.recordset import RecordSet
    from discoveryd.dns.server import DnsServer
    from discoveryd.dns.workers import DnsWorkers
    from discoveryd.metrics import Metrics
    from discoveryd.settings import DnsSettings

    rs = RecordSet(a={f"task-{i}.marathon.mesos.": (f"10.{i // 65536 % 256}.{i // 256 % 256}."
                                                    f"{i % 256}",) for i in range(40000)})
    settings = DnsSettings(listen=["127.0.0.1:0"], workers=3, external=False)
    metrics = Metrics()
    server = DnsServer(settings, metrics, reuse_port=True)
    await server.start()
    workers = DnsWorkers(settings, metrics, 2, server.addresses)
    await workers.start()
    try:
        server.update(rs)
        seq = await asyncio.to_thread(workers.update, rs)
        assert await workers.wait_applied(seq, timeout=60), "a worker never confirmed"

        class Probe:  # what the helpers need: a port to query
            dns_port = server.addresses[0][1]
            addresses = Running.addresses
            query = Running.query

        # confirmed means served: no polling needed
        assert await _all_clients_see(Probe(), "task-39999.marathon.mesos", {"10.0.156.63"})
        assert not await workers.wait_applied(seq + 1, timeout=0.2)  # never sent: no confirm
    finally:
        await workers.stop()
        await server.stop()
