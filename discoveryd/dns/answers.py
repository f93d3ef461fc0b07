"""Prebuilt DNS responses: the answer cache behind the query fast path.

An `Answer` holds, for one (name, type), the packed header words and the packed
sections after the question, once per rotation of the RR order. Answering is then
`id + head + question-as-asked + next(tails)`: no encoding on the query path, and
the client sees its own spelling of the name because the question is copied back.
Answer RRs point at the question (0xC00C), so one tail fits every spelling.
"""

from __future__ import annotations

import ipaddress
import struct
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import accumulate, cycle
from typing import TypeVar

from discoveryd.dns.recordset import Srv

A, NS, SOA, AAAA, SRV, OPT, ANY = 1, 2, 6, 28, 33, 41, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", 16: "BADVERS"}

EDNS_UDP_SIZE = 1232  # what we advertise (the DNS flag day 2020 value)
MAX_UDP = 4096  # a client may ask for more; we never send more over UDP
# Truncated answers are cached per size class; a client's size is rounded down to one.
SIZE_CLASSES = (512, 1232, 1400, 2048, MAX_UDP)
# Every rotation of an answer is prebuilt when they add up to at most this many bytes; a
# bigger answer makes its rotation per query (see Answer).
ROTATION_BYTES = 32 << 10
OPT_RR = b"\x00\x00\x29" + struct.pack(">HIH", EDNS_UDP_SIZE, 0, 0)

T = TypeVar("T")
_RR_HEAD = struct.Struct(">HHIH")
_COUNTS = struct.Struct(">HHHH")


@lru_cache(maxsize=1 << 17)  # SRV targets and agent IPs repeat across many records
def name_to_wire(name: str) -> bytes:
    """"web.marathon.mesos." -> b"\\x03web\\x08marathon\\x05mesos\\x00" (ValueError if invalid)."""
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")] if name.strip(".") else []
    if any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"bad label in {name!r}")
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    if len(wire) > 255:
        raise ValueError(f"name too long: {name!r}")
    return wire


def pack_rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + _RR_HEAD.pack(rtype, 1, ttl, len(rdata)) + rdata


@lru_cache(maxsize=1 << 16)
def a_rdata(ip: str) -> bytes:
    return ipaddress.IPv4Address(ip).packed


@lru_cache(maxsize=1 << 16)
def aaaa_rdata(ip: str) -> bytes:
    return ipaddress.IPv6Address(ip).packed


def srv_rdata(srv: Srv) -> bytes:
    return struct.pack(">HHH", srv.priority, srv.weight, srv.port) + name_to_wire(srv.target)


def soa_rdata(mname: str, rname: str, serial: int, refresh: int, retry: int, expire: int,
              minttl: int) -> bytes:
    return (name_to_wire(mname) + name_to_wire(rname)
            + struct.pack(">IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minttl))


def rotations(items: Sequence[T], limit: int) -> list[tuple[T, ...]]:
    """Up to `limit` orders of `items`, each starting at a different RR, spread evenly."""
    n = len(items)
    if n <= 1:
        return [tuple(items)]
    offsets = sorted({i * n // limit for i in range(limit)}) if n > limit else range(n)
    return [tuple(items[o:]) + tuple(items[:o]) for o in offsets]


@lru_cache(maxsize=4096)
def heads(rcode: int, counts: tuple[int, int, int, int], *, aa: bool, ra: bool) -> tuple[bytes, ...]:
    """Flags + counts for each (RD, CD) combination of the query, indexed rd | cd << 1."""
    out = []
    for idx in range(4):
        b2 = 0x80 | (0x04 if aa else 0) | (idx & 1)
        b3 = (0x80 if ra else 0) | (0x10 if idx & 2 else 0) | (rcode & 0xF)
        out.append(bytes((b2, b3)) + _COUNTS.pack(*counts))
    return tuple(out)


def build_answers(types: Mapping[int, list[bytes]], qlen: int,
                  addresses: Mapping[bytes, tuple[bytes, ...]], mname: bytes, *, ra: bool
                  ) -> dict[int, Answer]:
    """The answers for one name: one per type of `types` (RRs owned by 0xC00C) and ANY.

    `addresses` holds the A/AAAA RRs of names, for the additional section of SRV and NS
    answers; `mname` is the NS target. The result depends only on these arguments."""
    out: dict[int, Answer] = {}
    answer = None
    for rtype, rrs in types.items():
        answer = out[rtype] = _answer(rrs, qlen, addresses, mname, ra)
    if len(types) > 1:
        answer = _answer([rr for rrs in types.values() for rr in rrs], qlen, addresses, mname, ra)
    if answer is not None:
        out[ANY] = answer  # every type of the name; the same object when it has one type
    return out


def _answer(rrs: list[bytes], qlen: int, addresses: Mapping[bytes, tuple[bytes, ...]],
            mname: bytes, ra: bool) -> Answer:
    # The name whose A/AAAA RRs each RR brings along: an SRV's target, the NS; None for others.
    targets = [rr[18:] if rr[2:4] == b"\x00\x21" else mname if rr[2:4] == b"\x00\x02" else None
               for rr in rrs]

    def additional(order: Sequence[bytes | None]) -> tuple[bytes, ...]:
        once = dict.fromkeys(order)  # in answer order, once each
        once.pop(None, None)
        return tuple(rr for t in once for rr in addresses.get(t, ()))  # type: ignore[arg-type]

    plain = targets.count(None) == len(targets)
    add = () if plain else additional(targets)
    n = len(rrs)
    if n > 1 and n * (sum(map(len, rrs)) + sum(map(len, add))) > ROTATION_BYTES:
        return Answer(qlen, NOERROR, [tuple(rrs)], [add], ra=ra, rotate=True)
    rots = rotations(rrs, n)
    adds: list[tuple[bytes, ...]] = [()] * len(rots) if plain else [additional(rot) for rot in rotations(targets, n)]
    return Answer(qlen, NOERROR, rots, adds, ra=ra)


class Answer:
    """Every packed form of one response: plain/EDNS, each RR rotation, truncations.

    Each answer RR leads in turn, one query after the other. When every rotation takes at
    most ROTATION_BYTES, all of them are prebuilt (`rots`: one per answer RR) and a query
    costs a C-level step of `_turns`, the one turn counter that the cache path, truncated
    answers and every Zone.hot entry of the answer share; otherwise (`rotate`: `answer_rots` holds one order) the
    rotation is two slices of the answer RRs packed twice, made per query."""

    __slots__ = ("rcode_name", "heads_plain", "heads_edns", "next_plain", "next_edns",
                 "_tails_plain", "_tails_edns", "max_plain", "max_edns", "_rcode", "_ra",
                 "_rots", "_authority", "_turn", "_turns", "_memo", "_qlen", "_n", "_blob2", "_cum",
                 "_rest_plain", "_rest_edns")

    def __init__(self, qlen: int, rcode: int, answer_rots: list[tuple[bytes, ...]],
                 additional_rots: list[tuple[bytes, ...]], authority: tuple[bytes, ...] = (),
                 *, ra: bool, rotate: bool = False) -> None:
        self._qlen, self._rcode, self._ra = qlen, rcode, ra
        self._rots = list(zip(answer_rots, additional_rots, strict=True))
        self._authority = authority
        self._turn = 0
        self._memo: dict[tuple[int, bool, int], tuple[bytes, bytes]] = {}
        self.rcode_name = RCODE_NAMES[rcode]
        an, ar = len(answer_rots[0]), len(additional_rots[0])
        counts = (1, an, len(authority), ar)
        self.heads_plain = heads(rcode, counts, aa=True, ra=ra)
        self.heads_edns = heads(rcode, (1, an, len(authority), ar + 1), aa=True, ra=ra)
        auth = b"".join(authority)
        self._n = len(answer_rots[0]) if rotate else 0
        if self._n:
            answers = answer_rots[0]
            blob = b"".join(answers)
            self._blob2 = blob + blob
            self._cum = list(accumulate((len(rr) for rr in answers + answers), initial=0))
            self._rest_plain = auth + b"".join(additional_rots[0])
            self._rest_edns = self._rest_plain + OPT_RR
            self._tails_plain = self._tails_edns = []
            self.next_plain, self.next_edns = self._next_plain, self._next_edns
            self._turns = cycle((0,))  # unused: the turn is `_turn`
            self.max_plain = 12 + qlen + len(blob) + len(self._rest_plain)
        else:
            plain = [b"".join(ans) + auth + b"".join(add) for ans, add in self._rots]
            self._tails_plain, self._tails_edns = plain, [t + OPT_RR for t in plain]
            # One counter for every path: each query, however spelled, takes the next turn.
            self._turns = cycle(range(len(plain)))
            self.next_plain = map(plain.__getitem__, self._turns).__next__
            self.next_edns = map(self._tails_edns.__getitem__, self._turns).__next__
            self.max_plain = 12 + qlen + max(map(len, plain))
        self.max_edns = self.max_plain + len(OPT_RR)

    @property
    def orders(self) -> int:
        """How many orders the answer RRs come in (each RR leads in one)."""
        return self._n or len(self._rots)

    @property
    def tails_plain(self) -> list[bytes]:
        """The sections after the question, each rotation once (no EDNS)."""
        return [self._tail(t, False) for t in range(self._n)] if self._n else self._tails_plain

    @property
    def tails_edns(self) -> list[bytes]:
        return [self._tail(t, True) for t in range(self._n)] if self._n else self._tails_edns

    def _tail(self, turn: int, edns: bool) -> bytes:
        c = self._cum
        return self._blob2[c[turn]:c[turn + self._n]] + (self._rest_edns if edns
                                                           else self._rest_plain)

    def _next_plain(self) -> bytes:
        return self._tail(self._advance(), False)

    def _next_edns(self) -> bytes:
        return self._tail(self._advance(), True)

    def truncated(self, limit: int, edns: bool, idx: int, extra: int = 0) -> tuple[bytes, bytes]:
        """(head, tail) for a response that must fit `limit` bytes: as many whole answer RRs
        as fit (TC set when any is left out), then additional RRs as room allows (no TC).
        `limit` >= 65535 (TCP) is mesos-dns's truncate: TC, no additional RRs at all, then
        as many answer RRs as fit. `extra`: bytes the question as asked has beyond this
        answer's name (".*" removed, see Zone._respond), left out of the room."""
        return self._truncated_at(limit, edns, idx, self._advance(), extra)

    def _advance(self) -> int:
        """The next turn (the leading answer RR), on the counter every path shares."""
        if self._n:
            self._turn = turn = (self._turn + 1) % self._n
            return turn
        return next(self._turns)

    def variants(self, size: int, edns: bool, idx: int) -> list[tuple[bytes, bytes]]:
        """(head, tail) of every rotation, as a UDP client offering `size` bytes gets them."""
        if (self.max_edns if edns else self.max_plain) <= max(size, 512):
            head = (self.heads_edns if edns else self.heads_plain)[idx]
            return [(head, tail) for tail in (self.tails_edns if edns else self.tails_plain)]
        return [self._truncated_at(size, edns, idx, turn) for turn in range(self.orders)]

    def hot(self, size: int, edns: bool, idx: int, q: bytes) -> tuple[Callable[[], bytes], int]:
        """(next response after the ID, bytes it holds) for a UDP client offering `size`
        bytes whose question is `q`: for Zone.hot. The rotations go on where they are."""
        if not self._n:
            forms = [head + q + tail for head, tail in self.variants(size, edns, idx)]
            return map(forms.__getitem__, self._turns).__next__, sum(map(len, forms))
        if (self.max_edns if edns else self.max_plain) <= max(size, 512):
            prefix = (self.heads_edns if edns else self.heads_plain)[idx] + q
            tail = self._next_edns if edns else self._next_plain
            return lambda: prefix + tail(), self.max_edns
        truncated = self.truncated

        def form() -> bytes:
            head, tail = truncated(size, edns, idx)
            return head + q + tail
        return form, max(size, 512)

    def _truncated_at(self, limit: int, edns: bool, idx: int, turn: int, extra: int = 0
                      ) -> tuple[bytes, bytes]:
        tcp = limit >= 65535
        limit = limit if tcp else max(c for c in SIZE_CLASSES if c <= max(limit, 512))
        if extra:  # not memoized: every length of question would add its own forms
            answers, additional = self._rots[0 if self._n else turn]
            if self._n:
                answers = answers[turn:] + answers[:turn]
            head, tail = self._truncate(limit - extra, edns, answers, additional, tcp)
            return head[idx * 10:idx * 10 + 10], tail
        if self._n:
            head, tail = self._truncated_rotation(limit, edns, turn, tcp)
            return head[idx * 10:idx * 10 + 10], tail
        memo_key = (limit, edns, turn)
        hit = self._memo.get(memo_key)
        if hit is None:
            hit = self._memo[memo_key] = self._truncate(limit, edns, *self._rots[turn], tcp)
        head, tail = hit
        return head[idx * 10:idx * 10 + 10], tail

    def _truncated_rotation(self, limit: int, edns: bool, turn: int, tcp: bool
                            ) -> tuple[bytes, bytes]:
        """`_truncate` of rotation `turn` (rotate mode): the answer RRs that fit are a slice;
        what follows them depends only on how many fit, so that part is memoized."""
        n, c = self._n, self._cum
        room = limit - 12 - self._qlen - (len(OPT_RR) if edns else 0)
        end = bisect_right(c, c[turn] + room, turn, turn + n + 1) - 1  # last RR that fits
        memo_key = (limit, edns, end - turn)
        hit = self._memo.get(memo_key)
        if hit is None:
            if end - turn < n:  # TC: no authority or additional RRs
                hs = heads(self._rcode, (1, end - turn, 0, 1 if edns else 0), aa=True,
                           ra=self._ra)
                hit = b"".join(bytes((h[0] | 0x02,)) + h[1:] for h in hs), (
                    OPT_RR if edns else b"")
            else:  # every answer RR fits, whatever the order: the rest is always the same
                head, tail = self._truncate(limit, edns, *self._rots[0], tcp)
                hit = head, tail[c[n]:]
            self._memo[memo_key] = hit
        return hit[0], self._blob2[c[turn]:c[end]] + hit[1]

    def _truncate(self, limit: int, edns: bool, answers: tuple[bytes, ...],
                  additional: tuple[bytes, ...], tcp: bool = False) -> tuple[bytes, bytes]:
        room = limit - 12 - self._qlen - (len(OPT_RR) if edns else 0)
        kept_an = _fit(answers, room)
        room -= sum(map(len, kept_an))
        # mesos-dns's truncate over TCP: a message over the max has TC and no additional RRs.
        tc = tcp or len(kept_an) < len(answers)
        kept_ns = () if tc else _fit(self._authority, room)
        room -= sum(map(len, kept_ns))
        kept_ar = () if tc else _fit(additional, room)
        counts = (1, len(kept_an), len(kept_ns), len(kept_ar) + (1 if edns else 0))
        hs = heads(self._rcode, counts, aa=True, ra=self._ra)
        if tc:
            hs = tuple(bytes((h[0] | 0x02,)) + h[1:] for h in hs)
        tail = b"".join(kept_an) + b"".join(kept_ns) + b"".join(kept_ar)
        return b"".join(hs), tail + (OPT_RR if edns else b"")


def _fit(rrs: tuple[bytes, ...], room: int) -> tuple[bytes, ...]:
    kept = []
    for rr in rrs:
        room -= len(rr)
        if room < 0:
            break
        kept.append(rr)
    return tuple(kept)
