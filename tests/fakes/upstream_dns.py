"""A fake upstream resolver: a real UDP+TCP DNS server on loopback that a test steers.

`mode` decides what happens to each query: "answer" (A records from `records`,
NXDOMAIN otherwise), "drop" (never answer), "truncate" (UDP answers carry TC and no
records; TCP answers are complete), "servfail". `delay` postpones UDP answers.
Every query is logged in `queries` as (transport, qname, qid).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

from dnslib import QTYPE, RCODE, RR, A, DNSRecord


async def listen_udp_tcp(udp: Callable[[], asyncio.DatagramProtocol],
                         tcp: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                       Awaitable[None]],
                         ) -> tuple[asyncio.DatagramTransport, asyncio.base_events.Server, int]:
    """UDP and TCP servers on one free loopback port (retried when TCP finds it taken)."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        transport, _ = await loop.create_datagram_endpoint(udp, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            return transport, await asyncio.start_server(tcp, "127.0.0.1", port), port
        except OSError:
            transport.close()
    raise OSError("no free port for UDP and TCP together")


class FakeUpstream:
    def __init__(self, records: dict[str, str] | None = None, *, mode: str = "answer",
                 delay: float = 0.0) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in (records or {}).items()}
        self.mode = mode
        self.delay = delay
        self.queries: list[tuple[str, str, int]] = []
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None

    @property
    def spec(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    async def start(self) -> FakeUpstream:
        self._udp, self._tcp, port = await listen_udp_tcp(lambda: _Udp(self), self._serve_tcp)
        self.address = ("127.0.0.1", port)
        return self

    async def stop(self) -> None:
        if self._udp:
            self._udp.close()
        if self._tcp:
            self._tcp.close()

    def reply(self, data: bytes, transport: str) -> bytes | None:
        query = DNSRecord.parse(data)
        qname = str(query.q.qname).lower().rstrip(".")
        self.queries.append((transport, qname, query.header.id))
        if self.mode == "drop":
            return None
        reply = query.reply()
        if self.mode == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
        elif self.mode == "truncate" and transport == "udp":
            reply.header.tc = 1
        elif qname in self.records and query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.records[qname]), ttl=30))
        elif qname not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
        return bytes(reply.pack())

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = struct.unpack(">H", await reader.readexactly(2))
                answer = self.reply(await reader.readexactly(n), "tcp")
                if answer is not None:
                    writer.write(struct.pack(">H", len(answer)) + answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = self.fake.reply(data, "udp")
        if answer is None:
            return
        if self.fake.delay:
            asyncio.get_running_loop().call_later(self.fake.delay, self.transport.sendto,
                                                  answer, addr)
        else:
            self.transport.sendto(answer, addr)
