"""The resolver without sockets: packets in, packets out; fuzzed with hypothesis."""

from __future__ import annotations

import asyncio
import random

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.dns.resolver import FORWARD, build_zone
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings

RECORDS = RecordSet(
    a={"web.marathon.mesos.": ("10.0.0.1", "10.0.0.2"), "t1.marathon.slave.mesos.": ("10.0.1.1",)},
    srv={"_web._tcp.marathon.mesos.": (Srv("t1.marathon.slave.mesos.", 31000),)},
)
ZONE, SKIPPED = build_zone(RECORDS, DnsSettings(), 1)
VALID = [dns.message.make_query(n, t, **kw).to_wire()
         for n, t, kw in (("web.marathon.mesos.", "A", {}), ("_web._tcp.marathon.mesos.", "SRV",
                          {"use_edns": 0}), ("nope.mesos.", "AAAA", {}),
                          ("example.com.", "A", {}), ("mesos.", "SOA", {"use_edns": 0}))]


def check(data: bytes) -> None:
    """The resolver's contract for any input: no exception, a reply to the same ID or nothing."""
    for tcp in (False, True):
        out, qtype, rcode = ZONE.answer(data, tcp)
        assert out is None or out is FORWARD or isinstance(out, bytes)
        if isinstance(out, bytes):
            assert out[:2] == data[:2] and out[2] & 0x80
            assert tcp or len(out) <= 4096


def test_records_outside_the_domain_are_skipped():
    _, skipped = build_zone(RecordSet(a={"x.example.com.": ("10.0.0.1",)}), DnsSettings(), 1)
    assert skipped == [("x.example.com.", "outside the domain")]
    assert SKIPPED == []


def test_qr_set_is_dropped_and_opcode_notimp():
    q = bytearray(VALID[0])
    q[2] |= 0x80
    assert ZONE.answer(bytes(q))[0] is None
    q = bytearray(VALID[0])
    q[2] |= 4 << 3  # NOTIFY
    out, _, rcode = ZONE.answer(bytes(q))
    assert rcode == "NOTIMP" and dns.message.from_wire(out).rcode() == dns.rcode.NOTIMP


def test_formerr_for_garbage_after_header():
    out, _, rcode = ZONE.answer(VALID[0][:12] + b"\xc0\x0c\x00\x01\x00\x01")  # pointer loop
    assert rcode == "FORMERR" and out[3] & 0xF == 1
    out, _, rcode = ZONE.answer(VALID[0][:12] + b"\x03\xff\xfe\xfd\x00\x00\x01\x00\x01")
    assert isinstance(out, bytes) or out is FORWARD  # bad UTF-8 is just bytes in a label


def test_compressed_question_and_options_take_the_slow_path():
    q = dns.message.make_query("WEB.marathon.mesos.", "A", use_edns=0,
                               options=[dns.edns.GenericOption(10, b"12345678")])
    out, qtype, rcode = ZONE.answer(q.to_wire())
    r = dns.message.from_wire(out)
    assert rcode == "NOERROR" and r.edns == 0
    assert r.question[0].name.to_text() == "WEB.marathon.mesos."
    assert sorted(rd.to_text() for rd in r.answer[0]) == ["10.0.0.1", "10.0.0.2"]


def test_badvers():
    q = dns.message.make_query("web.marathon.mesos.", "A", use_edns=1)
    out, _, rcode = ZONE.answer(q.to_wire())
    assert rcode == "BADVERS" and dns.message.from_wire(out).rcode() == dns.rcode.BADVERS


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    check(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)),
                                        max_size=6), st.integers(0, 80))
def test_fuzz_mutated_queries(query, flips, cut):
    data = bytearray(query)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    check(bytes(data[:len(data) - cut] if cut < len(data) else data))


async def test_server_survives_garbage():
    srv = DnsServer(DnsSettings(listen=["127.0.0.1:0"], external=False), Metrics(),
                    resolv_conf="/nonexistent")
    await srv.start()
    srv.update(RECORDS)
    host, port = srv.addresses[0]
    rng = random.Random(1)
    packets = [rng.randbytes(rng.randrange(0, 300)) for _ in range(200)]
    for q in VALID * 40:
        data = bytearray(q)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        packets.append(bytes(data[:rng.randrange(1, len(data) + 1)]))
    try:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           remote_addr=(host, port))
        for p in packets:
            transport.sendto(p)
        transport.close()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x00\x05hello\x00\x02\xff\xff" + b"\x00\x0c" + bytes(12))
        await writer.drain()
        q = dns.message.make_query("web.marathon.mesos.", "A")
        for query in (dns.asyncquery.udp, dns.asyncquery.tcp):
            r = await query(q, host, port=port, timeout=30)
            assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        writer.close()
        assert srv.metrics.registry.get_sample_value(
            "discoveryd_dns_malformed_queries_total", {"transport": "udp"}) > 0
    finally:
        await srv.stop()
