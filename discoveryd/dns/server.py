"""The DNS server: UDP and TCP transports around the resolver's `Zone`.

`update()` builds a new Zone (index + packed answers, reusing those of unchanged names)
and swaps one reference, so a query always sees one complete record set. UDP is a raw non-blocking socket drained by
one reader callback per wakeup (see `_UdpReader`); only forwarding spawns a task.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

from discoveryd.dns.answers import RCODE_NAMES, SERVFAIL
from discoveryd.dns.forwarder import Forwarder
from discoveryd.dns.recordset import RecordSet
from discoveryd.dns.resolver import FORWARD, Zone, build_zone, failure_response, fit_udp
from discoveryd.dns.upstreams import Upstream, build_upstreams, select_upstreams
from discoveryd.metrics import _FIRST_BUCKET, Metrics
from discoveryd.settings import DnsSettings, split_host_port

log = logging.getLogger("discoveryd.dns")

TCP_HIGH_WATER = 64 << 10  # bytes of unread answers per connection before its queries wait
MAX_FORWARDS = 1024  # concurrent forwarded queries; beyond this, SERVFAIL at once
UDP_RCVBUF = 4 << 20  # absorb bursts while the loop is busy
UDP_BATCH = 256  # queries answered per wakeup at most, so TCP and timers get their turn
UDP_RECV_SIZE = 4096  # larger queries arrive truncated and get FORMERR


class DnsServer:
    def __init__(self, settings: DnsSettings, metrics: Metrics, *,
                 resolv_conf: str = "/etc/resolv.conf", count_queries: bool = True,
                 reuse_port: bool = False) -> None:
        self.settings = settings
        self.metrics = metrics
        self.resolv_conf = resolv_conf
        self.count_queries = count_queries  # False only to measure the counting's cost
        self.reuse_port = reuse_port  # lets several processes share the listen sockets
        # A connection with no whole query and no answer taken for tcp_idle_timeout closes;
        # beyond max_tcp_connections the least recently active one is closed.
        self.tcp_idle_timeout = settings.tcp_idle_timeout
        self.max_tcp_connections = settings.max_tcp_connections
        self.zone = Zone(settings, 0, ready=False)  # SERVFAIL for the domain until update()
        self.forwarder = Forwarder(settings.timeout, metrics)
        self._serial = 0
        self._upstreams: tuple[list[Upstream], dict[str, list[Upstream]]] = ([], {})
        self._addresses: list[tuple[str, int]] = []
        self._udp: list[socket.socket] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[_TcpProtocol, None] = {}  # least recently active first
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return list(self._addresses)

    @property
    def serving(self) -> bool:
        return bool(self._udp) and self.zone.ready

    def update(self, record_set: RecordSet) -> list[tuple[str, str]]:
        """Build the answers for `record_set` and swap them in; returns (name, reason) skipped.

        Only the names that changed since the last update are packed again: the rest of the
        answers are taken from the serving zone (read-only here, so this may run in a thread)."""
        started = perf_counter()
        self._serial = max(self._serial + 1, int(time.time()))
        zone, skipped = build_zone(record_set, self.settings, self._serial, self.zone)
        self.zone = zone
        for rtype, n in record_set.counts().items():
            self.metrics.dns_records.labels(rtype).set(n)
        self.metrics.dns_record_build_seconds.observe(perf_counter() - started)
        return skipped

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for spec in self.settings.listen:
                udp, tcp = _bind_pair(*split_host_port(spec), self.reuse_port)
                self._addresses.append(udp.getsockname()[:2])
                self._udp.append(udp)
                loop.add_reader(udp.fileno(), _UdpReader(self, udp))
                self._servers.append(await loop.create_server(lambda: _TcpProtocol(self),
                                                              sock=tcp))
        except BaseException:
            await self.stop()
            raise
        # Upstreams listening on the port we were given (port 0) are loops too.
        listen = self._addresses + [split_host_port(a) for a in self.settings.listen]
        self._upstreams = build_upstreams(self.settings, self._read_resolv_conf(), listen)
        log.info("dns_listening", extra={"addresses": self._addresses})

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for udp in self._udp:
            loop.remove_reader(udp.fileno())
            udp.close()
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn._drop()  # a client that does not read must not hold up stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # The listening sockets must be gone when stop() returns: a SIGHUP reload binds
        # the same addresses again at once.
        for server in self._servers:
            await server.wait_closed()
        self._udp.clear()
        self._servers.clear()
        self._addresses.clear()

    def _read_resolv_conf(self) -> str:
        if self.settings.resolvers:
            return ""
        try:
            return Path(self.resolv_conf).read_text()
        except OSError as e:
            log.warning("resolv_conf_unreadable", extra={"path": self.resolv_conf,
                                                         "error": str(e)})
            return ""

    def forward(self, query: bytes, qtype: str, qname: str, started: float,
                send: Callable[[bytes], None], tcp: bool = False) -> None:
        """Answer `query` from the upstreams in a task of its own (`tcp`: the client's
        transport; a UDP client never gets more than 512 bytes or its EDNS size)."""
        if len(self._tasks) >= MAX_FORWARDS:
            self._finish_forward(query, None, qtype, started, send, tcp)
            return
        task = asyncio.get_running_loop().create_task(
            self._forward(query, qtype, qname, started, send, tcp))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, query: bytes, qtype: str, qname: str, started: float,
                       send: Callable[[bytes], None], tcp: bool) -> None:
        upstreams = select_upstreams(qname, *self._upstreams)
        answer = await self.forwarder.forward(query, upstreams, tcp)
        self._finish_forward(query, answer, qtype, started, send, tcp)

    def _finish_forward(self, query: bytes, answer: bytes | None, qtype: str, started: float,
                        send: Callable[[bytes], None], tcp: bool) -> None:
        self.metrics.dns_forwarded.labels("ok" if answer else "servfail").inc()
        if answer is None:
            answer = failure_response(query, SERVFAIL, ra=True)
        elif not tcp:
            answer = fit_udp(query, answer)
        send(answer)
        self.metrics.dns.observe(qtype, RCODE_NAMES.get(answer[3] & 0xF, "other"),
                                 perf_counter() - started)

    def answered(self, qtype: str, rcode: str, started: float, transport: str) -> None:
        """Bookkeeping for everything but plain answers (those are counted inline)."""
        if rcode in ("FORMERR", "dropped"):
            self.metrics.dns_malformed.labels(transport).inc()
        elif rcode == "REFUSED" and not self.settings.external:
            self.metrics.dns_forwarded.labels("refused").inc()
        if rcode != "dropped" and self.count_queries:
            self.metrics.dns.observe(qtype, rcode, perf_counter() - started)


class _UdpReader:
    """Answers every pending UDP query in one event-loop callback (`loop.add_reader`):
    `recvfrom` until the socket is empty, so a burst costs one wakeup, not one per packet.

    Queries seen before (same bytes after the ID) are answered from `Zone.hot` with one
    dict lookup; the rest go through `Zone.answer`. Latency is the time from the end of
    the previous send (or the wakeup) to this query's send: one clock read per query.
    """

    def __init__(self, server: DnsServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.stats = server.metrics.dns if server.count_queries else None

    def __call__(self) -> None:
        zone = self.server.zone  # a concurrent update() swaps it: one zone per wakeup
        hot = zone.hot.get
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        stats = self.stats
        fast, total, slow = 0, 0.0, []
        prev = perf_counter()
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(UDP_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP port unreachable for an earlier answer
                continue
            entry = hot(data[2:])
            if entry is None:
                self._answer(zone, data, addr, prev)
                prev = perf_counter()
                continue
            try:
                sendto(data[:2] + entry[0](), addr)
            except OSError:  # send buffer full: dropped, as the network might have
                pass
            entry[1][0] += 1
            now = perf_counter()
            seconds = now - prev
            prev = now
            total += seconds
            if seconds <= _FIRST_BUCKET:
                fast += 1
            else:
                slow.append(seconds)
        if stats is not None and (fast or slow):
            stats.add_latencies(fast, total, slow)

    def _answer(self, zone: Zone, data: bytes, addr: tuple[str, int], started: float) -> None:
        server = self.server
        try:
            out, qtype, rcode = zone.answer(data)
            if out.__class__ is bytes:
                self._send(out, addr)  # type: ignore[arg-type]
                if rcode in ("NOERROR", "NXDOMAIN"):  # other rcodes have more bookkeeping
                    counter = self.stats.counter(qtype, rcode) if self.stats else [0]
                    zone.remember(data, out, counter)  # type: ignore[arg-type]
            elif out is FORWARD:
                server.forward(data, qtype, rcode, started, lambda a: self._send(a, addr))
                return
            server.answered(qtype, rcode, started, "udp")
        except Exception:  # the server never stops; a bug here costs one query
            log.exception("dns_query_failed")
            server.metrics.dns_malformed.labels("udp").inc()

    def _send(self, answer: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(answer, addr)
        except OSError:
            pass


class _TcpProtocol(asyncio.Protocol):
    """RFC 7766: length-prefixed queries, several per connection, answers as they come.

    Hostile clients cost bounded memory and time: a connection is closed when for
    `tcp_idle_timeout` no whole query arrived and no answer was taken (a byte now and
    then does not count, so a slow-loris client is dropped too); past
    `max_tcp_connections` the least recently active one is closed; a client that does
    not read its answers is not read from either (answers queue up to TCP_HIGH_WATER,
    then queries wait in the read buffer).
    """

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()
        self.active = self.loop.time()  # when it last asked or took answers
        self.idle: asyncio.TimerHandle | None = None
        self.paused = False  # the client's unread answers fill the write buffer
        self.eof = False  # the client half-closed: close once every answer is written
        self.forwards = 0  # answers still expected from upstreams
        self.buffered = 0  # unsent answer bytes when last active or checked

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=TCP_HIGH_WATER)
        connections = self.server._connections
        while connections and len(connections) >= self.server.max_tcp_connections:
            oldest = next(iter(connections))  # ordered by activity, least recent first
            del connections[oldest]
            oldest._drop()
        connections[self] = None
        self.idle = self.loop.call_later(self.server.tcp_idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.pop(self, None)
        if self.idle is not None:
            self.idle.cancel()

    def _drop(self) -> None:
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # close() would wait for a client that may never read
        else:
            self.transport.close()

    def _check_idle(self) -> None:
        buffered = self.transport.get_write_buffer_size()
        if buffered < self.buffered:  # it reads its answers, slowly maybe: still active
            self.active = self.loop.time()
        self.buffered = buffered
        left = self.active + self.server.tcp_idle_timeout - self.loop.time()
        if left > 0 or self.forwards:
            self.idle = self.loop.call_later(left if left > 0 else self.server.tcp_idle_timeout,
                                             self._check_idle)
        else:
            self._drop()

    def _touch(self) -> None:
        self.active = self.loop.time()
        self.buffered = self.transport.get_write_buffer_size()
        connections = self.server._connections
        if connections.pop(self, False) is None:  # still registered: now the most recent
            connections[self] = None

    def pause_writing(self) -> None:
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self._touch()  # the client read its answers
        if not self.transport.is_closing():
            self.transport.resume_reading()
            self._process()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def eof_received(self) -> bool:
        self.eof = True
        self._close_if_done()
        return True  # keep the transport: queued and forwarded answers still go out

    def _process(self) -> None:
        """Answer the whole queries in the buffer, until the client's answers pile up."""
        buffer = self.buffer
        handled = False
        while not self.paused and len(buffer) >= 2:
            n = buffer[0] << 8 | buffer[1]
            if len(buffer) < n + 2:
                break
            query = bytes(buffer[2:n + 2])
            del buffer[:n + 2]
            handled = True
            self._handle(query)
        if handled:
            self._touch()
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.eof and not self.paused and not self.forwards and not self.transport.is_closing():
            self.transport.close()  # an incomplete query left in the buffer can never finish

    def _send(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(struct.pack(">H", len(answer)) + answer)

    def _send_forwarded(self, answer: bytes) -> None:
        self.forwards -= 1
        self._send(answer)
        self._close_if_done()

    def _handle(self, query: bytes) -> None:
        started = perf_counter()
        server = self.server
        try:
            out, qtype, rcode = server.zone.answer(query, tcp=True)
            if out.__class__ is bytes:
                self._send(out)  # type: ignore[arg-type]
            elif out is FORWARD:
                self.forwards += 1
                server.forward(query, qtype, rcode, started, self._send_forwarded, tcp=True)
                return
            server.answered(qtype, rcode, started, "tcp")
        except Exception:
            log.exception("dns_query_failed")
            server.metrics.dns_malformed.labels("tcp").inc()


def _bind_pair(host: str, port: int, reuse_port: bool) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same address and port (port 0: one free for both)."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for _ in range(20 if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            for s in (udp, tcp):
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if reuse_port:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.setblocking(False)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(1024)
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
            if port != 0:
                raise
    raise OSError(f"no free port for both UDP and TCP on {host}")
