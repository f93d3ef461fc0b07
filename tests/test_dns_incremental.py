"""Incremental zone builds: reusing the answers of unchanged names gives, byte for byte, the
zone a build from scratch gives (every cached answer, every NODATA/NXDOMAIN decision)."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discoveryd.dns.answers import Answer
from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.dns.resolver import Zone, build_zone
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings

SETTINGS = DnsSettings()
# A small universe, so that random record sets share names, IPs and SRV targets. Some names
# are spelled non-canonically, lie outside the domain or are invalid: those paths too.
NAMES = ["a.mesos.", "b.mesos.", "c.x.mesos.", "d.x.mesos.", "_s._tcp.x.mesos.", "mesos.",
         "ns1.mesos.", "e.y.z.mesos.", "B.mesos", "out.example.", "bad..mesos."]
TARGETS = ["a.mesos.", "b.mesos.", "c.x.mesos.", "ns1.mesos.", "e.y.z.mesos.", "A.mesos.",
           "nowhere.mesos.", "out.example."]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.1", "300.0.0.1"]
IP6S = ["fd00::1", "fd00::2", "::ffff:10.0.0.1", "nope::x"]

ips = st.lists(st.sampled_from(IPS), min_size=1, max_size=4).map(tuple)
ip6s = st.lists(st.sampled_from(IP6S), min_size=1, max_size=3).map(tuple)
srvs = st.lists(st.builds(Srv, st.sampled_from(TARGETS), st.sampled_from([80, 31000, 70000])),
                min_size=1, max_size=12).map(tuple)
names = st.sampled_from(NAMES)
record_sets = st.builds(RecordSet, st.dictionaries(names, ips), st.dictionaries(names, ip6s),
                        st.dictionaries(names, srvs))
# A change: per map, names to drop and names to (re)set.
edits = st.tuples(*(st.tuples(st.sets(names), st.dictionaries(names, values))
                    for values in (ips, ip6s, srvs)))


def edited(rs: RecordSet, edit) -> RecordSet:
    maps = []
    for m, (drop, put) in zip((rs.a, rs.aaaa, rs.srv), edit, strict=True):
        maps.append({**{k: v for k, v in m.items() if k not in drop}, **put})
    return RecordSet(*maps)


def answer_forms(answer: Answer) -> tuple:
    """Everything a client can receive from `answer`, whatever the rotation state."""
    forms = [answer.rcode_name, answer.heads_plain, answer.heads_edns, answer.max_plain,
             answer.max_edns, tuple(answer.tails_plain), tuple(answer.tails_edns)]
    for size in (512, 1232, 4096):
        for edns in (False, True):
            forms.append(tuple(answer.variants(size, edns, 1)))
    return tuple(forms)


def query(name: str, qtype: str) -> bytes:
    return dns.message.make_query(name, qtype, id=4242, use_edns=0).to_wire()


def key(name: str, qtype: str) -> bytes:
    """The answer cache key: the question (wire name, type, class IN)."""
    q = query(name, qtype)
    return q[12:q.index(0, 12) + 5]


def assert_same(got: Zone, want: Zone, *record_sets: RecordSet) -> None:
    assert got.cache.keys() == want.cache.keys()
    for k in want.cache:
        assert answer_forms(got.cache[k]) == answer_forms(want.cache[k]), k
    assert set(got.names) == set(want.names)
    assert got.soa_rr == want.soa_rr
    # Every name ever served and each of its parents, for types cached or not: same bytes.
    asked = {"mesos.", "nothing.mesos.", "zz.x.mesos."}
    for rs in record_sets:
        for name in rs.names():
            labels = name.rstrip(".").split(".")
            asked.update(".".join(labels[i:]) + "." for i in range(len(labels)) if all(labels[i:]))
    for name in sorted(asked):
        for qtype in ("A", "AAAA", "SRV", "ANY", "SOA", "NS", "TXT"):
            q = query(name, qtype)
            if key(name, qtype).lower() not in got.cache:  # cached answers rotate; compared above
                assert got.answer(q) == want.answer(q), (name, qtype)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_sets, edits, edits)
def test_incremental_equals_scratch(base: RecordSet, edit1, edit2) -> None:
    zone_a, skipped_a = build_zone(base, SETTINGS, 1)
    second, third = edited(base, edit1), edited(edited(base, edit1), edit2)
    zone_b, skipped_b = build_zone(second, SETTINGS, 2, zone_a)
    scratch_b, want_b = build_zone(second, SETTINGS, 2)
    assert skipped_b == want_b
    assert_same(zone_b, scratch_b, base, second)
    zone_c, skipped_c = build_zone(third, SETTINGS, 3, zone_b)
    scratch_c, want_c = build_zone(third, SETTINGS, 3)
    assert skipped_c == want_c
    assert_same(zone_c, scratch_c, base, second, third)


def test_unchanged_names_keep_their_answers_and_changed_targets_are_rebuilt() -> None:
    base = RecordSet(a={"t1.mesos.": ("10.0.0.1",), "t2.mesos.": ("10.0.0.2",),
                        "other.mesos.": ("10.0.0.9",)},
                     srv={"_web._tcp.mesos.": (Srv("t1.mesos.", 80),),
                          "_db._tcp.mesos.": (Srv("t2.mesos.", 80),)})
    zone_a, _ = build_zone(base, SETTINGS, 1)
    moved = RecordSet(a={**base.a, "t1.mesos.": ("10.0.0.5",)}, srv=base.srv)
    zone_b, _ = build_zone(moved, SETTINGS, 2, zone_a)
    other = key("other.mesos.", "A")
    assert zone_b.cache[other] is zone_a.cache[other]
    db = key("_db._tcp.mesos.", "SRV")
    assert zone_b.cache[db] is zone_a.cache[db]
    web = key("_web._tcp.mesos.", "SRV")  # its additional section holds t1's address
    assert zone_b.cache[web] is not zone_a.cache[web]
    reply = dns.message.from_wire(zone_b.answer(query("_web._tcp.mesos.", "SRV"))[0])
    assert [rr.to_text() for rr in reply.additional[0]] == ["10.0.0.5"]
    assert_same(zone_b, build_zone(moved, SETTINGS, 2)[0], base, moved)


def test_serial_is_fresh_in_reused_zones() -> None:
    rs = RecordSet(a={"web.mesos.": ("10.0.0.1",)})
    zone_a, _ = build_zone(rs, SETTINGS, 7)
    zone_b, _ = build_zone(rs, SETTINGS, 8, zone_a)
    for name, qtype in (("mesos.", "SOA"), ("nope.mesos.", "A"), ("web.mesos.", "TXT")):
        reply = dns.message.from_wire(zone_b.answer(query(name, qtype))[0])
        soa = (reply.answer or reply.authority)[0][0]
        assert soa.serial == 8, (name, qtype)


def test_removed_names_become_nxdomain_and_parents_nodata() -> None:
    rs = RecordSet(a={"t.app.marathon.mesos.": ("10.0.0.1",), "u.marathon.mesos.": ("10.0.0.2",)})
    zone_a, _ = build_zone(rs, SETTINGS, 1)
    zone_b, _ = build_zone(RecordSet(a={"u.marathon.mesos.": ("10.0.0.2",)}), SETTINGS, 2, zone_a)
    rcodes = {name: dns.message.from_wire(zone_b.answer(query(name, "A"))[0]).rcode()
              for name in ("t.app.marathon.mesos.", "app.marathon.mesos.", "marathon.mesos.")}
    assert rcodes == {"t.app.marathon.mesos.": dns.rcode.NXDOMAIN,
                      "app.marathon.mesos.": dns.rcode.NXDOMAIN,
                      "marathon.mesos.": dns.rcode.NOERROR}


def test_changed_settings_rebuild_everything() -> None:
    rs = RecordSet(a={"web.mesos.": ("10.0.0.1",)}, srv={"_w._tcp.mesos.": (Srv("web.mesos.", 1),)})
    zone_a, _ = build_zone(rs, SETTINGS, 1)
    other = DnsSettings(ttl=5, external=False)
    zone_b, _ = build_zone(rs, other, 2, zone_a)
    assert_same(zone_b, build_zone(rs, other, 2)[0], rs)
    reply = dns.message.from_wire(zone_b.answer(query("web.mesos.", "A"))[0])
    assert reply.answer[0].ttl == 5


async def test_server_update_serves_the_new_record_set_with_an_empty_hot_table() -> None:
    server = DnsServer(DnsSettings(listen=["127.0.0.1:0"], external=False), Metrics(),
                       resolv_conf="/nonexistent")
    await server.start()
    try:
        server.update(RecordSet(a={"web.mesos.": ("10.0.0.1",), "db.mesos.": ("10.0.0.9",)}))
        host, port = server.addresses[0]
        q = dns.message.make_query("web.mesos.", "A")
        first = await dns.asyncquery.udp(q, host, port=port, timeout=10)
        assert first.answer[0][0].address == "10.0.0.1"
        server.update(RecordSet(a={"web.mesos.": ("10.0.0.2",), "db.mesos.": ("10.0.0.9",)}))
        assert server.zone.hot == {}
        for _ in range(3):  # the second query of the same bytes would come from the hot table
            reply = await dns.asyncquery.udp(q, host, port=port, timeout=10)
            assert [rr.address for rr in reply.answer[0]] == ["10.0.0.2"]
        gone = await dns.asyncquery.udp(dns.message.make_query("db.mesos.", "AAAA"), host,
                                        port=port, timeout=10)
        assert gone.rcode() == dns.rcode.NOERROR and not gone.answer
        assert gone.authority[0].rdtype == dns.rdatatype.SOA
    finally:
        await server.stop()
