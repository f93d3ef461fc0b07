"""Hostile DNS packets, reproducible from a seed, for fuzzing a DNS server.

`Packets(seed, questions).next()` returns one packet: random bytes, a valid query
mutated (bit flips, cuts, inserted or deleted bytes) or a hand-made nasty (compression
loops, absurd counts, long names, odd classes, types, opcodes and EDNS, responses).

IDs are steered so a test can tell things apart: every packet with QR=1 carries
`RESPONSE_ID` (an answer with that ID is a reflected response), every other packet has
the top bit of its ID set, and `PROBE_IDS` (top bit clear) are left for valid probes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

RESPONSE_ID = 0xFFFF
PROBE_IDS = range(0x0000, 0x8000)
Question = tuple[str, int]  # (name, qtype)


def wire(name: str) -> bytes:
    """A wire name, without any validation (labels may be empty, long or binary)."""
    labels = [label.encode("latin-1") for label in name.rstrip(".").split(".")] if name.strip(".") else []
    return b"".join(bytes((len(label) & 0xFF,)) + label for label in labels) + b"\x00"


def header(qid: int, *, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


def opt(size: int = 1232, *, version: int = 0, ext_rcode: int = 0, do: bool = False,
        options: bytes = b"", owner: bytes = b"\x00", rdlength: int | None = None) -> bytes:
    """An OPT pseudo-RR; `rdlength` may lie about the length of `options`."""
    ttl = ext_rcode << 24 | version << 16 | (0x8000 if do else 0)
    n = len(options) if rdlength is None else rdlength
    return owner + struct.pack(">HHIH", 41, size, ttl, n) + options


def option(code: int, data: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HH", code, len(data) if length is None else length) + data


def query(name: str | bytes, qtype: int = 1, qclass: int = 1, *, qid: int = 0x8000,
          edns: int | None = None, flags: int = 0x0100) -> bytes:
    """A well-formed query; `edns` is the UDP payload size to advertise (None: no EDNS)."""
    qname = wire(name) if isinstance(name, str) else name
    q = header(qid, flags=flags, ar=0 if edns is None else 1) + qname + struct.pack(">HH", qtype, qclass)
    return q + (opt(edns) if edns is not None else b"")


def steer_id(data: bytes) -> bytes:
    """Apply the ID rules of this module (see the module docstring)."""
    if len(data) < 3:
        return data
    if data[2] & 0x80:
        return b"\xff\xff" + data[2:]
    qid = min((data[0] << 8 | data[1]) | 0x8000, RESPONSE_ID - 1)
    return struct.pack(">H", qid) + data[2:]


class Packets:
    """An endless, seeded stream of hostile packets around the valid `questions`."""

    def __init__(self, seed: int, questions: Sequence[Question], domain: str = "mesos") -> None:
        self.rng = random.Random(seed)
        self.questions = list(questions)
        self.domain = domain
        self.nasties: list[Callable[[], bytes]] = [
            self.pointer_to_itself, self.pointers_to_each_other, self.pointer_past_end,
            self.huge_counts, self.long_label, self.long_name, self.odd_class_or_type,
            self.several_questions, self.other_opcode, self.response, self.odd_edns_options,
            self.edns_version, self.two_opts, self.opt_in_wrong_section, self.payload_sizes,
            self.mixed_case, self.random_name, self.odd_flags, self.trailing_garbage,
        ]

    def next(self) -> bytes:
        r = self.rng.random()
        if r < 0.15:
            data = self.random_bytes()
        elif r < 0.5:
            data = self.mutated()
        else:
            data = self.rng.choice(self.nasties)()
        return steer_id(data)

    # --- building blocks -----------------------------------------------------------
    def valid(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        edns = self.rng.choice((None, None, 512, 1232, 4096))
        return query(name, qtype, qid=self.rng.getrandbits(16), edns=edns)

    def label(self, n: int | None = None) -> str:
        n = self.rng.randint(1, 20) if n is None else n
        return "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(n))

    def qid(self) -> int:
        return self.rng.getrandbits(16)

    # --- kinds of packets ------------------------------------------------------------
    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, 600))

    def mutated(self) -> bytes:
        data = bytearray(self.valid())
        for _ in range(self.rng.randint(1, 4)):
            how = self.rng.randrange(5)
            if how == 0:  # flip a bit
                i = self.rng.randrange(len(data))
                data[i] ^= 1 << self.rng.randrange(8)
            elif how == 1:  # cut, often inside the header
                cut = self.rng.randrange(13) if self.rng.random() < 0.4 else self.rng.randrange(len(data) + 1)
                del data[cut:]
            elif how == 2:
                data.insert(self.rng.randint(0, len(data)), self.rng.randrange(256))
            elif how == 3 and data:
                del data[self.rng.randrange(len(data))]
            elif data:
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            if not data:
                break
        return bytes(data)

    def pointer_to_itself(self) -> bytes:
        return header(self.qid()) + b"\xc0\x0c" + struct.pack(">HH", 1, 1)

    def pointers_to_each_other(self) -> bytes:
        """Two backward-looking pointers that still loop: the second byte of a pointer
        at 191 (0xc0) reads as a pointer too, back to 191; or a label, then a pointer back
        to the start of the question."""
        if self.rng.random() < 0.5:
            head = header(self.qid()) + b"\xc0\xbf" + struct.pack(">HH", 1, 1)
            return head + bytes(191 - len(head)) + b"\xc0\xc0\xbf"
        return header(self.qid()) + b"\x03abc\xc0\x0c" + struct.pack(">HH", 1, 1)

    def pointer_past_end(self) -> bytes:
        target = self.rng.choice((0x3FFF, 200, 30, 18))
        return header(self.qid()) + struct.pack(">H", 0xC000 | target) + struct.pack(">HH", 1, 1)

    def huge_counts(self) -> bytes:
        counts = [self.rng.choice((0, 1, 65535, self.rng.randrange(65536))) for _ in range(4)]
        counts[self.rng.randrange(4)] = 65535
        body = self.valid()[12:] if self.rng.random() < 0.5 else b""
        qd, an, ns, ar = counts
        return header(self.qid(), qd=qd, an=an, ns=ns, ar=ar) + body

    def long_label(self) -> bytes:
        n = self.rng.randint(64, 255)
        name = bytes((n,)) + self.rng.randbytes(n) + wire(self.domain)
        return query(name, qid=self.qid())

    def long_name(self) -> bytes:
        """256..600 bytes of well-formed labels ending in the domain: too long to be a name."""
        labels = []
        while sum(len(x) + 1 for x in labels) < self.rng.randint(256, 600):
            labels.append(self.label(self.rng.randint(1, 63)))
        return query(".".join(labels + [self.domain]), qid=self.qid(),
                     edns=self.rng.choice((None, 1232)))

    def odd_class_or_type(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        qclass = self.rng.choice((1, 0, 2, 3, 4, 254, 255, 65280, 65535, self.rng.randrange(65536)))
        if self.rng.random() < 0.6:
            qtype = self.rng.choice((0, 41, 249, 250, 251, 252, 255, 65535, self.rng.randrange(65536)))
        return query(name, qtype, qclass, qid=self.qid(), edns=self.rng.choice((None, 1232)))

    def several_questions(self) -> bytes:
        n = self.rng.randint(2, 5)
        questions = b"".join(wire(name) + struct.pack(">HH", qtype, 1)
                             for name, qtype in self.rng.choices(self.questions, k=n))
        qd = self.rng.choice((n, n - 1, n + 1, 65535))
        return header(self.qid(), qd=qd) + questions

    def other_opcode(self) -> bytes:
        opcode = self.rng.choice((1, 2, 4, 5, 6, 15))  # IQUERY, STATUS, NOTIFY, UPDATE, ...
        q = bytearray(self.valid())
        q[2] = (q[2] & 0x87) | opcode << 3
        return bytes(q)

    def response(self) -> bytes:
        """A response (QR=1) sent to the server: answering it could start a loop."""
        q = bytearray(self.valid())
        q[2] |= 0x80
        if self.rng.random() < 0.5:
            q[3] = (q[3] & 0xF0) | self.rng.randrange(16)
        return bytes(q)

    def odd_edns_options(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        ecs_len = self.rng.choice((0, 1, 3, 4, 8, 20))
        opts = self.rng.choice((
            option(self.rng.randrange(65536), self.rng.randbytes(self.rng.randint(0, 30))),
            option(8, struct.pack(">HBB", self.rng.choice((0, 1, 2, 3)), self.rng.randint(0, 255),
                                  self.rng.randint(0, 255)) + self.rng.randbytes(ecs_len)),
            option(8, b"\x00\x01\x18", length=self.rng.choice((1, 2, 40))),
            option(10, self.rng.randbytes(self.rng.choice((0, 7, 8, 16, 24, 40, 41)))),
            option(12, bytes(self.rng.randint(0, 64))),  # padding
            option(self.rng.randrange(65536), b"xy", length=self.rng.randint(3, 65535)),  # overruns
        ))
        rdlength = self.rng.choice((None, None, len(opts) + self.rng.randint(1, 100),
                                    max(0, len(opts) - 1)))
        return (header(self.qid(), ar=1) + wire(name) + struct.pack(">HH", qtype, 1)
                + opt(self.rng.choice((512, 1232, 4096)), options=opts, rdlength=rdlength,
                      do=self.rng.random() < 0.5))

    def edns_version(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        return (header(self.qid(), ar=1) + wire(name) + struct.pack(">HH", qtype, 1)
                + opt(1232, version=self.rng.randint(1, 255)))

    def two_opts(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        return (header(self.qid(), ar=2) + wire(name) + struct.pack(">HH", qtype, 1)
                + opt(1232) + opt(self.rng.choice((512, 4096)), version=self.rng.choice((0, 1))))

    def opt_in_wrong_section(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        section = self.rng.choice(({"an": 1}, {"ns": 1}, {"ar": 1}))
        owner = b"\x00" if "ar" not in section else wire(self.label() + ".")  # or non-root owner
        return (header(self.qid(), **section) + wire(name) + struct.pack(">HH", qtype, 1)
                + opt(1232, owner=owner))

    def payload_sizes(self) -> bytes:
        name, qtype = self.rng.choice(self.questions)
        size = self.rng.choice((0, 1, 511, 512, 513, 1232, 4095, 4096, 4097, 65535,
                                self.rng.randrange(65536)))
        return query(name, qtype, qid=self.qid(), edns=size)

    def mixed_case(self) -> bytes:
        """A valid question with random 0x20 case and payload size: many distinct packets
        for the same few answers (what an answer cache keyed by packet bytes must survive)."""
        name, qtype = self.rng.choice(self.questions)
        name = "".join(c.upper() if self.rng.random() < 0.5 else c for c in name)
        return query(name, qtype, qid=self.qid(), flags=self.rng.choice((0, 0x0100, 0x0110)),
                     edns=self.rng.choice((None, self.rng.randint(512, 65535))))

    def random_name(self) -> bytes:
        name = ".".join(self.label() for _ in range(self.rng.randint(1, 4)))
        return query(f"{name}.{self.domain}", self.rng.choice((1, 28, 33, 255)), qid=self.qid(),
                     edns=self.rng.choice((None, 1232)))

    def odd_flags(self) -> bytes:
        q = bytearray(self.valid())
        q[2] = (q[2] & 0x79) | self.rng.choice((0, 0x02, 0x04, 0x06))  # TC, AA set in a query
        q[3] = self.rng.randrange(256)  # RA, Z, AD, CD, rcode
        return bytes(q)

    def trailing_garbage(self) -> bytes:
        return self.valid() + self.rng.randbytes(self.rng.randint(1, 64))


def tcp_frame(payload: bytes, length: int | None = None) -> bytes:
    """One RFC 1035 section 4.2.2 frame; `length` may lie about the payload's length."""
    return struct.pack(">H", len(payload) if length is None else length) + payload
