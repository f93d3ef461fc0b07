"""A background DNS client for fault tests: asks the same questions over and over (real
dnspython over UDP) and records every answer, its latency and which known state it matches.

A fault test then asserts over the whole record: no answer outside the expected states (no
NXDOMAIN, SERVFAIL, empty or mixed answer for a known name), no timeout, bounded latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from tests.daemon_harness import stop_task

Question = tuple[str, str]  # (name, "A" | "SRV")
Expected = Mapping[Question, frozenset[str]]  # one state's exact answer values per question


def values(msg: dns.message.Message) -> frozenset[str]:
    """The answer section as comparable strings: "ip" for A, "target:port" for SRV."""
    out = set()
    for rrset in msg.answer:
        for rr in rrset:
            if rr.rdtype == dns.rdatatype.SRV:
                out.add(f"{str(rr.target).lower()}:{rr.port}")
            elif hasattr(rr, "address"):
                out.add(rr.address)
    return frozenset(out)


@dataclass(frozen=True)
class Observation:
    at: float  # monotonic time the question was sent
    question: Question
    rcode: str  # "NOERROR", "NXDOMAIN", ... or "TIMEOUT"
    answer: frozenset[str]
    latency: float
    states: frozenset[str]  # the expected states whose answer this is exactly (maybe several)


@dataclass
class DnsProbe:
    """Queries `questions` round-robin on 127.0.0.1:`port` until stopped.

    `states` names each valid state's exact answers; an observation records which of them
    it matches (none: a wrong answer; several: a question whose answer the states share). `pause` paces the loop so two probes do not starve the daemon.
    """

    port: int
    states: dict[str, Expected]
    timeout: float = 5.0
    pause: float = 0.01
    observations: list[Observation] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    @property
    def questions(self) -> list[Question]:
        return sorted({q for expected in self.states.values() for q in expected})

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True  # a cancel alone can be swallowed by dnspython's wait_for (3.11)
        if self._task is not None:
            await stop_task(self._task)

    async def __aenter__(self) -> DnsProbe:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        questions = self.questions
        while not self._stopping:
            for q in questions:
                self.observations.append(await self.ask(q))
            await asyncio.sleep(self.pause)  # pacing, not synchronisation

    async def ask(self, q: Question) -> Observation:
        msg = dns.message.make_query(q[0], dns.rdatatype.from_text(q[1]))
        started = time.monotonic()
        try:
            r = await dns.asyncquery.udp(msg, "127.0.0.1", port=self.port, timeout=self.timeout)
        except dns.exception.Timeout:
            return Observation(started, q, "TIMEOUT", frozenset(), time.monotonic() - started,
                               frozenset())
        latency = time.monotonic() - started
        answer = values(r)
        rcode = dns.rcode.to_text(r.rcode())
        match = frozenset(name for name, exp in self.states.items()
                          if rcode == "NOERROR" and exp.get(q) == answer)
        return Observation(started, q, rcode, answer, latency, match)

    # --- what tests assert on ---------------------------------------------------

    def since(self, t: float) -> list[Observation]:
        return [o for o in self.observations if o.at >= t]

    def between(self, t0: float, t1: float) -> list[Observation]:
        return [o for o in self.observations if t0 <= o.at < t1]

    def wrong(self, allowed: Sequence[str], among: Sequence[Observation] | None = None,
              ) -> list[Observation]:
        """Observations that match none of the `allowed` states."""
        return [o for o in (self.observations if among is None else among)
                if not o.states & set(allowed)]

    def latest(self) -> dict[Question, Observation]:
        last: dict[Question, Observation] = {}
        for o in self.observations:
            last[o.question] = o
        return last

    def serves(self, state: str) -> bool:
        """Whether the newest answer to every question matches `state`."""
        last = self.latest()
        if self._task is not None and self._task.done():
            self._task.result()  # the probe itself failed: say why instead of timing out
        return len(last) == len(self.questions) and all(
            state in o.states for o in last.values())

    def regressions(self, order: Sequence[str]) -> list[Observation]:
        """Answers that go back to an earlier state of `order` once a later one was served
        for the same question (A, B, A: the second A)."""
        reached: dict[Question, int] = {}
        back = []
        for o in self.observations:
            indexes = [order.index(s) for s in o.states if s in order]
            if not indexes:
                continue
            floor = reached.get(o.question, 0)
            if max(indexes) < floor:
                back.append(o)
            reached[o.question] = max(floor, min(indexes))
        return back

    def seen(self, state: str, question: Question) -> bool:
        return any(o.question == question and state in o.states for o in self.observations)

    def max_latency(self, among: Sequence[Observation] | None = None) -> float:
        obs = self.observations if among is None else among
        return max((o.latency for o in obs), default=0.0)

    def summary(self, obs: Sequence[Observation], limit: int = 5) -> str:
        return "; ".join(f"{o.question} {o.rcode} {sorted(o.answer)} states={sorted(o.states)}"
                         for o in obs[:limit]) + (f" ... ({len(obs)} in all)" if obs else "")
