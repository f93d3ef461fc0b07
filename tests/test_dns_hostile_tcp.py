"""Hostile TCP clients against a DnsServer in this process: slow-loris, too many
connections, clients that never read their answers, half-closed connections."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from discoveryd.dns import server as server_module
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from tests.daemon_harness import eventually
from tests.daemon_process import DaemonProcess
from tests.fakes.dns_hostile import slow_loris, tcp_session
from tests.fakes.dns_packets import tcp_frame
from tests.fakes.upstream_dns import FakeUpstream
from tests.test_dns_server import BIG, WEB_IPS, record_set


def framed(name: str, rdtype: str = "A", qid: int | None = None) -> bytes:
    q = dns.message.make_query(name, rdtype)
    if qid is not None:
        q.id = qid
    return tcp_frame(q.to_wire())


async def read_answer(reader: asyncio.StreamReader) -> dns.message.Message:
    (n,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 30))
    return dns.message.from_wire(await reader.readexactly(n))


async def closed(reader: asyncio.StreamReader, timeout: float = 30) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionError:
        return True


async def test_trickling_client_is_closed_after_the_idle_timeout(server):
    """One byte now and then is no query: the idle timeout still closes the connection."""
    server.tcp_idle_timeout = 1.0
    port = server.addresses[0][1]
    trickle = framed("web.marathon.mesos.")  # a whole query only after 7 s
    seconds = await slow_loris(port, trickle, interval=0.2, limit=30)
    assert seconds is not None and 0.9 <= seconds < len(trickle) * 0.2 / 2
    assert await eventually(lambda: not server._connections, what="connection forgotten")


async def test_active_client_outlives_the_idle_timeout(server):
    server.tcp_idle_timeout = 2.0
    reader, writer = await asyncio.open_connection(*server.addresses[0])
    for i in range(6):  # a query every 0.5 s for 2.5 s: longer than the timeout
        writer.write(framed("web.marathon.mesos."))
        assert {rr.to_text() for rr in (await read_answer(reader)).answer[0]} == set(WEB_IPS)
        if i < 5:
            await asyncio.sleep(0.5)  # the client's pace, not synchronisation
    assert await closed(reader)  # and once it stops asking, it is closed
    writer.close()


async def test_too_many_connections_close_the_least_recently_active(server):
    server.max_tcp_connections = 4
    conns = [await asyncio.open_connection(*server.addresses[0]) for _ in range(4)]
    await eventually(lambda: len(server._connections) == 4, what="4 connections")
    first_reader, first_writer = conns[0]
    first_writer.write(framed("ns1.mesos."))  # the oldest becomes the most recently active
    assert (await read_answer(first_reader)).rcode() == dns.rcode.NOERROR
    conns.append(await asyncio.open_connection(*server.addresses[0]))
    assert await closed(conns[1][0])  # the least recently active one
    assert len(server._connections) == 4
    for reader, writer in (conns[0], conns[2], conns[3], conns[4]):  # the others still work
        writer.write(framed("web.marathon.mesos."))
        assert {rr.to_text() for rr in (await read_answer(reader)).answer[0]} == set(WEB_IPS)
    for _, writer in conns:
        writer.close()


async def test_client_that_does_not_read_is_not_read_from(server):
    """3000 big answers (about 20 MB) to a client that reads none: the server stops
    reading its queries instead of queueing the answers; all come once it reads."""
    n = 3000
    reader, writer = await asyncio.open_connection(*server.addresses[0])
    writer.write(b"".join(framed("_big._tcp.marathon.mesos.", "SRV", qid=i) for i in range(n)))
    conn = await eventually(lambda: next(iter(server._connections), None), what="connection")
    await eventually(lambda: conn.paused, what="reading paused")
    queued = conn.transport.get_write_buffer_size()
    assert queued <= server_module.TCP_HIGH_WATER + 8 * 1024
    heads = []
    for _ in range(n):
        (size,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 30))
        heads.append(struct.unpack(">HHHHHH", (await reader.readexactly(size))[:12]))
    # every answer, in order, with all its SRV records (and their addresses)
    assert heads == [(i, 0x8500, 1, BIG, 0, BIG) for i in range(n)]
    writer.close()


async def test_half_close_gets_every_answer_then_eof(server):
    stream = b"".join(framed(f"n{i}.marathon.mesos.", qid=i) for i in range(300))
    out = await tcp_session(server.addresses[0][1], stream,
                            dns.message.make_query("web.marathon.mesos.", "A").to_wire(),
                            "half-close")
    assert not out.problems and out.closed_by_server and out.probe_answer is not None
    assert [a[3] & 0xF for a in out.answers[:300]] == [dns.rcode.NXDOMAIN] * 300


@pytest.fixture
async def forwarding_server():
    upstream = await FakeUpstream({"slow.example.com": "192.0.2.7"}, delay=0.5).start()
    srv = DnsServer(DnsSettings(listen=["127.0.0.1:0"], external=True,
                                resolvers=[upstream.spec]), Metrics(), resolv_conf="/nonexistent")
    await srv.start()
    srv.update(record_set())
    yield srv
    await srv.stop()
    await upstream.stop()


async def test_half_close_waits_for_forwarded_answers(forwarding_server):
    forwarding_server.tcp_idle_timeout = 0.2  # shorter than the upstream's delay
    reader, writer = await asyncio.open_connection(*forwarding_server.addresses[0])
    writer.write(framed("slow.example.com.") + framed("web.marathon.mesos."))
    writer.write_eof()
    answers = {}
    for _ in range(2):
        msg = await read_answer(reader)
        answers[msg.question[0].name.to_text()] = {rr.to_text() for rr in msg.answer[0]}
    assert answers == {"slow.example.com.": {"192.0.2.7"}, "web.marathon.mesos.": set(WEB_IPS)}
    assert await closed(reader)
    writer.close()


async def test_slow_reader_gets_every_answer(server):
    """A client that takes its answers slowly, but takes them, is active: the idle
    timeout must not cut it off while its answers wait in the server's buffer."""
    server.tcp_idle_timeout = 1.0
    n = 40
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.addresses[0])
    reader, writer = await asyncio.open_connection(sock=sock)
    conn = await eventually(lambda: next(iter(server._connections), None), what="connection")
    # Small kernel buffers on both ends: the answers queue in the server's transport.
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer.write(b"".join(framed("_big._tcp.marathon.mesos.", "SRV", qid=i) for i in range(n)))
    ids = []
    for _ in range(n):
        (size,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 30))
        ids.append(struct.unpack(">H", (await reader.readexactly(size))[:2])[0])
        await asyncio.sleep(0.1)  # the client's pace: 4 s in all, 4 idle timeouts
    assert ids == list(range(n))
    writer.close()


IDLE, CAP = DnsSettings().tcp_idle_timeout, DnsSettings().max_tcp_connections  # the defaults
CROWD = 300  # more than CAP


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_slow_loris_crowd_against_the_daemon(master, tmp_path):
    """300 connections that send nothing or a byte every 2 s: the daemon holds at most
    MAX_TCP_CONNECTIONS, closes the rest within the idle timeout, and answers valid
    queries over UDP and fresh TCP connections promptly all along."""
    daemon = await DaemonProcess.for_master(tmp_path, master)
    try:
        base, port = daemon.sockets(), daemon.dns_port
        trickle = framed("liquor-store.marathon.mesos.")
        crowd = [asyncio.create_task(slow_loris(port, trickle if i % 2 else b"", interval=2.0,
                                                limit=60)) for i in range(CROWD)]
        held, latencies = 0, []
        until = time.monotonic() + IDLE + 2
        while time.monotonic() < until:
            held = max(held, daemon.sockets() - base)
            for ask in (dns.asyncquery.udp, dns.asyncquery.tcp):
                q = dns.message.make_query("liquor-store.marathon.mesos.", "A")
                started = time.monotonic()
                r = await ask(q, "127.0.0.1", port=port, timeout=10)
                latencies.append(time.monotonic() - started)
                assert {rr.address for rr in r.answer[0]} == {"1.2.3.11", "1.2.3.12"}
            await asyncio.sleep(0.2)  # the pace of the valid client
        closed_after = await asyncio.gather(*crowd)
        print(f"\nslow-loris: at most {held} connections held; valid queries in at most "
              f"{max(latencies) * 1000:.0f} ms; crowd closed after "
              f"{min(closed_after):.1f}..{max(closed_after):.1f} s")
        assert held <= CAP + 4  # + the daemon's other sockets
        assert max(latencies) < 3.0
        assert all(c is not None and c < IDLE + 10 for c in closed_after)
        early = sum(c < IDLE - 2 for c in closed_after)
        assert early >= CROWD - CAP  # evicted by the cap
        await eventually(lambda: daemon.sockets() <= base, timeout=30, what="sockets closed")
        assert daemon.alive
    finally:
        await daemon.stop()
