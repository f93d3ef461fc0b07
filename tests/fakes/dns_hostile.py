"""Hostile DNS clients on real sockets: a UDP blaster, TCP sessions that misbehave,
and slow-loris connections. They report what came back; the tests judge it.

Every reply is checked against the contract at once (`reply_problem`); valid probes
carry IDs below 0x8000 and hostile packets IDs above (see tests/fakes/dns_packets.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.fakes.dns_packets import RESPONSE_ID

ALLOWED_RCODES = {0, 1, 3, 4, 5}  # NOERROR (and BADVERS), FORMERR, NXDOMAIN, NOTIMP, REFUSED


def reply_problem(data: bytes) -> str | None:
    """Why `data`, sent by the server, breaks the contract; None if it does not."""
    if len(data) < 12:
        return f"reply shorter than a header: {data!r}"
    if not data[2] & 0x80:
        return f"reply without QR: {data[:12]!r}"
    if data[:2] == struct.pack(">H", RESPONSE_ID):
        return "a response sent to the server was answered"
    if data[3] & 0xF not in ALLOWED_RCODES:
        return f"rcode {data[3] & 0xF} in {data[:12]!r}"
    return None


def qid_of(data: bytes) -> int:
    return data[0] << 8 | data[1]


class UdpBlaster(asyncio.DatagramProtocol):
    """One UDP socket: `send` fires packets, `ask` sends a probe and awaits its answer."""

    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.rcodes: Counter[int] = Counter()
        self.problems: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, port: int) -> UdpBlaster:
        loop = asyncio.get_running_loop()
        _, blaster = await loop.create_datagram_endpoint(cls, remote_addr=("127.0.0.1", port))
        sock = blaster.transport.get_extra_info("socket")  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return blaster

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        problem = reply_problem(data)
        if problem is not None:
            self.problems.append(problem)
            return
        self.rcodes[data[3] & 0xF] += 1
        future = self.pending.pop(qid_of(data), None)
        if future is not None and not future.done():
            future.set_result(data)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def ask(self, wire: bytes, timeout: float) -> bytes:
        future = asyncio.get_running_loop().create_future()
        self.pending[qid_of(wire)] = future
        self.send(wire)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(qid_of(wire), None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class TcpOutcome:
    answers: list[bytes] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    probe_answer: bytes | None = None
    closed_by_server: bool = False


async def tcp_session(port: int, stream: bytes, probe: bytes, ending: str,
                      timeout: float = 30.0) -> TcpOutcome:
    """Write `stream` (frames, possibly lying ones) and then the framed `probe`.

    ending "probe": read until the probe's answer, then close. "half-close": shut our
    side after writing and read until the server closes. "lie": a length prefix bigger
    than what follows, then close without reading."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = TcpOutcome()
    try:
        if ending == "lie":
            writer.write(stream + struct.pack(">H", 4000) + probe)
            await writer.drain()
            return out
        writer.write(stream + struct.pack(">H", len(probe)) + probe)
        if ending == "half-close":
            writer.write_eof()
        async with asyncio.timeout(timeout):
            await writer.drain()
            while True:
                try:
                    (n,) = struct.unpack(">H", await reader.readexactly(2))
                    data = await reader.readexactly(n)
                except asyncio.IncompleteReadError as e:
                    out.closed_by_server = not e.partial
                    assert not e.partial, f"the server cut an answer: {e.partial!r}"
                    break
                problem = reply_problem(data)
                if problem is not None:
                    out.problems.append(problem)
                    continue
                out.answers.append(data)
                if qid_of(data) == qid_of(probe):
                    out.probe_answer = data
                    if ending == "probe":
                        break
        return out
    finally:
        writer.close()


async def slow_loris(port: int, trickle: bytes, interval: float, limit: float) -> float | None:
    """Connect, send `trickle` one byte every `interval` seconds (nothing if empty), and
    return how long until the server closed the connection (None: still open at `limit`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def drip() -> None:
        for i in range(len(trickle)):
            await asyncio.sleep(interval)  # the fault: a client this slow
            writer.write(trickle[i:i + 1])

    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(limit):
            while await reader.read(4096):
                pass  # whatever comes back (nothing should), until EOF
    except TimeoutError:
        return None
    except ConnectionError:
        pass  # reset: closed too
    finally:
        dripping.cancel()
        writer.close()
    return time.monotonic() - started
