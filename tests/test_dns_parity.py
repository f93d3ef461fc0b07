"""DNS protocol parity with mesos-dns: answer sizes, shuffling, forwarding edge cases.

Real sockets on loopback: a DnsServer, dnspython clients, and an upstream resolver
started here that answers big record sets (truncated over UDP as a real resolver does).
"""

from __future__ import annotations

import asyncio
import struct

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import pytest

from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from tests.fakes.upstream_dns import FakeUpstream, listen_udp_tcp

BIG = 200  # A records of big.example. upstream


class BigUpstream:
    """An upstream resolver on loopback: `<name>.` -> BIG A records. Over UDP the answer
    is cut to the query's size (512 or its EDNS size) with TC and no records, unless
    `oversize` (a broken upstream that ignores the size); over TCP it is complete.
    `queries` logs (transport, qname)."""

    def __init__(self, *, oversize: bool = False) -> None:
        self.oversize = oversize
        self.queries: list[tuple[str, str]] = []
        self.spec = ""
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None

    def reply(self, data: bytes, transport: str) -> bytes:
        q = dns.message.from_wire(data)
        self.queries.append((transport, str(q.question[0].name).lower()))
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text_list(
            q.question[0].name, 60, "IN", "A", [f"10.9.{i // 256}.{i % 256}" for i in range(BIG)]))
        if transport == "tcp" or self.oversize:
            return r.to_wire(max_size=65535)
        try:
            return r.to_wire(max_size=q.payload if q.edns >= 0 else 512)
        except dns.exception.TooBig:
            r.answer.clear()
            r.flags |= dns.flags.TC
            return r.to_wire()

    async def start(self) -> BigUpstream:
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                self.transport = transport

            def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
                self.transport.sendto(upstream.reply(data, "udp"), addr)

        self._udp, self._tcp, port = await listen_udp_tcp(Udp, self._serve_tcp)
        self.spec = f"127.0.0.1:{port}"
        return self

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = struct.unpack(">H", await reader.readexactly(2))
                answer = self.reply(await reader.readexactly(n), "tcp")
                writer.write(struct.pack(">H", len(answer)) + answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        if self._udp:
            self._udp.close()
        if self._tcp:
            self._tcp.close()


@pytest.fixture
async def big_upstream():
    made: list[BigUpstream] = []

    async def make(**kw) -> BigUpstream:
        up = await BigUpstream(**kw).start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


@pytest.fixture
async def make_server():
    servers: list[DnsServer] = []

    async def make(record_set: RecordSet | None = None, **dns_settings) -> DnsServer:
        settings = DnsSettings(listen=["127.0.0.1:0"], **dns_settings)
        srv = DnsServer(settings, Metrics(), resolv_conf="/nonexistent")
        await srv.start()
        srv.update(record_set or RecordSet(a={"web.marathon.mesos.": ("10.0.0.1",)}))
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.stop()


async def udp_raw(server: DnsServer, q: dns.message.Message | bytes) -> bytes:
    """The whole datagram the server sends back (however big) to `q` (a message or bytes)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=server.addresses[0])
    try:
        transport.sendto(q if isinstance(q, bytes) else q.to_wire())
        return await asyncio.wait_for(got, 30)
    finally:
        transport.close()


async def tcp(server: DnsServer, q: dns.message.Message) -> dns.message.Message:
    host, port = server.addresses[0]
    return await dns.asyncquery.tcp(q, host, port=port, timeout=30)


# 1. A forwarded answer fits what the UDP client can take.

async def test_forwarded_truncated_answer_goes_to_udp_client_truncated(big_upstream, make_server):
    up = await big_upstream()
    srv = await make_server(resolvers=[up.spec])
    for kw, limit in (({}, 512), ({"use_edns": 0, "payload": 1232}, 1232)):
        q = dns.message.make_query("big.example.", "A", **kw)
        raw = await udp_raw(srv, q)
        assert len(raw) <= limit
        r = dns.message.from_wire(raw)
        assert r.id == q.id and r.flags & dns.flags.TC
    assert [t for t, _ in up.queries] == ["udp", "udp"]  # no TCP for UDP clients
    # A TCP client gets everything: the upstream is asked again over TCP.
    up.queries.clear()
    r = await tcp(srv, dns.message.make_query("big.example.", "A"))
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == BIG
    assert [t for t, _ in up.queries] == ["udp", "tcp"]


async def test_oversized_upstream_udp_answer_is_truncated_for_the_client(big_upstream,
                                                                          make_server):
    up = await big_upstream(oversize=True)  # sends ~3 KB over UDP whatever the query said
    srv = await make_server(resolvers=[up.spec])
    for kw, limit, edns in (({}, 512, -1), ({"use_edns": 0, "payload": 1232}, 1232, 0)):
        q = dns.message.make_query("big.example.", "A", **kw)
        raw = await udp_raw(srv, q)
        assert len(raw) <= limit
        r = dns.message.from_wire(raw)
        assert r.flags & dns.flags.TC and r.rcode() == dns.rcode.NOERROR and r.edns == edns
        assert str(r.question[0].name) == "big.example."
    q = dns.message.make_query("big.example.", "A", use_edns=0, payload=4096)
    r = dns.message.from_wire(await udp_raw(srv, q))
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == BIG


# 2. TCP answers are capped at 65535 bytes (mesos-dns's truncate): over the cap, TC is set
# and every additional record goes first, then answers as needed.

def srv_record_set(n: int) -> RecordSet:
    targets = [f"myservice-{i:05d}-abcdefgh.marathon.slave.mesos." for i in range(n)]
    return RecordSet(
        a={t: (f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}",) for i, t in enumerate(targets)},
        srv={"_myservice._tcp.marathon.mesos.": tuple(Srv(t, 31000) for t in targets)})


@pytest.mark.parametrize("edns", [False, True])
async def test_tcp_answer_over_64k_is_capped(make_server, edns):
    srv = await make_server(srv_record_set(700), external=False)
    kw = {"use_edns": 0} if edns else {}
    q = dns.message.make_query("_myservice._tcp.marathon.mesos.", "SRV", **kw)
    for _ in range(3):  # 700 SRV fit in 64 KB; their 700 A records do not all fit too
        r = await tcp(srv, q)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.TC
        assert len(r.answer[0]) == 700 and not r.additional
        assert len(r.to_wire()) <= 65535 and r.edns == (0 if edns else -1)
    # Over UDP the answer is truncated as ever.
    host, port = srv.addresses[0]
    r = await dns.asyncquery.udp(q, host, port=port, timeout=30)
    assert r.flags & dns.flags.TC and len(r.to_wire()) <= (q.payload if edns else 512)


async def test_tcp_answer_whose_records_exceed_64k_is_truncated(make_server):
    srv = await make_server(srv_record_set(1200), external=False)
    for name in ("_myservice._tcp.marathon.mesos.", "_MyService._tcp.marathon.mesos."):
        r = await tcp(srv, dns.message.make_query(name, "SRV"))
        assert r.flags & dns.flags.TC and r.rcode() == dns.rcode.NOERROR
        assert 700 < len(r.answer[0]) < 1200 and not r.additional
        assert len(r.to_wire()) <= 65535


# 4. Every record of a name leads an answer in turn, however many records it has.

@pytest.mark.parametrize("n", [20, 200])
async def test_every_record_comes_first_in_turn(make_server, n):
    ips = [f"10.7.{i // 256}.{i % 256}" for i in range(n)]
    srv = await make_server(RecordSet(a={"many.marathon.mesos.": tuple(ips)}), external=False)
    host, port = srv.addresses[0]
    for transport, kw in (("udp", {}), ("udp", {"use_edns": 0, "payload": 4096}),
                          ("udp", {"use_edns": 0, "payload": 1232}), ("tcp", {})):
        query = dns.asyncquery.udp if transport == "udp" else dns.asyncquery.tcp
        firsts: dict[str, int] = {}
        for _ in range(2 * n):  # UDP: the first through the resolver, then from Zone.hot
            q = dns.message.make_query("many.marathon.mesos.", "A", **kw)
            r = await query(q, host, port=port, timeout=30)
            first = r.answer[0][0].to_text()
            firsts[first] = firsts.get(first, 0) + 1
        assert set(firsts) == set(ips), (transport, kw)
        assert max(firsts.values()) - min(firsts.values()) <= 2, (transport, kw)


# 5. Queries with EDNS options (bind9 and dig send a COOKIE) take the fast path.

async def test_edns_options_are_ignored_and_answered_the_fast_way(make_server):
    srv = await make_server(RecordSet(a={"web.marathon.mesos.": ("10.0.0.1", "10.0.0.2")}),
                            external=False)
    host, port = srv.addresses[0]
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, bytes(range(8)))
    padding = dns.edns.GenericOption(dns.edns.PADDING, bytes(20))
    for options in ([cookie], [cookie, padding]):
        for name, rcode in (("web.marathon.mesos.", dns.rcode.NOERROR),
                            ("nope.marathon.mesos.", dns.rcode.NXDOMAIN)):
            q = dns.message.make_query(name, "A", use_edns=0, payload=1232, options=options,
                                       want_dnssec=True)
            for _ in range(2):  # the second one from Zone.hot
                r = await dns.asyncquery.udp(q, host, port=port, timeout=30)
                assert r.rcode() == rcode and r.edns == 0 and not r.options
                assert r.payload == 1232 and r.flags & dns.flags.AA
            if rcode == dns.rcode.NOERROR:
                assert sorted(rd.to_text() for rd in r.answer[0]) == ["10.0.0.1", "10.0.0.2"]
            assert q.to_wire()[2:] in srv.zone.hot  # remembered: the fast path answered it
    # An option that overruns the OPT record is still a FORMERR.
    wire = bytearray(dns.message.make_query("web.marathon.mesos.", "A", use_edns=0,
                                            options=[cookie]).to_wire())
    wire[-10] += 1  # the COOKIE's length
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(host, port))
    transport.sendto(bytes(wire))
    assert dns.message.from_wire(await asyncio.wait_for(got, 30)).rcode() == dns.rcode.FORMERR
    transport.close()


# 6. NOTIMP, FORMERR and the forwarding SERVFAIL carry an OPT when the query had one.

async def udp_message(server: DnsServer, wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(await udp_raw(server, wire))


async def test_error_replies_carry_opt_when_the_query_had_one(make_server):
    dead = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))  # never answers
    dead_port = dead[0].get_extra_info("sockname")[1]
    srv = await make_server(resolvers=[f"127.0.0.1:{dead_port}"], timeout=0.2)
    try:
        for use_edns in (None, 0):
            want = -1 if use_edns is None else 0
            q = dns.message.make_query("mesos.", "SOA", use_edns=use_edns)
            q.set_opcode(dns.opcode.NOTIFY)
            r = await udp_message(srv, q.to_wire())
            assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == dns.opcode.NOTIFY
            assert r.edns == want
            wire = bytearray(dns.message.make_query("mesos.", "SOA", use_edns=use_edns)
                             .to_wire())
            wire[4:6] = b"\x00\x00"  # no question: FORMERR (the OPT is fine)
            del wire[12:12 + len(b"\x05mesos\x00") + 4]
            r = await udp_message(srv, bytes(wire))
            assert r.rcode() == dns.rcode.FORMERR and r.edns == want
            q = dns.message.make_query("example.com.", "A", use_edns=use_edns)
            r = await udp_message(srv, q.to_wire())  # every upstream times out
            assert r.rcode() == dns.rcode.SERVFAIL and r.edns == want and r.id == q.id
        # A malformed OPT (an option overrunning it) gets a FORMERR without one.
        wire = bytearray(dns.message.make_query(
            "mesos.", "SOA", use_edns=0,
            options=[dns.edns.GenericOption(dns.edns.COOKIE, bytes(8))]).to_wire())
        wire[-10] += 1
        r = await udp_message(srv, bytes(wire))
        assert r.rcode() == dns.rcode.FORMERR and r.edns == -1
    finally:
        dead[0].close()


# 7. A zone_resolvers zone inside the domain is forwarded (the longest match wins).

async def test_zone_resolvers_inside_the_domain_forward(make_server):
    up = await FakeUpstream(records={"ok.consul.mesos": "192.0.2.44",
                                     "task.consul.mesos": "192.0.2.45"}).start()
    try:
        rs = RecordSet(a={"web.marathon.mesos.": ("10.0.0.1",),
                          "task.consul.mesos.": ("10.0.0.2",)})  # shadowed by the zone
        srv = await make_server(rs, zone_resolvers={"consul.mesos": [up.spec]})
        host, port = srv.addresses[0]
        for transport in (dns.asyncquery.udp, dns.asyncquery.tcp):
            for name, ip in (("ok.consul.mesos.", "192.0.2.44"), ("Task.Consul.mesos.", "192.0.2.45"),
                             ("web.marathon.mesos.", "10.0.0.1")):
                r = await transport(dns.message.make_query(name, "A"), host, port=port, timeout=30)
                assert [rd.to_text() for rd in r.answer[0]] == [ip]
            r = await transport(dns.message.make_query("notconsul.mesos.", "A"), host,
                                port=port, timeout=30)
            assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
        assert {q for _, q, _ in up.queries} == {"ok.consul.mesos", "task.consul.mesos"}
        # Without forwarding (external: false) the records answer, as mesos-dns.
        srv = await make_server(rs, external=False, zone_resolvers={"consul.mesos": [up.spec]})
        host, port = srv.addresses[0]
        r = await dns.asyncquery.udp(dns.message.make_query("task.consul.mesos.", "A"), host,
                                     port=port, timeout=30)
        assert [rd.to_text() for rd in r.answer[0]] == ["10.0.0.2"]
    finally:
        await up.stop()


# 8. ".*" is removed from names in the domain (mesos-dns's cleanWild), on a miss.

async def test_wildcard_labels_are_removed_from_names(make_server):
    rs = RecordSet(a={"web.marathon.mesos.": ("10.0.0.1", "10.0.0.2"),
                      "a1.slave.mesos.": ("10.0.1.1",)},
                   srv={"_web._tcp.marathon.mesos.": (Srv("a1.slave.mesos.", 31000),)})
    srv = await make_server(rs, external=False)
    host, port = srv.addresses[0]
    for transport in (dns.asyncquery.udp, dns.asyncquery.tcp):
        for _ in range(3):  # the later ones from Zone.hot (UDP)
            r = await transport(dns.message.make_query("Web.*.marathon.mesos.", "A"), host,
                                port=port, timeout=30)
            assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
            assert str(r.answer[0].name) == "Web.*.marathon.mesos."  # the question's name
            assert sorted(rd.to_text() for rd in r.answer[0]) == ["10.0.0.1", "10.0.0.2"]
        r = await transport(dns.message.make_query("_web._tcp.*.marathon.*.mesos.", "SRV"),
                            host, port=port, timeout=30)
        assert [rd.to_text() for rd in r.answer[0]] == ["0 1 31000 a1.slave.mesos."]
        assert [rd.to_text() for rd in r.additional[0]] == ["10.0.1.1"]
        for name, rcode in (("web.*.marathon.mesos.", dns.rcode.NOERROR),
                            ("nope.*.marathon.mesos.", dns.rcode.NXDOMAIN),
                            ("*.web.marathon.mesos.", dns.rcode.NXDOMAIN)):  # no "." before "*"
            r = await transport(dns.message.make_query(name, "AAAA"), host, port=port,
                                timeout=30)
            assert r.rcode() == rcode and not r.answer and r.authority


async def test_wildcard_answers_fit_the_question_as_asked(make_server):
    """The answer of the name with ".*" removed, sent with the longer question as asked,
    still fits 512 bytes, the EDNS size, or 65535 over TCP (TC when records are left out)."""
    ips = tuple(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(4093))
    rs = RecordSet(a={"many.marathon.mesos.": ips[:29], "edns.marathon.mesos.": ips[:70],
                      "x.marathon.mesos.": ips})
    srv = await make_server(rs, external=False)
    for name, kw, limit, n in (("many", {}, 512, 29), ("edns", {"use_edns": 0, "payload": 1232},
                                                       1232, 70)):
        exact = dns.message.from_wire(await udp_raw(srv, dns.message.make_query(
            f"{name}.marathon.mesos.", "A", **kw)))
        assert len(exact.answer[0]) == n and not exact.flags & dns.flags.TC  # fits as is
        for _ in range(2):
            q = dns.message.make_query(name + ".*" * 40 + ".marathon.mesos.", "A", **kw)
            out = await udp_raw(srv, q)
            r = dns.message.from_wire(out)
            assert len(out) <= limit and r.flags & dns.flags.TC, (name, len(out))
            assert 0 < len(r.answer[0]) < n
    q = dns.message.make_query("x.*.*.*.*.*.*.*.marathon.mesos.", "A")
    for _ in range(2):
        r = await tcp(srv, q)
        assert len(r.to_wire()) <= 65535 and r.flags & dns.flags.TC
        assert 4000 < len(r.answer[0]) < 4093
    r = await tcp(srv, dns.message.make_query("x.marathon.mesos.", "A"))  # fits exactly
    assert len(r.answer[0]) == 4093 and not r.flags & dns.flags.TC


async def test_a_label_holding_a_dot_is_not_a_wildcard(make_server):
    """One label "web.*" is not "web" + ".*": mesos-dns sees "web\\.*" and matches nothing."""
    srv = await make_server(external=False)
    host, port = srv.addresses[0]
    name = dns.name.Name([b"web.*", b"marathon", b"mesos", b""])
    for transport in (dns.asyncquery.udp, dns.asyncquery.tcp):
        for _ in range(2):
            r = await transport(dns.message.make_query(name, "A"), host, port=port, timeout=30)
            assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        r = await transport(dns.message.make_query("web.*.marathon.mesos.", "A"), host,
                            port=port, timeout=30)  # two labels: cleaned as ever
        assert [rd.to_text() for rd in r.answer[0]] == ["10.0.0.1"]


@pytest.mark.parametrize("n", [5, 40])  # prebuilt rotations; 40 truncated over UDP
async def test_rotation_goes_on_across_spellings_and_cookies(make_server, n):
    """Every spelling of a name (0x20 case) and every EDNS cookie has its own Zone.hot entry;
    they all take turns from one counter, so queries alternating between them still see
    each record lead in turn (not the first record again for each new entry)."""
    ips = [f"10.7.{i // 256}.{i % 256}" for i in range(n)]
    srv = await make_server(RecordSet(a={"many.marathon.mesos.": tuple(ips)}), external=False)
    host, port = srv.addresses[0]
    spellings = ["many.marathon.mesos.", "MANY.marathon.mesos.", "Many.Marathon.Mesos.",
                 "mAnY.mArAtHoN.mEsOs."]
    cookies = [{"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.COOKIE,
                                                                  bytes([c]) * 8)]}
               for c in range(4)]
    for variants in ([(s, {}) for s in spellings], [("many.marathon.mesos.", kw)
                                                    for kw in cookies]):
        firsts: dict[str, int] = {}
        for i in range(3 * n):  # round-robin over the variants; most answered from Zone.hot
            name, kw = variants[i % len(variants)]
            q = dns.message.make_query(name, "A", **kw)
            r = await dns.asyncquery.udp(q, host, port=port, timeout=30)
            first = r.answer[0][0].to_text()
            firsts[first] = firsts.get(first, 0) + 1
        assert set(firsts) == set(ips), firsts
        assert max(firsts.values()) - min(firsts.values()) <= 1, firsts
