"""build_records on hand-made states: each record family, DiscoveryInfo, IPv6, odd names,
RFC 952, duplicates, long names, skipped items; and a property test of encodability."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from discoveryd.dns.records import build_records, hash_string
from discoveryd.dns.recordset import RecordSet
from discoveryd.sources.mesos_state import parse_master_state
from tests.fixture_files import load_json


def build(raw: dict[str, Any], **kw: Any) -> RecordSet:
    args: dict[str, Any] = dict(
        domain="mesos", masters=[], ip_sources=["netinfo", "mesos", "host"],
        enforce_rfc952=False, mname="ns1.mesos", listen_ips=[],
    )
    args.update(kw)
    return build_records(parse_master_state(raw), **args)


def lines(rs: RecordSet) -> set[str]:
    """Records as 'NAME TYPE DATA' strings, for table-style comparisons."""
    out = {f"{n} A {ip}" for n, v in rs.a.items() for ip in v}
    out |= {f"{n} AAAA {ip}" for n, v in rs.aaaa.items() for ip in v}
    out |= {f"{n} SRV {s.port} {s.target}" for n, v in rs.srv.items() for s in v}
    return out


def task(tid: str, name: str, slave: str = "ag-S1", **extra: Any) -> dict[str, Any]:
    t = {"id": tid, "name": name, "framework_id": "fw", "slave_id": slave,
         "state": "TASK_RUNNING", "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0}]}
    t.update(extra)
    return t


def state(tasks: list[dict[str, Any]], fw_name: str = "marathon", **fw: Any) -> dict[str, Any]:
    framework = {"id": "fw", "name": fw_name, "pid": "scheduler@10.0.0.2:8080", "tasks": tasks}
    framework.update(fw)
    return {"leader": "master@10.0.0.1:5050", "frameworks": [framework],
            "slaves": [{"id": "ag-S1", "hostname": "a1", "pid": "slave(1)@10.0.1.1:5051"},
                       {"id": "ag-S2", "hostname": "a2", "pid": "slave(1)@10.0.1.2:5051"}]}


def discovery() -> dict[str, Any]:
    return load_json("states/discovery.json")


def test_discovery_info_named_ports_and_protocols():
    rs = build(discovery(), resolve=lambda h: {"sched.example": "10.0.0.9",
                                                "agent13.example": "10.0.2.13"}.get(h, h))
    c1 = f"api-{hash_string('api.7c1')}-s12.my.framework-name.mesos."
    c2 = f"api-{hash_string('api.8d2')}-s13.my.framework-name.mesos."
    assert lines(rs) >= {
        "api.my.framework-name.mesos. A 9.0.0.7",
        "api.my.framework-name.mesos. AAAA fd00::7",
        f"{c1} A 9.0.0.7",
        f"{c1} AAAA fd00::7",
        "api.my.framework-name.slave.mesos. A 10.0.2.12",
        "api.my.framework-name.slave.mesos. A 10.0.2.13",
        f"_api._tcp.my.framework-name.mesos. SRV 8080 {c1}",
        f"_api._tcp.my.framework-name.mesos. SRV 8080 {c2}",
        f"_http._api._tcp.my.framework-name.mesos. SRV 8080 {c1}",
        f"_api._udp.my.framework-name.mesos. SRV 8125 {c1}",
        f"_stats-d._api._udp.my.framework-name.mesos. SRV 8125 {c1}",
        # no protocol given: both, and no port-name alias
        f"_api._tcp.my.framework-name.mesos. SRV 9000 {c1}",
        f"_api._udp.my.framework-name.mesos. SRV 9000 {c1}",
        # port resources of DiscoveryInfo tasks only under .slave
        f"_api._tcp.my.framework-name.slave.mesos. SRV 31500 {c1.replace('.mesos.', '.slave.mesos.')}",
        "my.framework-name.mesos. A 10.0.0.9",
        "_framework._tcp.my.framework-name.mesos. SRV 9000 my.framework-name.mesos.",
        "leader.mesos. AAAA 2001:db8::10",
        "_leader._tcp.mesos. SRV 5050 leader.mesos.",
    }
    assert "_http._api._udp.my.framework-name.mesos." not in rs.srv  # protocol-specific
    assert "_api._tcp.my.framework-name.mesos." in rs.srv
    assert not any(n.startswith("_api.") and ".slave." not in n and "_udp" in n and
                   any(s.port == 31500 for s in rs.srv[n]) for n in rs.srv)
    assert not any(n.startswith("old") for n in rs.names())  # TASK_FINISHED
    assert rs.skipped == ()


def test_hostname_agent_without_resolver_is_reported():
    rs = build(discovery())
    assert ("agent 2016-S13", "host 'agent13.example' does not resolve to an IP address") in rs.skipped
    assert ips_of(rs, "api.my.framework-name.slave.mesos.") == {"10.0.2.12"}


def ips_of(rs: RecordSet, name: str) -> set[str]:
    return set(rs.a.get(name, ())) | set(rs.aaaa.get(name, ()))


def test_duplicate_task_names_share_a_name_but_not_canonical_names():
    rs = build(state([
        task("web.1", "web", resources={"ports": "[31000-31000]"}),
        task("web.2", "web", slave="ag-S2", resources={"ports": "[31001-31001]"}),
    ]), ip_sources=["host"])
    assert rs.a["web.marathon.mesos."] == ("10.0.1.1", "10.0.1.2")
    c1, c2 = (f"web-{hash_string(t)}-{s}.marathon.mesos." for t, s in (("web.1", "s1"),
                                                                       ("web.2", "s2")))
    assert rs.a[c1] == ("10.0.1.1",) and rs.a[c2] == ("10.0.1.2",)
    assert {(s.target, s.port) for s in rs.srv["_web._tcp.marathon.mesos."]} == {
        (c1.replace(".mesos.", ".slave.mesos."), 31000),
        (c2.replace(".mesos.", ".slave.mesos."), 31001),
    }


def test_odd_framework_names():
    rs = build(state([task("t.1", "Some_Task")], fw_name="  Chronos  Jobs.V2 "), ip_sources=["host"])
    assert "some-task.chronosjobs.v2.mesos." in rs.a
    assert "chronosjobs.v2.mesos." in rs.a


def test_rfc952_truncates_and_strips_leading_digits():
    rs = build(state([task("t.1", "9lives-and-a-very-long-task-name-indeed")],
                     fw_name="2fast"), ip_sources=["host"], enforce_rfc952=True)
    assert "lives-and-a-very-long-ta.fast.mesos." in rs.a


def test_ip_sources_order_decides():
    raw = state([task("t.1", "web", statuses=[{
        "state": "TASK_RUNNING", "timestamp": 1.0,
        "labels": [{"key": "Docker.NetworkSettings.IPAddress", "value": "172.17.0.2"},
                   {"key": "MesosContainerizer.NetworkSettings.IPAddress", "value": "10.5.0.2"}],
        "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": "9.0.0.2"}]}]},
    }])])
    for sources, want in ((["docker", "mesos"], "172.17.0.2"), (["mesos", "docker"], "10.5.0.2"),
                          (["netinfo", "host"], "9.0.0.2"), (["host", "netinfo"], "10.0.1.1"),
                          (["autoip"], None)):
        rs = build(raw, ip_sources=sources)
        assert rs.a.get("web.marathon.mesos.") == ((want,) if want else None), sources


def test_autoip_follows_discovery_port_network_scope():
    def with_scope(scope: str) -> dict[str, Any]:
        return state([task("t.1", "web", discovery={"name": "web", "ports": {"ports": [
            {"number": 80, "protocol": "tcp", "labels": {"labels": [
                {"key": "network-scope", "value": scope}, {"key": "network-name", "value": "ov"}]}},
        ]}}, statuses=[{"state": "TASK_RUNNING", "timestamp": 1.0, "container_status": {
            "network_infos": [{"name": "other", "ip_addresses": [{"ip_address": "9.9.9.9"}]},
                              {"name": "ov", "ip_addresses": [{"ip_address": "9.0.0.5"}]}]}}])])

    assert build(with_scope("container"), ip_sources=["autoip"]).a["web.marathon.mesos."] == (
        "9.0.0.5",)
    assert build(with_scope("host"), ip_sources=["autoip"]).a["web.marathon.mesos."] == (
        "10.0.1.1",)
    assert "web.marathon.mesos." not in build(with_scope("weird"), ip_sources=["autoip"]).a


def test_bad_pid_framework_skipped_others_served():
    raw = state([task("t.1", "web")])
    raw["frameworks"].append({"id": "fw-bad", "name": "broken", "pid": "sched@nowhere",
                              "tasks": [task("b.1", "b")]})
    rs = build(raw, ip_sources=["host"])
    assert "web.marathon.mesos." in rs.a
    assert not any("broken" in n for n in rs.names())
    state_skips = parse_master_state(raw).skipped
    assert state_skips[0][0] == "framework fw-bad" and "bad pid" in state_skips[0][1]


def test_task_on_unknown_agent_and_nameless_task_are_reported():
    rs = build(state([task("t.1", "web", slave="gone"), task("t.2", "$$$")]), ip_sources=["host"])
    assert ("task t.1", "agent gone is not in the state") in rs.skipped
    assert ("task t.2", "name has no valid DNS characters") in rs.skipped
    assert not any(n.startswith(("web", "-")) for n in rs.names())


def test_long_names_are_shortened_deterministically():
    long_task = "t" * 63
    long_fw = ".".join(["f" * 63] * 2)
    raw = state([task("t.1", long_task, resources={"ports": "[31000-31000]"},
                      discovery={"name": long_task, "ports": {"ports": [
                          {"number": 80, "protocol": "tcp", "name": "p" * 63}]}})],
                fw_name=long_fw)
    rs1, rs2 = build(raw, ip_sources=["host"]), build(raw, ip_sources=["host"])
    assert rs1 == rs2
    assert_encodable(rs1)
    # The framework fragment is never shortened: the names it makes too long are left out.
    assert f"{long_fw}.mesos." in rs1.a
    assert any("longer than 255 bytes" in r for _, r in rs1.skipped)
    # "<63 t>-<hash>-s1" is cut to 57 chars + "-" + a hash of the whole label
    canonical = [n for n in rs1.a if n.startswith("t" * 57 + "-")]
    assert len(canonical) == 2  # plain and .slave
    assert all(len(n.split(".")[0]) == 63 for n in canonical)


def assert_encodable(rs: RecordSet) -> None:
    for name in rs.names() | {s.target for v in rs.srv.values() for s in v}:
        assert name == name.lower() and name.endswith(".")
        labels = name[:-1].split(".")
        assert all(0 < len(label) <= 63 for label in labels), name
        assert sum(len(label) + 1 for label in labels) + 1 <= 255, name


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=90)


@settings(max_examples=150, deadline=None)
@given(fw=names, task_name=names, di_name=names, port_name=names, proto=names,
       domain=st.sampled_from(["mesos", "a.b", "x" * 63 + ".example"]), rfc952=st.booleans())
def test_every_generated_name_is_encodable(fw, task_name, di_name, port_name, proto, domain,
                                           rfc952):
    tasks = [task("t.1", task_name, resources={"ports": "[31000-31001]"}),
             task("t.2", task_name, discovery={"name": di_name, "ports": {"ports": [
                 {"number": 80, "protocol": proto, "name": port_name}]}})]
    rs = build(state(tasks, fw_name=fw), domain=domain, ip_sources=["host"],
               enforce_rfc952=rfc952, masters=["10.0.0.1:5050"], mname="ns1." + domain,
               listen_ips=["10.0.0.53"])
    assert_encodable(rs)
