"""The soak's correctness checker: paced DNS queries over UDP, each answer judged
against the state versions the simulated Mesos master had served at that moment.

An answer received at `recv` for a query sent at `send` is correct when it equals the
expected answer of:
- `current`: the version most recently served to the daemon before `recv`;
- `previous`: the one served before that (the daemon may still be building records);
- `in_flight`: any version served while the query was in flight, or the predecessor of
  the one current at `send` (the daemon answered at some moment inside [send, recv]).
Served versions whose expected answers equal their predecessor's are folded into it.
Anything else is a mismatch, with an example kept.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from benchmarks.soak_cluster import Answer, Probe
from benchmarks.soak_load import percentiles_ms

Expected = Callable[[int], dict[Probe, Answer]]
MAX_EXAMPLES = 10
RCVBUF = 4 << 20


class ServedLog:
    """The distinct states the master served, in order, with the time each was first served."""

    def __init__(self, expected: Expected) -> None:
        self._expected = expected
        self.times: list[float] = []
        self.versions: list[int] = []
        self.first_served: list[tuple[float, int]] = []  # every version, unfolded

    def note(self, version: int, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        if not self.first_served or self.first_served[-1][1] != version:
            self.first_served.append((at, version))
        if self.versions and (self.versions[-1] == version
                              or self._expected(self.versions[-1]) == self._expected(version)):
            return
        self.times.append(at)
        self.versions.append(version)

    def index_at(self, t: float) -> int:
        return bisect.bisect_right(self.times, t) - 1

    def fetch_lags(self, changed_at: dict[int, float]) -> list[float]:
        """For each change (version -> when it was made), the seconds until the master
        first served it or a later version: how long the daemon took to ask."""
        lags: list[float] = []
        served = iter(self.first_served)
        at, version = next(served, (0.0, -1))
        for v in sorted(changed_at):
            while version < v:
                at, version = next(served, (0.0, -1))
                if version < 0:
                    return lags
            lags.append(at - changed_at[v])
        return lags


def answer_of(msg: dns.message.Message, rdtype: str) -> Answer:
    rcode = msg.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return "NXDOMAIN"
    if rcode != dns.rcode.NOERROR:
        return "rcode " + dns.rcode.to_text(rcode)
    want = dns.rdatatype.from_text(rdtype)
    rrs = [rr for rrset in msg.answer if rrset.rdtype == want for rr in rrset]
    if not rrs:
        return "NODATA"
    if rdtype == "SRV":
        return frozenset((rr.port, rr.target.to_text().lower()) for rr in rrs)
    return frozenset(rr.address for rr in rrs)


class Checker(asyncio.DatagramProtocol):
    """Sends `rate` queries/s for random probes to 127.0.0.1:`port` and judges every answer."""

    def __init__(self, port: int, probes: list[Probe], served: ServedLog, expected: Expected,
                 rate: float, timeout: float = 2.0, seed: int = 2) -> None:
        self.port, self.probes, self.served, self.expected = port, probes, served, expected
        self.rate, self.timeout = rate, timeout
        self.rng = random.Random(seed)
        self.sent = self.lost = self.truncated = 0
        self.rules: Counter[str] = Counter()
        self.mismatches: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []
        self.latencies: list[float] = []
        self.lost_at: list[float] = []  # send times of the first lost queries
        self._inflight: dict[int, tuple[Probe, float]] = {}
        self._next_id = 0
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def checked(self) -> int:
        return sum(self.rules.values()) + sum(self.mismatches.values())

    def summary(self, seconds: float, since: float) -> dict[str, Any]:
        """The figures of a run of `seconds`; times of lost queries relative to `since`."""
        mismatched = sum(self.mismatches.values())
        return {
            "sent": self.sent, "answered": self.checked + self.truncated, "lost": self.lost,
            "lost_at_s": [round(t - since, 2) for t in self.lost_at],
            "qps": round(self.sent / seconds, 1), "truncated": self.truncated,
            "latency_ms": percentiles_ms(self.latencies),
            "checked": self.checked, "by_rule": dict(self.rules), "mismatched": mismatched,
            "mismatch_kinds": dict(self.mismatches), "examples": self.examples,
        }

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(type=socket.SOCK_DGRAM)
        # Answers wait here while this process is descheduled on a busy machine.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.connect(("127.0.0.1", self.port))
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        debt, last = 0.0, time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                # No catching up after a stall: a burst of queries would come back as a
                # burst of answers that overflows the receive buffer.
                debt, last = min(debt + self.rate * (now - last), 1 + self.rate * 0.02), now
                while debt >= 1:
                    debt -= 1
                    self._send()
                self._expire()
                await asyncio.sleep(0.01)  # pacing, not synchronisation
            deadline = time.monotonic() + self.timeout
            while self._inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # let the last answers arrive
            self._expire(force=True)
        finally:
            self._transport.close()

    def _send(self) -> None:
        for _ in range(65536):  # an ID not in flight
            self._next_id = (self._next_id + 1) & 0xFFFF
            if self._next_id not in self._inflight:
                break
        probe = self.rng.choice(self.probes)
        q = dns.message.make_query(probe[0], probe[1], id=self._next_id)
        assert self._transport is not None
        self._inflight[self._next_id] = (probe, time.monotonic())
        self._transport.sendto(q.to_wire())
        self.sent += 1

    def _expire(self, force: bool = False) -> None:
        limit = time.monotonic() - (0 if force else self.timeout)
        for qid in [q for q, (_, sent) in self._inflight.items() if sent < limit]:
            _, sent = self._inflight.pop(qid)
            self.lost += 1
            if len(self.lost_at) < MAX_EXAMPLES * 10:
                self.lost_at.append(sent)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        recv = time.monotonic()
        try:
            msg = dns.message.from_wire(data)
        except Exception:
            self.mismatches["unparsable"] += 1
            return
        entry = self._inflight.get(msg.id)
        if entry is None:
            return  # expired already: counted as lost
        probe, send = entry
        if not msg.question or msg.question[0].name.to_text().lower() != probe[0]:
            return  # not the answer to this ID's question
        del self._inflight[msg.id]
        self.latencies.append(recv - send)
        if msg.flags & dns.flags.TC:
            self.truncated += 1
            return
        self._judge(probe, answer_of(msg, probe[1]), send, recv)

    def _judge(self, probe: Probe, got: Answer, send: float, recv: float) -> None:
        versions = self.served.versions
        now, at_send = self.served.index_at(recv), self.served.index_at(send)
        candidates = [("current", now), ("previous", now - 1)] + [
            ("in_flight", i) for i in range(now - 2, at_send - 2, -1)]
        for rule, i in candidates:
            if i >= 0 and self.expected(versions[i])[probe] == got:
                self.rules[rule] += 1
                return
        stale = next((now - i for i in range(now - 1, -1, -1)
                      if self.expected(versions[i])[probe] == got), None)
        kind = f"stale by {stale} versions" if stale is not None else "never expected"
        self.mismatches[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({
                "name": probe[0], "type": probe[1], "got": _show(got),
                "expected": _show(self.expected(versions[now])[probe]) if now >= 0 else None,
                "version": versions[now] if now >= 0 else None, "kind": kind,
                "in_flight_ms": round((recv - send) * 1e3, 2),
                "since_served_ms": round((recv - self.served.times[now]) * 1e3, 2)
                if now >= 0 else None,
            })


def _show(answer: Answer) -> Any:
    return sorted(map(str, answer)) if isinstance(answer, frozenset) else answer
