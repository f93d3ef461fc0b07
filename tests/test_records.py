"""build_records against mesos-dns's own expectations (records/generator_test.go on
factories/fake.json) and hand-made states for every record family."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from discoveryd.dns.records import build_records, hash_string, slave_id_tail
from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.sources.mesos_state import parse_master_state
from tests.fixture_files import load_json

FAKE = load_json("mesos-state-fake.json")


def build(raw: dict[str, Any], **kw: Any) -> RecordSet:
    args: dict[str, Any] = dict(
        domain="mesos", masters=["144.76.157.37:5050"], ip_sources=["netinfo", "mesos", "host"],
        enforce_rfc952=False, mname="mesos-dns.mesos.", listen_ips=["127.0.0.1"],
    )
    args.update(kw)
    return build_records(parse_master_state(raw), **args)


def fake(ip_sources: list[str], **kw: Any) -> RecordSet:
    raw = copy.deepcopy(FAKE)
    raw["leader"] = "master@144.76.157.37:5050"  # as generator_test.go does
    return build(raw, ip_sources=ip_sources, enforce_rfc952=True, **kw)


def srvs(rs: RecordSet, name: str) -> set[str]:
    return {f"{s.target}:{s.port}" for s in rs.srv.get(name, ())}


def ips(rs: RecordSet, name: str) -> set[str]:
    return set(rs.a.get(name, ())) | set(rs.aaaa.get(name, ()))


def test_hash_string_matches_mesos_dns():
    assert hash_string("test") == "iffe9"  # generator_test.go TestHashString
    assert slave_id_tail("20140803-125133-3041283216-5050-2410-S12") == "s12"


# (ip_sources, table, name, want) from generator_test.go TestInsertState. The one
# deliberate difference: our fixture (a later fake.json) lists network 12.0.1.3 before
# 12.0.1.2, and mesos-dns takes the first IPv4 in source order, so netinfo gives 12.0.1.3.
ALL = ["netinfo", "docker", "mesos", "host"]
INSERT_STATE = [
    (ALL, "a", "big-dog.marathon.mesos.", {"10.3.0.1"}),
    (ALL, "a", "liquor-store.marathon.mesos.", {"10.3.0.1", "10.3.0.2"}),
    (ALL, "a", "liquor-store.marathon.slave.mesos.", {"1.2.3.11", "1.2.3.12"}),
    (ALL, "a", "car-store.marathon.slave.mesos.", {"1.2.3.11"}),
    (ALL, "a", "nginx.marathon.mesos.", {"10.3.0.3"}),
    (ALL, "a", "poseidon.marathon.mesos.", set()),
    (ALL, "a", "poseidon.marathon.slave.mesos.", set()),
    (ALL, "a", "master.mesos.", {"144.76.157.37"}),
    (ALL, "a", "master0.mesos.", {"144.76.157.37"}),
    (ALL, "a", "leader.mesos.", {"144.76.157.37"}),
    (ALL, "a", "slave.mesos.", {"1.2.3.10", "1.2.3.11", "1.2.3.12"}),
    (ALL, "a", "some-box.chronoswithaspaceandmixe.mesos.", {"1.2.3.11"}),
    (ALL, "a", "marathon.mesos.", {"1.2.3.11"}),
    (ALL, "aaaa", "toy-store.ipv6-framework.mesos.", {"fd01:b::1:8000:2"}),
    (ALL, "aaaa", "toy-store.ipv6-framework.slave.mesos.", {"2001:db8::1"}),
    (ALL, "aaaa", "ipv6-framework.mesos.", {"2001:db8::1"}),
    (ALL, "aaaa", "slave.mesos.", {"2001:db8::1"}),
    (ALL, "srv", "_big-dog._tcp.marathon.mesos.",
     {"big-dog-4dfjd-0.marathon.mesos.:80", "big-dog-4dfjd-0.marathon.mesos.:443"}),
    (ALL, "srv", "_poseidon._tcp.marathon.mesos.", set()),
    (ALL, "srv", "_leader._tcp.mesos.", {"leader.mesos.:5050"}),
    (ALL, "srv", "_liquor-store._tcp.marathon.mesos.", {
        "liquor-store-4dfjd-0.marathon.mesos.:80", "liquor-store-4dfjd-0.marathon.mesos.:443",
        "liquor-store-zasmd-1.marathon.mesos.:80", "liquor-store-zasmd-1.marathon.mesos.:443"}),
    (ALL, "srv", "_liquor-store._udp.marathon.mesos.", set()),
    (ALL, "srv", "_liquor-store.marathon.mesos.", set()),
    (ALL, "srv", "_https._liquor-store._tcp.marathon.mesos.", {
        "liquor-store-4dfjd-0.marathon.mesos.:443", "liquor-store-zasmd-1.marathon.mesos.:443"}),
    (ALL, "srv", "_http._liquor-store._tcp.marathon.mesos.", {
        "liquor-store-4dfjd-0.marathon.mesos.:80", "liquor-store-zasmd-1.marathon.mesos.:80"}),
    (ALL, "srv", "_car-store._tcp.marathon.mesos.", {
        "car-store-zinaz-0.marathon.slave.mesos.:31364",
        "car-store-zinaz-0.marathon.slave.mesos.:31365"}),
    (ALL, "srv", "_car-store._udp.marathon.mesos.", {
        "car-store-zinaz-0.marathon.slave.mesos.:31364",
        "car-store-zinaz-0.marathon.slave.mesos.:31365"}),
    (ALL, "srv", "_slave._tcp.mesos.", {"slave.mesos.:5051"}),
    (ALL, "srv", "_framework._tcp.marathon.mesos.", {"marathon.mesos.:25501"}),
    (["host"], "a", "liquor-store.marathon.mesos.", {"1.2.3.11", "1.2.3.12"}),
    (["host"], "a", "liquor-store.marathon.slave.mesos.", {"1.2.3.11", "1.2.3.12"}),
    (["host"], "a", "nginx.marathon.mesos.", {"1.2.3.11"}),
    (["host"], "a", "car-store.marathon.slave.mesos.", {"1.2.3.11"}),
    (["host"], "aaaa", "toy-store.ipv6-framework.mesos.", {"2001:db8::1"}),
    (["host"], "aaaa", "toy-store.ipv6-framework.slave.mesos.", {"2001:db8::1"}),
    (["mesos", "host"], "a", "liquor-store.marathon.mesos.", {"1.2.3.11", "1.2.3.12"}),
    (["mesos", "host"], "a", "nginx.marathon.mesos.", {"10.3.0.3"}),
    (["mesos", "host"], "a", "car-store.marathon.slave.mesos.", {"1.2.3.11"}),
    (["mesos", "host"], "aaaa", "toy-store.ipv6-framework.mesos.", {"2001:db8::1"}),
    (["netinfo"], "a", "toy-store.ipv6-framework.mesos.", {"12.0.1.3"}),
    (["netinfo"], "aaaa", "toy-store.ipv6-framework.mesos.", {"fd01:b::1:8000:2"}),
    (["netinfo"], "aaaa", "toy-store.ipv6-framework.slave.mesos.", {"2001:db8::1"}),
    (["docker", "host"], "a", "liquor-store.marathon.mesos.", {"10.3.0.1", "10.3.0.2"}),
    (["docker", "host"], "a", "liquor-store.marathon.slave.mesos.", {"1.2.3.11", "1.2.3.12"}),
    (["docker", "host"], "a", "nginx.marathon.mesos.", {"1.2.3.11"}),
    (["docker", "host"], "aaaa", "toy-store.ipv6-framework.mesos.", {"2001:db8::1"}),
]


@pytest.mark.parametrize("sources, table, name, want", INSERT_STATE)
def test_fake_state_matches_mesos_dns(sources, table, name, want):
    rs = fake(sources)
    got = srvs(rs, name) if table == "srv" else set(getattr(rs, table).get(name, ()))
    assert got == want


def test_fake_state_slave_srvs_and_legacy_discovery_name():
    rs = fake(ALL)
    # port resources of a task with DiscoveryInfo: only under .slave, on the agent name
    assert srvs(rs, "_liquor-store._udp.marathon.slave.mesos.") == {
        "liquor-store-4dfjd-0.marathon.slave.mesos.:31354",
        "liquor-store-4dfjd-0.marathon.slave.mesos.:31355",
        "liquor-store-zasmd-1.marathon.slave.mesos.:31737",
        "liquor-store-zasmd-1.marathon.slave.mesos.:31738",
    }
    # mesos-dns's legacy records under the raw DiscoveryInfo name "liquor.store"
    assert ips(rs, "liquor.store.marathon.mesos.") == {"10.3.0.1", "10.3.0.2"}
    assert srvs(rs, "_http._liquor.store._tcp.marathon.mesos.") == {
        "liquor.store-4dfjd-0.marathon.mesos.:80", "liquor.store-zasmd-1.marathon.mesos.:80"}
    assert ips(rs, "mesos-dns.mesos.") == {"127.0.0.1"}
    assert srvs(rs, "_master._tcp.mesos.") == {"master0.mesos.:5050"}
    assert srvs(rs, "_leader._udp.mesos.") == {"leader.mesos.:5050"}


def test_fake_state_unresolvable_framework_is_reported():
    rs = fake(ALL)
    assert ("framework 20140703-014514-3041283216-5050-5348-0002",
            "host 'localhost' does not resolve to an IP address") in rs.skipped
    with_resolver = fake(ALL, resolve=lambda h: {"localhost": "127.0.0.1"}.get(h, h))
    assert ips(with_resolver, "nopid.mesos.") == {"127.0.0.1"}
    assert "_framework._tcp.nopid.mesos." not in with_resolver.srv  # no pid, no port


def test_rfc1123_default_keeps_long_framework_label():
    raw = copy.deepcopy(FAKE)
    rs = build(raw, ip_sources=ALL)
    name = "some-box.chronos-with-a-space-and-mixed-case-2-0-1.mesos."
    assert name not in rs.a  # spaces are dropped, not turned into '-'
    assert ips(rs, "some-box.chronoswithaspaceandmixedcase-2.0.1.mesos.") == {"1.2.3.11"}
    assert ips(rs, "leader.mesos.") == {"1.2.3.4"}


# masterRecord cases from generator_test.go TestMasterRecord: (masters, leader, expected)
MASTER_CASES = [
    ([], "5@0.0.0.6:7", {"leader": {"0.0.0.6"}, "master": {"0.0.0.6"}, "master0": {"0.0.0.6"}}),
    ([], "5@[2001:db8::1]:7",
     {"leader": {"2001:db8::1"}, "master": {"2001:db8::1"}, "master0": {"2001:db8::1"}}),
    (["0.0.0.6:7"], "5@0.0.0.6:7",
     {"leader": {"0.0.0.6"}, "master": {"0.0.0.6"}, "master0": {"0.0.0.6"}}),
    (["0.0.0.8:9"], "5@0.0.0.6:7", {"leader": {"0.0.0.6"}, "master": {"0.0.0.6", "0.0.0.8"},
                                    "master0": {"0.0.0.8"}, "master1": {"0.0.0.6"}}),
    (["0.0.0.8:9", "0.0.0.8:9"], "5@0.0.0.6:7",
     {"leader": {"0.0.0.6"}, "master": {"0.0.0.6", "0.0.0.8"},
      "master0": {"0.0.0.8"}, "master1": {"0.0.0.6"}}),
    (["0.0.0.8:9", "0.0.0.6:7"], "5@0.0.0.6:7",
     {"leader": {"0.0.0.6"}, "master": {"0.0.0.6", "0.0.0.8"},
      "master0": {"0.0.0.8"}, "master1": {"0.0.0.6"}}),
    (["0.0.0.8:9", "0.0.0.6:7", "0.0.0.6:7"], "5@0.0.0.6:7",
     {"leader": {"0.0.0.6"}, "master": {"0.0.0.6", "0.0.0.8"},
      "master0": {"0.0.0.8"}, "master1": {"0.0.0.6"}}),
    (["0.0.0.8:9", "0.0.0.6:7", "0.0.0.7:0"], "5@0.0.0.6:7",
     {"leader": {"0.0.0.6"}, "master": {"0.0.0.6", "0.0.0.7", "0.0.0.8"},
      "master0": {"0.0.0.8"}, "master1": {"0.0.0.6"}, "master2": {"0.0.0.7"}}),
    (["0.0.0.8:9", "0.0.0.6:7", "[2001:db8::1]:0"], "5@0.0.0.6:7",
     {"leader": {"0.0.0.6"}, "master": {"0.0.0.6", "0.0.0.8", "2001:db8::1"},
      "master0": {"0.0.0.8"}, "master1": {"0.0.0.6"}, "master2": {"2001:db8::1"}}),
]


@pytest.mark.parametrize("masters, leader, expected", MASTER_CASES)
def test_master_records(masters, leader, expected):
    rs = build({"leader": leader}, domain="foo.com", masters=masters, listen_ips=[])
    got = {n.removesuffix(".foo.com."): ips(rs, n) for n in set(rs.a) | set(rs.aaaa)}
    assert got == expected
    assert srvs(rs, "_leader._tcp.foo.com.") == {"leader.foo.com.:7"}
    assert srvs(rs, "_leader._udp.foo.com.") == {"leader.foo.com.:7"}
    assert {s.target for s in rs.srv["_master._tcp.foo.com."]} == {
        f"{n}.foo.com." for n in expected if n.startswith("master") and n != "master"}


def test_masters_by_hostname_resolve():
    table = {"m1.example": "10.0.0.1", "m2.example": "10.0.0.2"}
    rs = build({"leader": "master@m2.example:5050"}, masters=["m1.example:5050", "m2.example:5050",
               "gone.example:5050"], resolve=lambda h: table.get(h), listen_ips=[])
    assert ips(rs, "leader.mesos.") == {"10.0.0.2"}
    assert rs.a["master0.mesos."] == ("10.0.0.1",) and rs.a["master1.mesos."] == ("10.0.0.2",)
    assert "master2.mesos." not in rs.a  # the leader was in the list: no extra entry
    assert ("master gone.example:5050",
            "host 'gone.example' does not resolve to an IP address") in rs.skipped


def test_listener_records_ipv4_and_ipv6():
    rs = build({"leader": "m@10.0.0.1:5050"}, mname="NS1.Mesos", listen_ips=["10.0.0.53", "fd00::53",
               "bogus"])
    assert rs.a["ns1.mesos."] == ("10.0.0.53",) and rs.aaaa["ns1.mesos."] == ("fd00::53",)
    assert ("listener bogus", "not an IP address") in rs.skipped


def test_output_is_deterministic_and_input_untouched():
    raw = copy.deepcopy(FAKE)
    state = parse_master_state(raw)
    kw: dict[str, Any] = dict(domain="mesos", masters=[], ip_sources=ALL, enforce_rfc952=False,
                              mname="ns1.mesos", listen_ips=[])
    assert build_records(state, **kw) == build_records(state, **kw)
    assert raw == FAKE


def test_names_are_lowercase_and_fully_qualified():
    rs = fake(ALL)
    for name in rs.names():
        assert name == name.lower() and name.endswith(".mesos.") and ".." not in name
    for targets in rs.srv.values():
        for s in targets:
            assert isinstance(s, Srv) and s.target.endswith(".") and s.target == s.target.lower()
