"""Every metric discoveryd exports, created on an injected registry.

Components receive the `Metrics` object; nothing registers metrics globally, so
tests can build as many daemons as they like in one process. The DNS query path
counts into plain dicts/lists (`QueryStats`) that are turned into metric families
only when Prometheus scrapes: a `Counter.labels().inc()` per query would cost more
than answering it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from discoveryd import __version__

# `*_created` series double the page and nobody alerts on them.
disable_created_metrics()

# Label values are bounded: marathon event types outside this set count as "other".
MARATHON_EVENT_TYPES = frozenset(
    {
        "status_update_event",
        "health_status_changed_event",
        "api_post_event",
        "app_terminated_event",
        "deployment_info",
        "deployment_success",
        "deployment_failed",
        "deployment_step_success",
        "deployment_step_failure",
        "event_stream_attached",
        "event_stream_detached",
        "instance_changed_event",
        "instance_health_changed_event",
        "failed_health_check_event",
        "unhealthy_instance_kill_event",
        "unhealthy_task_kill_event",
    }
)

QUERY_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                         0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_FIRST_BUCKET = QUERY_LATENCY_BUCKETS[0]


class QueryStats(Collector):
    """Hot-path DNS counters: a dict increment and a list increment per query."""

    def __init__(self) -> None:
        self.queries: dict[tuple[str, str], int] = {}  # (qtype, rcode) -> count
        self.counters: dict[tuple[str, str], list[int]] = {}  # more counts, see counter()
        self.bucket_counts = [0] * (len(QUERY_LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        # Latest cumulative figures of each DNS worker process (dns.workers > 1).
        self.remote: dict[int, tuple[dict[tuple[str, str], int], list[int], float]] = {}

    def set_remote(self, worker: int, queries: dict[tuple[str, str], int],
                   buckets: list[int], latency_sum: float) -> None:
        self.remote[worker] = (queries, buckets, latency_sum)

    def totals(self) -> dict[tuple[str, str], int]:
        """Queries by (qtype, rcode) answered by this process."""
        totals = dict(self.queries)
        for key, cell in list(self.counters.items()):
            totals[key] = totals.get(key, 0) + cell[0]
        return totals

    def observe(self, qtype: str, rcode: str, seconds: float) -> None:
        # A plain dict and a first-bucket shortcut: cached answers take a few µs, so
        # nearly every query lands in bucket 0 without a bisect.
        key = (qtype, rcode)
        self.queries[key] = self.queries.get(key, 0) + 1
        if seconds <= _FIRST_BUCKET:
            self.bucket_counts[0] += 1
        else:
            self.bucket_counts[bisect_left(QUERY_LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def count(self, qtype: str, rcode: str) -> None:
        key = (qtype, rcode)
        self.queries[key] = self.queries.get(key, 0) + 1

    def counter(self, qtype: str, rcode: str) -> list[int]:
        """A one-element list counting (qtype, rcode) queries with `c[0] += 1`: cheaper on
        the hot path than hashing the key. Scrapes add it to `queries`."""
        return self.counters.setdefault((qtype, rcode), [0])

    def add_latencies(self, fast: int, total: float, slow: list[float]) -> None:
        """A batch of latencies (queries counted apart): `fast` of them within the first
        bucket, the `slow` ones listed; `total` is the sum of all."""
        self.bucket_counts[0] += fast
        for seconds in slow:
            self.bucket_counts[bisect_left(QUERY_LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += total

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "discoveryd_dns_queries", "DNS queries answered, by query type and response code.",
            labels=["qtype", "rcode"],
        )
        totals = self.totals()
        bucket_counts, latency_sum = list(self.bucket_counts), self.latency_sum
        for queries, remote_buckets, remote_sum in list(self.remote.values()):
            for key, n in queries.items():
                totals[key] = totals.get(key, 0) + n
            bucket_counts = [a + b for a, b in zip(bucket_counts, remote_buckets, strict=True)]
            latency_sum += remote_sum
        for (qtype, rcode), n in sorted(totals.items()):
            c.add_metric([qtype, rcode], n)
        yield c
        buckets, acc = [], 0
        for bound, n in zip((*QUERY_LATENCY_BUCKETS, float("inf")), bucket_counts, strict=True):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        h = HistogramMetricFamily(
            "discoveryd_dns_query_duration_seconds",
            "Time from receiving a DNS query to sending its answer (forwarded queries included).",
        )
        h.add_metric([], buckets, latency_sum)
        yield h

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.dns = QueryStats()
        r.register(self.dns)
        self.build_info = Gauge("discoveryd_build_info", "Always 1; labelled with the version.",
                                ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        # DNS
        self.dns_forwarded = Counter(
            "discoveryd_dns_forwarded", "Queries for names outside the domain, by outcome "
            "(ok, servfail = every upstream failed, refused = forwarding disabled).",
            ["result"], registry=r)
        self.dns_forward_failures = Counter(
            "discoveryd_dns_forward_failures", "Failed tries of one upstream resolver "
            "(timeout, error, truncated), by upstream.", ["upstream", "reason"], registry=r)
        self.dns_records = Gauge("discoveryd_dns_records", "Records served, by type.", ["type"],
                                 registry=r)
        self.dns_malformed = Counter("discoveryd_dns_malformed_queries",
                                     "Packets that could not be parsed as a DNS query.",
                                     ["transport"], registry=r)
        self.dns_record_build_seconds = Histogram(
            "discoveryd_dns_record_build_seconds",
            "Time to rebuild the record set and answer cache after a state change.",
            registry=r, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        # Mesos / ZooKeeper
        self.mesos_leader_changes = Counter("discoveryd_mesos_leader_changes",
                                            "Changes of the leading Mesos master.", registry=r)
        self.mesos_state_fetches = Counter(
            "discoveryd_mesos_state_fetches", "Mesos master state requests, by result "
            "(ok, error, not_leader, invalid).", ["result"], registry=r)
        self.mesos_state_fetch_seconds = Histogram(
            "discoveryd_mesos_state_fetch_seconds", "Duration of a Mesos state request.",
            registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.mesos_leader = Gauge(
            "discoveryd_mesos_leader_source", "1 for where the current leader came from "
            "(zk, static or none).", ["source"], registry=r)
        self.zk_connected = Gauge("discoveryd_zookeeper_connected",
                                  "1 while the ZooKeeper session is connected.", registry=r)
        self.source_configured = Gauge(
            "discoveryd_source_configured", "1 for each source the configuration uses "
            "(zookeeper, mesos, marathon), so alerts on *_connected can skip unused ones.",
            ["source"], registry=r)
        self.mesos_skipped = Counter(
            "discoveryd_mesos_skipped", "Frameworks, agents or tasks left out of the records, by "
            "reason.", ["reason"], registry=r)
        # Marathon
        self.marathon_events = Counter("discoveryd_marathon_events",
                                       "Marathon events received, by event type.", ["type"],
                                       registry=r)
        self.marathon_connected = Gauge("discoveryd_marathon_connected",
                                        "1 while the Marathon event stream is connected "
                                        "(or, when polling, the last poll succeeded).", registry=r)
        self.marathon_fetches = Counter("discoveryd_marathon_snapshot_fetches",
                                        "Marathon /v2/apps snapshot fetches, by result.",
                                        ["result"], registry=r)
        self.marathon_apps = Gauge("discoveryd_marathon_apps", "Apps in the last snapshot.",
                                   registry=r)
        self.marathon_tasks = Gauge("discoveryd_marathon_tasks", "Tasks in the model.",
                                    registry=r)
        # HAProxy
        self.haproxy_reloads = Counter("discoveryd_haproxy_reloads",
                                       "HAProxy reloads, by result (ok, error).", ["result"],
                                       registry=r)
        self.haproxy_validation_failures = Counter(
            "discoveryd_haproxy_validation_failures",
            "Candidate configurations rejected by the validate command.", registry=r)
        self.haproxy_render_seconds = Histogram(
            "discoveryd_haproxy_render_seconds", "Time to build the view and render haproxy.cfg.",
            registry=r, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.haproxy_backends = Gauge("discoveryd_haproxy_backends",
                                      "Backends in the installed haproxy.cfg.", registry=r)
        self.haproxy_skipped = Counter(
            "discoveryd_haproxy_skipped", "App ports left out of haproxy.cfg, by reason.",
            ["reason"], registry=r)
        self.haproxy_skipped_apps = Gauge(
            "discoveryd_haproxy_skipped_apps", "1 for each app with a port left out of the last "
            "render, by a bad label or by failing validation (bounded by the number of apps).", ["app_id"], registry=r)
        # Freshness
        self.last_update = Gauge(
            "discoveryd_last_update_timestamp_seconds",
            "Unix time of the last successful update, by source (mesos, marathon, haproxy).",
            ["source"], registry=r)
        self.ready = Gauge("discoveryd_ready", "1 when /ready answers 200.", registry=r)
