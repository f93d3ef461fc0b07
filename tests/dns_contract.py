"""The contract of the DNS query function (`Zone.answer`) for any packet at all.

A malformed packet gets FORMERR or is dropped; a response or a headerless scrap is never
answered; every answer is a well-formed message with the query's ID and opcode.
Shared by tests/test_dns_fuzz.py and the atheris harness (benchmarks/dns_atheris.py).
"""

from __future__ import annotations

import struct

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from discoveryd.dns.answers import MAX_UDP, SERVFAIL
from discoveryd.dns.resolver import FORWARD, Zone, failure_response

RCODES = {"NOERROR", "FORMERR", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS"}


def check_contract(zone: Zone, data: bytes, tcp: bool) -> dns.message.Message | None:
    """What any packet may get: nothing (only if it is no query), forwarding (a name
    outside the domain), or a well-formed response to it with an rcode from RCODES;
    over UDP never more than MAX_UDP bytes."""
    out, _, rcode = zone.answer(data, tcp)
    if len(data) < 12 or data[2] & 0x80:
        assert out is None, "a response or a headerless packet must never be answered"
    if out is FORWARD:  # and when no upstream answers, this goes back:
        assert zone.external and not rcode.lower().endswith(".mesos."), rcode
        servfail = dns.message.from_wire(failure_response(data, SERVFAIL, ra=True))
        assert servfail.id == struct.unpack(">H", data[:2])[0] and servfail.rcode() == SERVFAIL
        return None
    if out is None:
        assert rcode == "dropped"
        return None
    assert isinstance(out, bytes) and rcode in RCODES
    msg = dns.message.from_wire(out)
    assert msg.id == struct.unpack(">H", data[:2])[0] and msg.flags & dns.flags.QR
    assert msg.opcode() == (data[2] >> 3) & 0xF, "a response carries the query's opcode"
    assert dns.rcode.to_text(msg.rcode()) == rcode
    assert tcp or len(out) <= MAX_UDP
    return msg


def check_against_query(data: bytes, msg: dns.message.Message | None, tcp: bool) -> None:
    """Where dnspython reads `data` as a plain query, the answer must fit it."""
    try:
        q = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return
    if q.opcode() != dns.opcode.QUERY or q.flags & dns.flags.QR or len(q.question) != 1:
        return
    assert msg is not None
    if dns.rcode.to_text(msg.rcode()) in ("NOERROR", "NXDOMAIN", "REFUSED"):
        assert [r.name.to_text() for r in msg.question] == [q.question[0].name.to_text()]
    if not tcp:
        limit = max(512, min(q.payload, MAX_UDP)) if q.edns >= 0 else 512
        assert len(msg.to_wire()) <= limit
