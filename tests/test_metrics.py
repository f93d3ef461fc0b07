"""Lint every metric discoveryd exports (promlint's rules) and check CONTRACT section 5."""

import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from discoveryd.metrics import Metrics

CONTRACT = {
    "discoveryd_dns_queries_total": {"qtype", "rcode"},
    "discoveryd_dns_forwarded_total": {"result"},
    "discoveryd_dns_records": {"type"},
    "discoveryd_mesos_leader_changes_total": set(),
    "discoveryd_mesos_state_fetches_total": {"result"},
    "discoveryd_mesos_state_fetch_seconds": set(),
    "discoveryd_marathon_events_total": {"type"},
    "discoveryd_marathon_connected": set(),
    "discoveryd_haproxy_reloads_total": {"result"},
    "discoveryd_haproxy_validation_failures_total": set(),
    "discoveryd_haproxy_render_seconds": set(),
    "discoveryd_haproxy_backends": set(),
    "discoveryd_last_update_timestamp_seconds": {"source"},
}
UNBOUNDED = {"task_id", "task", "host", "ip", "instance_id", "name", "path", "url", "qname"}


def _populated() -> Metrics:
    """A registry where every labelled metric has at least one child, so it is exported."""
    m = Metrics()
    m.dns.observe("A", "NOERROR", 0.0001)
    m.dns_forwarded.labels("ok").inc()
    m.dns_forward_failures.labels("127.0.0.1:53", "timeout").inc()
    m.dns_records.labels("A").set(1)
    m.dns_malformed.labels("udp").inc()
    m.mesos_state_fetches.labels("ok").inc()
    m.mesos_leader.labels("zk").set(1)
    m.mesos_skipped.labels("framework").inc()
    m.marathon_events.labels("status_update_event").inc()
    m.marathon_fetches.labels("ok").inc()
    m.haproxy_reloads.labels("ok").inc()
    m.haproxy_skipped.labels("bad_label").inc()
    m.haproxy_skipped_apps.labels("/web").set(1)
    m.last_update.labels("mesos").set(1)
    return m


def _families():
    text = generate_latest(_populated().registry).decode()
    return list(text_string_to_metric_families(text))


def test_contract_metrics_exist_with_their_labels():
    samples = {}
    for fam in _families():
        for s in fam.samples:
            samples.setdefault(s.name, set()).update(set(s.labels) - {"le"})
    for name, labels in CONTRACT.items():
        found = samples[name] if name in samples else samples.get(name + "_count")
        assert found is not None, f"{name} missing"
        assert labels <= found, f"{name}: labels {found}, want {labels}"


def test_promlint_rules():
    for fam in _families():
        assert fam.name.startswith("discoveryd_"), fam.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", fam.name), fam.name
        assert fam.documentation.strip(), f"{fam.name} has no help text"
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples), fam.name
        else:
            assert not fam.name.endswith("_total"), f"non-counter {fam.name} ends in _total"
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), f"histogram {fam.name} is not in seconds"
        for s in fam.samples:
            assert not (set(s.labels) & UNBOUNDED), f"{s.name} has an unbounded label {s.labels}"
            for unit in ("_milliseconds", "_ms", "_minutes", "_bytes_total_bytes"):
                assert unit not in s.name, s.name


def test_marathon_event_types_bounded():
    from discoveryd.metrics import MARATHON_EVENT_TYPES

    assert "status_update_event" in MARATHON_EVENT_TYPES and len(MARATHON_EVENT_TYPES) < 40
