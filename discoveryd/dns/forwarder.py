"""Forwarding of names outside the domain to upstream resolvers.

Each try sends the client's query unchanged but for a fresh random ID from a fresh
socket (a random source port), over UDP first; a truncated (TC) answer is asked again over
TCP only for a client that came over TCP (a UDP client gets the truncated answer and asks
again over TCP itself, as with mesos-dns); a timeout or error moves on to the next
upstream. The answer goes back unchanged except for the client's ID. Runs as its own task per query, so a slow
upstream never delays other queries.
"""

from __future__ import annotations

import asyncio
import secrets
import struct

from discoveryd.dns.upstreams import Upstream
from discoveryd.metrics import Metrics


class UpstreamError(Exception):
    """One upstream try failed; `reason` is the metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        # The socket is connected to the upstream; also insist on our ID and QR=1.
        if len(data) >= 12 and data[:2] == self.qid and data[2] & 0x80 and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class Forwarder:
    def __init__(self, timeout: float, metrics: Metrics) -> None:
        self.timeout = timeout
        self.metrics = metrics

    async def forward(self, query: bytes, upstreams: list[Upstream], tcp: bool = False
                      ) -> bytes | None:
        """The first upstream answer, with the client's ID; None when every upstream failed.
        `tcp`: the client asked over TCP, so a truncated UDP answer is asked again over TCP."""
        for upstream in upstreams:
            qid = secrets.token_bytes(2)
            try:
                answer = await self._try(qid + query[2:], qid, upstream, tcp)
            except UpstreamError as e:
                self._failed(upstream, e.reason)
                continue
            return query[:2] + answer[2:]
        return None

    async def _try(self, query: bytes, qid: bytes, upstream: Upstream, tcp: bool) -> bytes:
        answer = await self._udp(query, qid, upstream)
        if tcp and answer[2] & 0x02:  # TC: the whole answer only fits over TCP
            self._failed(upstream, "truncated")
            answer = await self._tcp(query, qid, upstream)
        return answer

    def _failed(self, upstream: Upstream, reason: str) -> None:
        host, port = upstream
        label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.metrics.dns_forward_failures.labels(label, reason).inc()

    async def _udp(self, query: bytes, qid: bytes, upstream: Upstream) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _OneAnswer(qid), remote_addr=upstream)
        except OSError as e:
            raise UpstreamError("error") from e
        try:
            transport.sendto(query)
            async with asyncio.timeout(self.timeout):
                return await proto.answer
        except TimeoutError as e:
            raise UpstreamError("timeout") from e
        except OSError as e:
            raise UpstreamError("error") from e
        finally:
            transport.close()

    async def _tcp(self, query: bytes, qid: bytes, upstream: Upstream) -> bytes:
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(*upstream)
                writer.write(struct.pack(">H", len(query)) + query)
                (n,) = struct.unpack(">H", await reader.readexactly(2))
                answer = await reader.readexactly(n)
        except TimeoutError as e:
            raise UpstreamError("timeout") from e
        except (OSError, asyncio.IncompleteReadError) as e:
            raise UpstreamError("error") from e
        finally:
            if writer is not None:
                writer.close()
        if len(answer) < 12 or answer[:2] != qid or not answer[2] & 0x80:
            raise UpstreamError("error")
        return answer
