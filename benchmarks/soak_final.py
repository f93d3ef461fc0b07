"""After the soak's changes stop: DNS and haproxy.cfg must converge on the final state
(no record lost on the way), and the HAProxy half's counters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message

from benchmarks.soak_checker import answer_of
from benchmarks.soak_cluster import SoakCluster
from tests.daemon_harness import eventually

CONVERGE_TIMEOUT = 60.0  # generous: the machine is shared


def backends_in(text: str) -> dict[str, frozenset[str]]:
    """haproxy.cfg backend -> its `server` addresses (backends without servers left out)."""
    out: dict[str, set[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if not line[0].isspace():
            current = words[1] if words[0] == "backend" and len(words) > 1 else None
            if current:
                out[current] = set()
        elif current and words[0] == "server" and len(words) > 2:
            out[current].add(words[2])
    return {k: frozenset(v) for k, v in out.items() if v}


async def dns_differences(sc: SoakCluster, port: int) -> list[str]:
    """Probes whose answer differs from the final state's expectation."""
    want = sc.expected[sc.cluster.version]
    wrong = []
    for name, rdtype in sc.probes:
        try:
            r = await dns.asyncquery.udp(dns.message.make_query(name, rdtype), "127.0.0.1",
                                         port=port, timeout=2)
        except dns.exception.Timeout:
            wrong.append(f"{name} {rdtype}: timeout")
            continue
        got = answer_of(r, rdtype)
        if got != want[(name, rdtype)]:
            wrong.append(f"{name} {rdtype}: {got} != {want[(name, rdtype)]}")
    return wrong


async def converge(sc: SoakCluster, dns_port: int, haproxy_cfg: Path) -> dict[str, Any]:
    """Seconds until every probe answers the final state and haproxy.cfg has exactly the
    final servers (None when that did not happen within CONVERGE_TIMEOUT), with what was
    still wrong then."""
    out: dict[str, Any] = {}
    want_backends = sc.expected_backends()

    async def dns_ok() -> bool:
        out["dns_wrong"] = (await dns_differences(sc, dns_port))[:5]
        return not out["dns_wrong"]

    def haproxy_ok() -> bool:
        have = backends_in(haproxy_cfg.read_text()) if haproxy_cfg.exists() else {}
        out["haproxy_wrong"] = sorted(
            k for k in set(have) | set(want_backends) if have.get(k) != want_backends.get(k))[:5]
        return not out["haproxy_wrong"]

    for what, check in (("dns", dns_ok), ("haproxy", haproxy_ok)):
        started = time.monotonic()
        try:
            await eventually(check, timeout=CONVERGE_TIMEOUT, interval=0.2, what=what)
            out[f"{what}_s"] = round(time.monotonic() - started, 2)
        except AssertionError:
            out[f"{what}_s"] = None
    out["backends"] = len(want_backends)
    return out


def haproxy_figures(metrics: dict[str, float], reloads_file: Path) -> dict[str, Any]:
    def total(prefix: str) -> float:
        return sum(v for k, v in metrics.items() if k.startswith(prefix))

    return {
        "renders": int(total("discoveryd_haproxy_render_seconds_count")),
        "reloads_ok": int(total('discoveryd_haproxy_reloads_total{result="ok"}')),
        "reloads_failed": int(total("discoveryd_haproxy_reloads_total") -
                              total('discoveryd_haproxy_reloads_total{result="ok"}')),
        "reload_commands_run": (reloads_file.read_text().count("reload")
                                if reloads_file.exists() else 0),
        "validation_failures": int(total("discoveryd_haproxy_validation_failures_total")),
        "mesos_fetches": int(total("discoveryd_mesos_state_fetches_total")),
        "marathon_events": int(total("discoveryd_marathon_events_total")),
    }
