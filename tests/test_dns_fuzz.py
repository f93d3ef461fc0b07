"""DNS fuzzing in-process: the query function's contract for any bytes (hypothesis over
random bytes and over the seeded hostile-packet generator), and the expected rcode for
each kind of nasty packet. The same packets against a real process: test_dns_fuzz_process.py.
"""

from __future__ import annotations

import random
import tracemalloc

import dns.asyncquery
import dns.message
import dns.opcode
import dns.rcode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discoveryd.dns import resolver
from discoveryd.dns.answers import MAX_UDP
from discoveryd.dns.resolver import build_zone
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from tests import dns_contract
from tests.dns_contract import check_against_query
from tests.fakes.dns_packets import Packets, query
from tests.fakes.upstream_dns import FakeUpstream
from tests.test_dns_server import record_set

RECORDS = record_set()
ZONE, _ = build_zone(RECORDS, DnsSettings(external=False), 1)
FORWARDING, _ = build_zone(RECORDS, DnsSettings(external=True), 1)
QUESTIONS = [("web.marathon.mesos.", 1), ("_web._tcp.marathon.mesos.", 33),
             ("_big._tcp.marathon.mesos.", 33), ("v6.marathon.mesos.", 28), ("mesos.", 6),
             ("nope.marathon.mesos.", 1), ("example.com.", 1)]
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_contract(data: bytes, tcp: bool, zone: resolver.Zone = ZONE) -> dns.message.Message | None:
    return dns_contract.check_contract(zone, data, tcp)


@FUZZ
@given(st.integers(0, 2**32))
def test_any_generated_packet_keeps_the_contract(seed):
    data = Packets(seed, QUESTIONS).next()
    for tcp in (False, True):
        check_against_query(data, check_contract(data, tcp), tcp)
        check_contract(data, tcp, FORWARDING)


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_any_bytes_keep_the_contract(data, tcp):
    check_against_query(data, check_contract(data, tcp), tcp)
    check_contract(data, tcp, FORWARDING)


def rcode_of(data: bytes, tcp: bool = False) -> str:
    msg = check_contract(data, tcp)
    assert msg is not None
    return dns.rcode.to_text(msg.rcode())


def test_names_longer_than_255_bytes_get_formerr():
    name = ".".join(["a" * 63] * 4) + ".mesos."  # 4 * 64 + 7 = 263 bytes on the wire
    for edns in (None, 1232):
        assert rcode_of(query(name, edns=edns)) == "FORMERR"
    assert rcode_of(query(".".join(["a" * 63] * 3) + ".mesos.")) == "NXDOMAIN"


def test_other_opcodes_get_notimp_with_their_opcode():
    for opcode in (dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE):
        q = bytearray(query("web.marathon.mesos."))
        q[2] |= opcode << 3
        msg = check_contract(bytes(q), False)
        assert msg is not None and msg.opcode() == opcode and msg.rcode() == dns.rcode.NOTIMP


def test_udp_answers_never_exceed_max_udp():
    """A client may offer up to 65535 bytes; over UDP we send at most MAX_UDP (the SRV
    answer fits, part of its additional section does not)."""
    big = len(RECORDS.srv["_big._tcp.marathon.mesos."])
    for size in (4096, 4097, 65535):
        msg = check_contract(query("_big._tcp.marathon.mesos.", 33, edns=size), False)
        assert msg is not None and len(msg.to_wire()) <= MAX_UDP
        assert len(msg.answer[0]) == big and 0 < len(msg.additional) < big
    full = check_contract(query("_big._tcp.marathon.mesos.", 33, edns=65535), True)
    assert full is not None and len(full.additional) == big


def test_nasty_packets_get_the_expected_rcode():
    packets = Packets(0, QUESTIONS)
    cases = {
        "FORMERR": [packets.pointer_to_itself(), packets.pointer_past_end(), packets.long_name(),
                    packets.several_questions(), packets.two_opts(), packets.long_label()]
                   + [packets.pointers_to_each_other() for _ in range(8)]
                   + [packets.huge_counts() for _ in range(8)],
        "REFUSED": [query("web.marathon.mesos.", 1, qclass) for qclass in (3, 254, 65280)],
        "NOTIMP": [query("mesos.", qtype) for qtype in (251, 252)],
        "BADVERS": [packets.edns_version() for _ in range(4)],
    }
    for rcode, datas in cases.items():
        for data in datas:
            assert rcode_of(data) == rcode, data


def test_unknown_edns_options_are_ignored():
    packets = Packets(1, [("web.marathon.mesos.", 1)])
    for _ in range(200):
        data = packets.odd_edns_options()
        msg = check_contract(data, False)
        assert msg is not None
        if msg.rcode() == dns.rcode.NOERROR:
            assert sorted(rd.to_text() for rd in msg.answer[0]) == sorted(RECORDS.a["web.marathon.mesos."])
        else:  # options or an OPT length that overrun the packet
            assert msg.rcode() == dns.rcode.FORMERR


def test_a_flood_of_spellings_of_a_big_name_takes_bounded_memory(monkeypatch):
    """Every 0x20 spelling of a big answer is a new hot-table entry holding each rotation:
    the table must start over by bytes held, not only by entries."""
    monkeypatch.setattr(resolver, "HOT_BYTES", 4 << 20)
    zone, _ = build_zone(RECORDS, DnsSettings(external=False), 1)
    rng = random.Random(3)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3000):
            name = "".join(c.upper() if rng.random() < 0.5 else c for c in "_big._tcp.marathon.mesos.")
            data = query(name, 33, edns=4096)
            out, _, rcode = zone.answer(data)
            assert rcode == "NOERROR"
            zone.remember(data, out, [0])  # type: ignore[arg-type]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert zone.hot and held < 8 << 20, f"{held / 2**20:.1f} MiB held"


async def test_failed_forward_of_a_name_dnslib_refuses_gets_servfail():
    """The fast path forwards names with non-UTF-8 labels; when no upstream answers, the
    SERVFAIL must still go out (building it with dnslib raised, and the client got nothing)."""
    upstream = await FakeUpstream(mode="drop").start()
    srv = DnsServer(DnsSettings(listen=["127.0.0.1:0"], external=True, timeout=0.2,
                                resolvers=[upstream.spec]), Metrics(), resolv_conf="/nonexistent")
    await srv.start()
    try:
        srv.update(RECORDS)
        q = dns.message.from_wire(query(b"\x03\xff\xfe\xfd\x07example\x00", qid=0x1234))
        for ask in (dns.asyncquery.udp, dns.asyncquery.tcp):
            r = await ask(q, "127.0.0.1", port=srv.addresses[0][1], timeout=10)
            assert r.rcode() == dns.rcode.SERVFAIL and r.question == q.question
    finally:
        await srv.stop()
        await upstream.stop()
