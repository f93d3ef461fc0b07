"""The soak benchmark: its answer rules, and a short real run so it cannot rot."""

import asyncio
import json
import sys
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from benchmarks.soak_checker import Checker, ServedLog, answer_of
from benchmarks.soak_cluster import SoakCluster
from benchmarks.soak_final import backends_in
from discoveryd.sim.cluster import SimCluster

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak"
PROBE = ("web.marathon.mesos.", "A")
# Four states of one name; v3 repeats v2's answer (a health flip: no DNS change).
EXPECTED = {1: {PROBE: frozenset({"10.0.0.1"})}, 2: {PROBE: frozenset({"10.0.0.2"})},
            3: {PROBE: frozenset({"10.0.0.2"})}, 4: {PROBE: "NXDOMAIN"},
            5: {PROBE: frozenset({"10.0.0.5"})}}


def served_at(*pairs):
    log = ServedLog(EXPECTED.__getitem__)
    for at, version in pairs:
        log.note(version, at)
    return log


def judge(log, got, send, recv):
    c = Checker(0, [PROBE], log, EXPECTED.__getitem__, rate=1)
    c._judge(PROBE, got, send, recv)
    return dict(c.rules), dict(c.mismatches), c.examples


def test_served_log_folds_versions_that_change_no_answer():
    log = served_at((1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4))
    assert log.versions == [1, 2, 4] and log.times == [1.0, 2.0, 4.0]


def test_answers_of_the_current_or_previous_state_pass():
    log = served_at((1.0, 1), (2.0, 2), (4.0, 4))
    assert judge(log, "NXDOMAIN", 4.1, 4.2)[0] == {"current": 1}
    assert judge(log, frozenset({"10.0.0.2"}), 4.1, 4.2)[0] == {"previous": 1}


def test_versions_served_while_the_query_was_in_flight_pass():
    log = served_at((1.0, 1), (2.0, 2), (4.0, 4), (5.0, 5))
    # sent at 1.5 (v1 current, so v1 may still be answered), received at 5.5 (v5 current)
    assert judge(log, frozenset({"10.0.0.1"}), 1.5, 5.5)[0] == {"in_flight": 1}


def test_an_older_or_invented_answer_is_a_mismatch():
    log = served_at((1.0, 1), (2.0, 2), (4.0, 4), (5.0, 5))
    rules, wrong, examples = judge(log, frozenset({"10.0.0.1"}), 5.1, 5.2)
    assert rules == {} and wrong == {"stale by 3 versions": 1}
    assert examples[0]["expected"] == ["10.0.0.5"] and examples[0]["got"] == ["10.0.0.1"]
    assert judge(log, frozenset({"10.9.9.9"}), 5.1, 5.2)[1] == {"never expected": 1}
    assert judge(log, "NODATA", 5.1, 5.2)[1] == {"never expected": 1}


def test_fetch_lag_runs_from_a_change_to_the_first_state_that_includes_it():
    log = served_at((1.5, 1), (4.0, 4))
    assert log.fetch_lags({2: 2.5, 4: 3.0, 5: 6.0}) == [1.5, 1.0]  # v5 never served


def test_answer_of_reads_sets_and_rcodes():
    q = dns.message.make_query("_web._tcp.marathon.mesos.", "SRV")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("_web._tcp.marathon.mesos.", 60, "IN", "SRV",
                                        "0 1 31000 Web-x.marathon.slave.mesos."))
    assert answer_of(r, "SRV") == frozenset({(31000, "web-x.marathon.slave.mesos.")})
    r.answer.clear()
    assert answer_of(r, "SRV") == "NODATA"
    r.set_rcode(dns.rcode.SERVFAIL)
    assert answer_of(r, "SRV") == "rcode SERVFAIL"


def test_backends_in_reads_servers_per_backend():
    text = ("frontend f\n  bind 127.0.0.1:80\nbackend app0_11000\n  balance roundrobin\n"
            "  server a 127.0.1.11:31000 check\n  server b 127.0.1.12:31001\n"
            "backend empty_11001\n  balance roundrobin\n")
    assert backends_in(text) == {"app0_11000": frozenset({"127.0.1.11:31000",
                                                          "127.0.1.12:31001"})}


async def test_expected_answers_follow_the_simulated_cluster():
    sc = SoakCluster(SimCluster(agents=("127.0.1.11",)), apps=5, seed=7)
    sc.populate()
    for _ in range(30):
        sc.change()
    final = sc.expected[sc.cluster.version]
    for app_id in sc.pool:
        tasks = sc.marathon.apps.get(app_id, {}).get("tasks", [])
        name = app_id.strip("/").split("/")[::-1]
        a = final[("-".join(name) + ".marathon.mesos.", "A")]
        assert a == (frozenset({"127.0.1.11"}) if tasks else "NXDOMAIN")
    assert sum(sc.actions.values()) == 30 and len(sc.expected) == 31


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_soak_smoke_run_passes():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SOAK), "--seconds", "20", "--qps", "2000", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    report = json.loads(out)
    assert proc.returncode == 0, (report["failures"], err.decode()[-2000:])
    assert report["checker"]["mismatched"] == 0
    assert report["checker"]["checked"] > 1000
    assert report["changes"]["total"] >= 30 and report["changes"]["dns_states_served"] > 5
    assert report["dnsperf"]["completed"] > 20000
    assert report["haproxy"]["reloads_ok"] >= 1
