"""Records mesos-dns (records/generator.go) serves that discoveryd used to leave out or
rename: raw DiscoveryInfo names (its LEGACY pass), long framework names, port 0."""

from __future__ import annotations

from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from discoveryd.dns.records import hash_string
from discoveryd.dns.resolver import build_zone
from discoveryd.settings import DnsSettings
from tests.test_records_families import build, lines, state, task

ID = "app.1"
H = hash_string(ID)


def di_task(name: str, *ports: dict[str, Any], resources: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"discovery": {"name": name, "ports": {"ports": list(ports)}}}
    if resources:
        extra["resources"] = {"ports": resources}
    return task(ID, "ignored", **extra)


def test_raw_discovery_name_with_underscore_gets_every_legacy_record() -> None:
    # taskRecord runs taskContextRecord for the raw name, then for spec(name): each pass
    # inserts A (task and .slave, plain and canonical), port-resource SRVs under .slave and
    # DiscoveryInfo SRVs (per protocol, and with the named-port prefix).
    raw = state([di_task("my_svc", {"number": 80, "protocol": "tcp", "name": "HTTP_Main"},
                         resources="[31000-31000]")])
    got = lines(build(raw, ip_sources=["host"]))
    for name in ("my_svc", "my-svc"):
        canon = f"{name}-{H}-s1"
        assert got >= {
            f"{name}.marathon.mesos. A 10.0.1.1",
            f"{canon}.marathon.mesos. A 10.0.1.1",
            f"{name}.marathon.slave.mesos. A 10.0.1.1",
            f"{canon}.marathon.slave.mesos. A 10.0.1.1",
            f"_{name}._tcp.marathon.slave.mesos. SRV 31000 {canon}.marathon.slave.mesos.",
            f"_{name}._udp.marathon.slave.mesos. SRV 31000 {canon}.marathon.slave.mesos.",
            f"_{name}._tcp.marathon.mesos. SRV 80 {canon}.marathon.mesos.",
            f"_http-main._{name}._tcp.marathon.mesos. SRV 80 {canon}.marathon.mesos.",
        }, name
        # With DiscoveryInfo, port resources are not published at the top level.
        assert not any(r.startswith(f"_{name}._tcp.marathon.mesos. SRV 31000") for r in got)


@pytest.mark.parametrize("raw_name, served", [
    ("-web-", True), ("a_b.c_d", True), ("web+1", True),  # all three askable in mesos-dns
    ("MySvc", False),  # its resolver lower-cases the question: never matches
    ("a..b", False), ("x" * 64, False), ("sp ace", False), ("caf\u00e9", False),
])
def test_which_raw_names_are_served(raw_name: str, served: bool) -> None:
    rs = build(state([di_task(raw_name, {"number": 80, "protocol": "tcp"})]),
               ip_sources=["host"])
    assert (f"{raw_name}.marathon.mesos." in rs.a) is served
    assert any("raw DiscoveryInfo name" in r for _, r in rs.skipped) is not served


def test_dns_answers_names_with_underscores_in_any_label() -> None:
    raw = state([di_task("my_svc", {"number": 80, "protocol": "tcp", "name": "http"})])
    zone, skipped = build_zone(build(raw, ip_sources=["host"]), DnsSettings(external=False), 1)
    assert skipped == []
    for qname, qtype, want in (
        ("my_svc.marathon.mesos.", "A", "10.0.1.1"),
        ("MY_SVC.Marathon.mesos.", "A", "10.0.1.1"),  # any case, as any name
        (f"my_svc-{H}-s1.marathon.mesos.", "A", "10.0.1.1"),
        ("_my_svc._tcp.marathon.mesos.", "SRV", f"my_svc-{H}-s1.marathon.mesos."),
        ("_http._my_svc._tcp.marathon.mesos.", "SRV", f"my_svc-{H}-s1.marathon.mesos."),
    ):
        out, _, rcode = zone.answer(bytes(DNSRecord.question(qname, qtype).pack()))
        assert isinstance(out, bytes) and rcode == "NOERROR", (qname, rcode)
        reply = DNSRecord.parse(out)
        assert reply.header.rcode == RCODE.NOERROR
        rdata = {str(rr.rdata.target if rr.rtype == QTYPE.SRV else rr.rdata) for rr in reply.rr}
        assert rdata == {want}, (qname, rdata)


LONG_FW = "team-" + "a" * 50 + ".prod-" + "b" * 50  # 112 bytes, two valid labels


def test_a_long_framework_name_is_served_unchanged_when_names_fit() -> None:
    rs = build(state([task("t1", "web")], fw_name=LONG_FW), ip_sources=["host"])
    assert not any("framework" in w for w, _ in rs.skipped), rs.skipped
    assert lines(rs) >= {
        f"{LONG_FW}.mesos. A 10.0.0.2",
        f"web.{LONG_FW}.mesos. A 10.0.1.1",
        f"web-{hash_string('t1')}-s1.{LONG_FW}.slave.mesos. A 10.0.1.1",
        f"_framework._tcp.{LONG_FW}.mesos. SRV 8080 {LONG_FW}.mesos.",
    }


def test_only_the_names_over_255_bytes_are_left_out() -> None:
    fw = ".".join(["f" * 60] * 3)  # 182 bytes: the framework's own names fit
    rs = build(state([task("t1", "w" * 60)], fw_name=fw), ip_sources=["host"])
    assert f"{fw}.mesos." in rs.a and f"_framework._tcp.{fw}.mesos." in rs.srv
    assert f"{'w' * 60}.{fw}.mesos." in rs.a  # 250 bytes with the trailing dot
    assert f"{'w' * 60}.{fw}.slave.mesos." not in rs.a  # 256
    assert any("longer than 255 bytes" in r for _, r in rs.skipped)


def test_a_framework_label_over_63_bytes_is_cut_as_mesos_dns_cuts_it() -> None:
    # labels.DomainFrag runs every part through RFC1123, which cuts at 63 bytes.
    rs = build(state([task("t1", "web")], fw_name="x" * 70 + ".prod"), ip_sources=["host"])
    assert f"web.{'x' * 63}.prod.mesos." in rs.a


def test_discovery_port_0_gets_its_srv_records_and_the_task_all_the_rest() -> None:
    # generator.go: target := canonical + tail + ":" + strconv.Itoa(port.Number), any number.
    raw = state([di_task("grp.web", {"number": 0, "protocol": "tcp", "name": "zero"},
                         resources="[31000-31000]")])
    canon = f"grp.web-{H}-s1.marathon.mesos."
    assert lines(build(raw, ip_sources=["host"])) >= {
        "grp.web.marathon.mesos. A 10.0.1.1",
        f"{canon} A 10.0.1.1",
        f"_grp.web._tcp.marathon.mesos. SRV 0 {canon}",
        f"_zero._grp.web._tcp.marathon.mesos. SRV 0 {canon}",
        f"_grp.web._tcp.marathon.slave.mesos. SRV 31000 grp.web-{H}-s1.marathon.slave.mesos.",
    }


def test_agent_and_framework_hostnames_use_one_ipv4_and_one_ipv6() -> None:
    # hostToIPs: an agent/framework hostname gives A and AAAA records, and both are the
    # agent's addresses for .slave names and the "host" IP source.
    hosts = {"agent.example": ("10.0.1.7", "fd00::7"), "sched.example": ("10.0.0.9", "fd00::9")}
    raw = state([task("t1", "web")], pid="scheduler@sched.example:8080")
    raw["slaves"][0]["pid"] = "slave(1)@agent.example:5051"
    rs = build(raw, ip_sources=["host"], resolve=lambda h: hosts.get(h, h))
    canon = f"web-{hash_string('t1')}-s1.marathon"
    assert lines(rs) >= {
        "slave.mesos. A 10.0.1.7", "slave.mesos. AAAA fd00::7",
        "marathon.mesos. A 10.0.0.9", "marathon.mesos. AAAA fd00::9",
        "web.marathon.mesos. A 10.0.1.7", "web.marathon.mesos. AAAA fd00::7",
        f"{canon}.slave.mesos. A 10.0.1.7", f"{canon}.slave.mesos. AAAA fd00::7",
        "web.marathon.slave.mesos. AAAA fd00::7",
    }
    assert len(rs.srv["_slave._tcp.mesos."]) == 1  # one per agent, not per address
