"""DnsServer on 127.0.0.1 port 0, queried with dnspython over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings

WEB_IPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
BIG = 60  # SRV records in _big._tcp: far more than 512 bytes


def record_set(extra_ip: str | None = None) -> RecordSet:
    a = {
        "web.marathon.mesos.": WEB_IPS + ((extra_ip,) if extra_ip else ()),
        "ns1.mesos.": ("127.0.0.1",),
        "web-1.marathon.slave.mesos.": ("10.1.0.1",),
        "web-2.marathon.slave.mesos.": ("10.1.0.2",),
    }
    for i in range(BIG):
        a[f"big-{i}.marathon.slave.mesos."] = (f"10.2.0.{i}",)
    return RecordSet(
        a=a,
        aaaa={"v6.marathon.mesos.": ("fd00::1", "fd00::2")},
        srv={
            "_web._tcp.marathon.mesos.": (Srv("web-1.marathon.slave.mesos.", 31000),
                                          Srv("web-2.marathon.slave.mesos.", 31001)),
            "_big._tcp.marathon.mesos.": tuple(Srv(f"big-{i}.marathon.slave.mesos.", 30000 + i)
                                               for i in range(BIG)),
        },
    )


async def udp(server: DnsServer, name: str, rtype: str = "A", **kw) -> dns.message.Message:
    q = dns.message.make_query(name, rtype, **kw)
    host, port = server.addresses[0]
    return await dns.asyncquery.udp(q, host, port=port, timeout=10)


async def tcp(server: DnsServer, name: str, rtype: str = "A") -> dns.message.Message:
    host, port = server.addresses[0]
    return await dns.asyncquery.tcp(dns.message.make_query(name, rtype), host, port=port,
                                    timeout=10)


def texts(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(rd.to_text() for rrset in getattr(msg, section) for rd in rrset)


async def test_a_record_authoritative_case_preserved(server):
    r = await udp(server, "WeB.MaRaThOn.MeSoS.")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert r.question[0].name.to_text() == "WeB.MaRaThOn.MeSoS."
    assert texts(r) == sorted(WEB_IPS)
    assert r.answer[0].ttl == 60
    assert server.serving


async def test_aaaa_and_any(server):
    r = await udp(server, "v6.marathon.mesos.", "AAAA")
    assert texts(r) == ["fd00::1", "fd00::2"]
    r = await udp(server, "v6.marathon.mesos.", "ANY")
    assert texts(r) == ["fd00::1", "fd00::2"]


async def test_srv_carries_target_addresses(server):
    r = await udp(server, "_web._tcp.marathon.mesos.", "SRV")
    assert texts(r) == ["0 1 31000 web-1.marathon.slave.mesos.",
                        "0 1 31001 web-2.marathon.slave.mesos."]
    assert texts(r, "additional") == ["10.1.0.1", "10.1.0.2"]


async def test_nodata_for_missing_type(server):
    for name in ("web.marathon.mesos.", "marathon.mesos."):  # a name, an empty non-terminal
        r = await udp(server, name, "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and r.answer == []
        assert r.authority[0].rdtype == dns.rdatatype.SOA


async def test_nxdomain_with_soa(server):
    r = await udp(server, "missing.marathon.mesos.", "A", use_edns=0)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert r.edns == 0


async def test_soa_and_ns_at_apex_serial_increases(server):
    r = await udp(server, "mesos.", "SOA")
    soa = r.answer[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text()) == ("ns1.mesos.", "root.ns1.mesos.")
    r = await udp(server, "mesos.", "NS")
    assert texts(r) == ["ns1.mesos."] and texts(r, "additional") == ["127.0.0.1"]
    server.update(record_set())
    r2 = await udp(server, "mesos.", "SOA")
    assert r2.answer[0][0].serial > soa.serial


async def test_answers_are_shuffled(server):
    orders = set()
    firsts = set()
    for _ in range(40):
        r = await udp(server, "web.marathon.mesos.")
        order = tuple(rd.to_text() for rd in r.answer[0])
        orders.add(order)
        firsts.add(order[0])
    assert len(orders) >= 2
    assert firsts == set(WEB_IPS)


async def test_udp_truncation_and_edns_sizes(server):
    plain = await udp(server, "_big._tcp.marathon.mesos.", "SRV")
    assert plain.flags & dns.flags.TC
    assert 0 < len(plain.answer[0]) < BIG
    assert len(plain.to_wire()) <= 512
    mid = await udp(server, "_big._tcp.marathon.mesos.", "SRV", use_edns=0, payload=1400)
    assert mid.flags & dns.flags.TC and len(plain.answer[0]) < len(mid.answer[0]) < BIG
    assert len(mid.to_wire()) <= 1400
    full = await udp(server, "_big._tcp.marathon.mesos.", "SRV", use_edns=0, payload=4096)
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == BIG
    assert full.edns == 0


async def test_tcp_is_complete(server):
    r = await tcp(server, "_big._tcp.marathon.mesos.", "SRV")
    assert not r.flags & dns.flags.TC
    assert len(r.answer[0]) == BIG
    assert len(texts(r, "additional")) == BIG


async def test_tcp_several_queries_per_connection_and_idle_timeout(server):
    server.tcp_idle_timeout = 1.0
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    queries = [dns.message.make_query(n, "A") for n in ("web.marathon.mesos.", "nope.mesos.",
                                                          "ns1.mesos.")]
    writer.write(b"".join(struct.pack(">H", len(w)) + w for w in (q.to_wire() for q in queries)))
    answers = {}
    for _ in queries:
        (n,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 10))
        msg = dns.message.from_wire(await reader.readexactly(n))
        answers[msg.id] = msg
    assert answers[queries[0].id].rcode() == dns.rcode.NOERROR
    assert answers[queries[1].id].rcode() == dns.rcode.NXDOMAIN
    assert texts(answers[queries[2].id]) == ["127.0.0.1"]
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed when idle
    writer.close()


async def test_update_swaps_records_while_serving(server):
    stop = asyncio.Event()
    seen: list[list[str]] = []

    async def query_loop():
        while not stop.is_set():
            seen.append(texts(await udp(server, "web.marathon.mesos.")))

    task = asyncio.create_task(query_loop())
    for i in range(20):  # in a thread, as the daemon does: queries run during each build
        await asyncio.to_thread(server.update, record_set(extra_ip=f"10.9.0.{i}"))
    stop.set()
    await task
    last = texts(await udp(server, "web.marathon.mesos."))
    assert last == sorted(WEB_IPS + ("10.9.0.19",))
    # every answer is one complete record set, never a mix
    complete = [sorted(WEB_IPS)] + [sorted(WEB_IPS + (f"10.9.0.{i}",)) for i in range(20)]
    assert seen and all(ips in complete for ips in seen)


async def test_not_serving_before_first_update():
    srv = DnsServer(DnsSettings(listen=["127.0.0.1:0"]), Metrics(), resolv_conf="/nonexistent")
    await srv.start()
    try:
        assert not srv.serving
        r = await udp(srv, "web.marathon.mesos.")
        assert r.rcode() == dns.rcode.SERVFAIL
    finally:
        await srv.stop()


async def test_ipv6_listen():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    srv = DnsServer(DnsSettings(listen=["[::1]:0", "127.0.0.1:0"]), Metrics(),
                    resolv_conf="/nonexistent")
    try:
        await srv.start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        srv.update(record_set())
        host, port = srv.addresses[0]
        assert host == "::1"
        q = dns.message.make_query("ns1.mesos.", "A")
        r = await dns.asyncquery.udp(q, host, port=port, timeout=10)
        assert texts(r) == ["127.0.0.1"]
        r = await dns.asyncquery.tcp(q, host, port=port, timeout=10)
        assert texts(r) == ["127.0.0.1"]
    finally:
        await srv.stop()


async def test_metrics(server):
    await udp(server, "web.marathon.mesos.")
    await udp(server, "nope.mesos.", "AAAA")
    await udp(server, "example.com.")  # external is false: REFUSED
    q = server.metrics.dns.queries
    assert q[("A", "NOERROR")] >= 1 and q[("AAAA", "NXDOMAIN")] == 1
    assert q[("A", "REFUSED")] == 1
    reg = server.metrics.registry
    assert reg.get_sample_value("discoveryd_dns_records", {"type": "A"}) == 4 + 3 + BIG
    assert reg.get_sample_value("discoveryd_dns_forwarded_total", {"result": "refused"}) == 1
    assert reg.get_sample_value("discoveryd_dns_queries_total",
                                {"qtype": "A", "rcode": "NOERROR"}) >= 1
