"""The soak's verdict (what counts as a failure) and its human-readable report."""

from __future__ import annotations

from typing import Any

MAX_LOST_FRACTION = 0.01  # of checker queries (UDP on loopback; the machine may be busy)
MAX_FD_GROWTH = 20


def failures(r: dict[str, Any], max_growth_mb: float, max_growth_pct: float) -> list[str]:
    out = []
    c, perf, mem, hap, conv = r["checker"], r["dnsperf"], r["memory"], r["haproxy"], r[
        "convergence"]
    if c["mismatched"]:
        out.append(f"{c['mismatched']} wrong answers ({c['mismatch_kinds']})")
    if c["checked"] == 0 or c["lost"] > MAX_LOST_FRACTION * c["sent"]:
        out.append(f"checker: {c['checked']} answers checked, {c['lost']} of {c['sent']} lost")
    bad_rcodes = {k: v for k, v in perf["rcodes"].items() if k not in ("NOERROR", "NXDOMAIN")}
    if bad_rcodes or perf["exit_code"] != 0 or not perf["completed"]:
        out.append(f"dnsperf: exit {perf['exit_code']}, {perf['completed']} completed, "
                   f"error responses {bad_rcodes}")
    for what in ("dns", "haproxy"):
        if conv[f"{what}_s"] is None:
            out.append(f"{what} did not converge on the final state: {conv[what + '_wrong']}")
    if hap["validation_failures"] or hap["reloads_failed"] or not hap["reloads_ok"]:
        out.append(f"haproxy: {hap['validation_failures']} validation failures, "
                   f"{hap['reloads_ok']} reloads ok, {hap['reloads_failed']} failed")
    if mem["rss_growth_mb"] > max_growth_mb or mem["rss_growth_pct"] > max_growth_pct:
        out.append(f"RSS grew {mem['rss_growth_mb']} MB ({mem['rss_growth_pct']}%) after "
                   f"warm-up (limits {max_growth_mb} MB, {max_growth_pct}%)")
    if mem["fds_end"] - mem["fds_start"] > MAX_FD_GROWTH:
        out.append(f"open files grew from {mem['fds_start']} to {mem['fds_end']}")
    d = r["daemon"]
    if d["exit_code"] != 0 or d["error"]:
        out.append(f"daemon: exit {d['exit_code']}, errors logged {d['error']}")
    return out


def _lat(ms: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.2f}" for k, v in ms.items()) + " ms" if ms else "-"


def render_text(r: dict[str, Any]) -> str:
    s, ch, perf, c = r["settings"], r["changes"], r["dnsperf"], r["checker"]
    mem, hap, conv, d = r["memory"], r["haproxy"], r["convergence"], r["daemon"]
    kinds = ", ".join(f"{k} {v}" for k, v in ch.items()
                      if k not in ("total", "dns_states_served", "change_to_fetch_ms"))
    lines = [
        f"soak: {r['duration_s']:.0f} s, dnsperf -Q {s['qps']}, {s['changes_per_second']} "
        f"changes/s, {s['apps']} apps, {s['probed_names']} probed names",
        f"changes      {ch['total']} ({kinds}); {ch['dns_states_served']} distinct DNS states "
        "served",
        f"             change -> state fetched by the daemon {_lat(ch['change_to_fetch_ms'])}",
        f"dnsperf      sent {perf['sent']}  answered {perf['completed']}  lost {perf['lost']}"
        f"  {perf['qps']:.0f} q/s  rcodes {perf['rcodes']}",
        f"             latency {_lat(perf['latency_ms'])}",
        f"checker      sent {c['sent']}  answered {c['answered']}  lost {c['lost']}  "
        f"{c['qps']:.0f} q/s  truncated {c['truncated']}",
        f"             latency {_lat(c['latency_ms'])}",
        f"correctness  checked {c['checked']}  mismatched {c['mismatched']}  by rule "
        f"{c['by_rule']}",
        f"convergence  dns {conv['dns_s']} s, haproxy.cfg {conv['haproxy_s']} s "
        f"({conv['backends']} backends)",
        f"haproxy      renders {hap['renders']}  reloads {hap['reloads_ok']} ok / "
        f"{hap['reloads_failed']} failed (commands run {hap['reload_commands_run']})  "
        f"validation failures {hap['validation_failures']}",
        f"sources      {hap['mesos_fetches']} Mesos state fetches, {hap['marathon_events']} "
        "Marathon events",
        f"memory       RSS after {mem['warmup_s']:.0f} s warm-up: start {mem['rss_start_mb']} "
        f"MB, end {mem['rss_end_mb']} MB, max {mem['rss_max_mb']} MB, growth "
        f"{mem['rss_growth_mb']} MB ({mem['rss_growth_pct']}%), slope "
        f"{mem['rss_slope_mb_per_min']} MB/min",
        f"             open files {mem['fds_start']} -> {mem['fds_end']} (max {mem['fds_max']})"
        f"; daemon CPU {mem['cpu_s']} s",
        f"daemon       exit {d['exit_code']}; warnings {d['warning']}; errors {d['error']}",
    ]
    for ex in c["examples"]:
        lines.append(f"  wrong: {ex}")
    lines.append("OK" if r["ok"] else "FAILED: " + "; ".join(r["failures"]))
    return "\n".join(lines)
