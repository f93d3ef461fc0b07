"""The resolver: query bytes in, response bytes out (sans-IO, no clock, no logging).

`build_zone` turns a RecordSet into a `Zone` off the query path: an answer cache keyed
by the lowercased question as it appears on the wire (name + type + class), the set of
existing names (for NODATA vs NXDOMAIN) and prebuilt negative answers. `Zone.answer`
serves the common case (one question, no or plain EDNS, cached) with a slice, a dict
lookup and a concatenation; anything unusual goes through dnslib.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import cycle, repeat

from dnslib import QTYPE, DNSRecord

from discoveryd.dns import answers as w
from discoveryd.dns.recordset import RecordSet
from discoveryd.settings import DnsSettings

FORWARD = object()  # Zone.answer: the name is outside the domain; forward the query as is
QTYPE_NAMES: dict[int, str] = dict(QTYPE.forward)
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"  # qdcount 1, ancount 0, nscount 0
_QTAIL = struct.Struct(">HH")
Result = tuple[object, str, str]  # (bytes to send | FORWARD | None = drop, qtype, rcode or qname)
# Zone.hot: query bytes after the ID -> (next response after the ID, [queries counted]).
Hot = tuple[Callable[[], bytes], list[int]]
HOT_LIMIT = 65536  # entries; the table starts over when full (e.g. a flood of random names)


class Zone:
    """Everything needed to answer for `domain`, built once per record set."""

    def __init__(self, settings: DnsSettings, serial: int, *, ready: bool = True) -> None:
        self.ready = ready
        self.external = settings.external
        self.domain_wire = w.name_to_wire(settings.domain + ".")
        self.cache: dict[bytes, w.Answer] = {}
        self.hot: dict[bytes, Hot] = {}
        self.names: set[bytes] = {self.domain_wire}
        s = settings.soa
        ttl = min(settings.ttl, s.minttl)
        soa = w.soa_rdata(s.mname + ".", s.rname + ".", serial, s.refresh, s.retry, s.expire,
                          s.minttl)
        self.soa_rdata = soa
        self.soa_rr = w.pack_rr(self.domain_wire, w.SOA, ttl, soa)
        self._neg = {
            (rcode, edns): w.heads(rcode, (1, 0, 1, 1 if edns else 0), aa=True, ra=self.external)
            for rcode in (w.NOERROR, w.NXDOMAIN) for edns in (False, True)
        }

    def answer(self, data: bytes, tcp: bool = False) -> Result:
        """The response to one query packet (see `Result`)."""
        e = data.find(0, 12)
        if e > 0 and data[4:10] == _ONE_QUESTION and not data[2] & 0xF8:
            rest = len(data) - e - 5
            if rest == 0 and data[10:12] == b"\x00\x00":
                edns, size = False, 512
            elif (rest == 11 and data[10:12] == b"\x00\x01" and data[e + 5:e + 8] == b"\x00\x00\x29"
                  and data[e + 10:e + 12] == b"\x00\x00" and data[e + 14:e + 16] == b"\x00\x00"):
                edns, size = True, data[e + 8] << 8 | data[e + 9]
            else:
                return self._slow(data, tcp)
            q = data[12:e + 5]
            hit = self.cache.get(q.lower())
            if hit is not None:
                idx = (data[2] & 1) | ((data[3] >> 3) & 2)
                if edns:
                    if tcp or hit.max_edns <= size or hit.max_edns <= 512:
                        return (data[:2] + hit.heads_edns[idx] + q + hit.next_edns(),
                                QTYPE_NAMES.get(data[e + 1] << 8 | data[e + 2], "other"),
                                hit.rcode_name)
                elif tcp or hit.max_plain <= 512:
                    return (data[:2] + hit.heads_plain[idx] + q + hit.next_plain(),
                            QTYPE_NAMES.get(data[e + 1] << 8 | data[e + 2], "other"),
                            hit.rcode_name)
            if _label_offsets(data[12:e + 1]) is not None:
                return self._respond(data[:2], data[2] & 1 | (data[3] >> 3) & 2, q, edns, size, tcp)
        return self._slow(data, tcp)

    def remember(self, data: bytes, out: bytes, counter: list[int]) -> None:
        """Enter `data` in `hot` when `out` = answer(data) is, up to the ID and the RR
        rotation, what every query with these bytes after the ID gets: a plain or simple
        EDNS query with one uncompressed question. `counter` is the entry's query count."""
        e = data.find(0, 12)
        rest = len(data) - e - 5
        if e < 0 or data[2] & 0xF8 or (rest != 0 and rest != 11):
            return
        if len(self.hot) >= HOT_LIMIT:
            self.hot.clear()
        q = data[12:e + 5]
        hit = self.cache.get(q.lower())
        if hit is None:  # a negative or error answer: the same bytes every time
            self.hot[data[2:]] = repeat(out[2:]).__next__, counter
            return
        size = data[e + 8] << 8 | data[e + 9] if rest else 512
        idx = (data[2] & 1) | ((data[3] >> 3) & 2)
        forms = [head + q + tail for head, tail in hit.variants(size, bool(rest), idx)]
        if out[2:] in forms:  # else the packet was not what it seemed (answered the slow way)
            self.hot[data[2:]] = cycle(forms).__next__, counter

    def _respond(self, qid: bytes, idx: int, q: bytes, edns: bool, size: int, tcp: bool) -> Result:
        """Answer a well-formed single question `q` (name + type + class, as asked)."""
        qtype, qclass = _QTAIL.unpack(q[-4:])
        name = q[:-4].lower()
        tname = QTYPE_NAMES.get(qtype, "other")
        offsets = _label_offsets(name) or [0]
        cut = len(name) - len(self.domain_wire)
        if not name.endswith(self.domain_wire) or cut not in offsets:
            if self.external:
                return FORWARD, tname, _wire_to_text(name)
            return self._error(qid, idx, q, w.REFUSED, edns, aa=False), tname, "REFUSED"
        if qclass not in (1, 255):
            return self._error(qid, idx, q, w.REFUSED, edns), tname, "REFUSED"
        if not self.ready:
            return self._error(qid, idx, q, w.SERVFAIL, edns), tname, "SERVFAIL"
        hit = self.cache.get(name + q[-4:-2] + b"\x00\x01")
        if hit is not None:
            if tcp or (hit.max_edns if edns else hit.max_plain) <= max(size, 512):
                tail = hit.next_edns() if edns else hit.next_plain()
                head = (hit.heads_edns if edns else hit.heads_plain)[idx]
            else:
                head, tail = hit.truncated(size, edns, idx)
            return qid + head + q + tail, tname, hit.rcode_name
        if qtype in (251, 252):  # IXFR, AXFR
            return self._error(qid, idx, q, w.NOTIMP, edns), tname, "NOTIMP"
        rcode = w.NOERROR if name in self.names else w.NXDOMAIN
        tail = self.soa_rr + (w.OPT_RR if edns else b"")
        return qid + self._neg[(rcode, edns)][idx] + q + tail, tname, w.RCODE_NAMES[rcode]

    def _error(self, qid: bytes, idx: int, q: bytes, rcode: int, edns: bool, *,
               aa: bool = True) -> bytes:
        counts = (1 if q else 0, 0, 0, 1 if edns else 0)
        return (qid + w.heads(rcode, counts, aa=aa, ra=self.external)[idx] + q
                + (w.OPT_RR if edns else b""))

    def _slow(self, data: bytes, tcp: bool) -> Result:
        """Anything the fast path does not take: parsed with dnslib, checked strictly."""
        if len(data) < 12 or data[2] & 0x80:
            return None, "", "dropped"  # no header, or a response: never answer those
        qid, idx = data[:2], data[2] & 1 | (data[3] >> 3) & 2
        if (data[2] >> 3) & 0xF:
            return self._error(qid, idx, b"", w.NOTIMP, False), "other", "NOTIMP"
        try:
            rec = DNSRecord.parse(data)
            if len(rec.questions) != 1:
                raise ValueError("not one question")
            question = rec.questions[0]
            name = b"".join(bytes((len(x),)) + x for x in question.qname.label) + b"\x00"
            if _label_offsets(name) is None or len(name) > 255:
                raise ValueError("bad name")
            opts = [rr for rr in rec.ar if rr.rtype == w.OPT]
            if len(opts) > 1 or any(str(rr.rname) != "." for rr in opts):
                raise ValueError("bad OPT")
        except Exception:  # dnslib raises many types on garbage; all mean the same here
            return self._error(qid, idx, b"", w.FORMERR, False), "other", "FORMERR"
        q = name + _QTAIL.pack(question.qtype, question.qclass)
        edns = bool(opts)
        if edns and (opts[0].ttl >> 16) & 0xFF:  # EDNS version we do not speak
            badvers = qid + w.heads(0, (1, 0, 0, 1), aa=False, ra=self.external)[idx] + q
            return badvers + w.OPT_RR[:5] + b"\x01" + w.OPT_RR[6:], "other", "BADVERS"
        size = opts[0].rclass if edns else 512
        return self._respond(qid, idx, q, edns, size, tcp)


def _label_offsets(name: bytes) -> list[int] | None:
    """Offsets of each label in a wire name without compression; None if malformed."""
    offsets, i, end = [], 0, len(name) - 1
    while i < end:
        n = name[i]
        if n == 0 or n > 63:
            return None
        offsets.append(i)
        i += n + 1
    if i != end or name[end] != 0:
        return None
    offsets.append(end)
    return offsets


def _wire_to_text(name: bytes) -> str:
    labels, i = [], 0
    while name[i]:
        labels.append(name[i + 1:i + 1 + name[i]].decode("ascii", "replace"))
        i += name[i] + 1
    return ".".join(labels) + "."


def build_zone(record_set: RecordSet, settings: DnsSettings, serial: int
               ) -> tuple[Zone, list[tuple[str, str]]]:
    """Index and prebuild every answer; returns the zone and the (name, reason) skipped."""
    zone, skipped, ttl = Zone(settings, serial), [], settings.ttl
    by_name: dict[bytes, dict[int, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    addresses: dict[bytes, list[bytes]] = defaultdict(list)  # target -> its A/AAAA RRs

    def add(name: str, rtype: int, items: Iterable, rdata) -> None:
        try:
            text = name.lower().rstrip(".")
            if text != settings.domain and not text.endswith("." + settings.domain):
                raise ValueError("outside the domain")
            wire = w.name_to_wire(text + ".")
            for item in items:
                rd = rdata(item)
                by_name[wire][rtype].append(w.pack_rr(b"\xc0\x0c", rtype, ttl, rd))
                if rtype != w.SRV:
                    addresses[wire].append(w.pack_rr(wire, rtype, ttl, rd))
        except (ValueError, UnicodeError) as e:
            skipped.append((name, str(e)))

    for name, ips in record_set.a.items():
        add(name, w.A, ips, w.a_rdata)
    for name, ips in record_set.aaaa.items():
        add(name, w.AAAA, ips, w.aaaa_rdata)
    for name, srvs in record_set.srv.items():
        add(name, w.SRV, sorted(srvs), w.srv_rdata)
    apex = by_name[zone.domain_wire]
    apex[w.SOA].append(w.pack_rr(b"\xc0\x0c", w.SOA, ttl, zone.soa_rdata))
    mname = w.name_to_wire(settings.soa.mname.lower() + ".")
    apex[w.NS].append(w.pack_rr(b"\xc0\x0c", w.NS, ttl, mname))

    for wire, types in by_name.items():
        qlen = len(wire) + 4
        for rtype, rrs in types.items():
            rots = w.rotations(rrs)
            adds = [_additional(rot, addresses, mname) for rot in rots]
            answer = w.Answer(qlen, w.NOERROR, rots, adds, ra=zone.external)
            zone.cache[wire + _QTAIL.pack(rtype, 1)] = answer
        if len(types) > 1:
            rrs = sum(types.values(), [])
            rots = w.rotations(rrs)
            adds = [_additional(rot, addresses, mname) for rot in rots]
            answer = w.Answer(qlen, w.NOERROR, rots, adds, ra=zone.external)
        zone.cache[wire + _QTAIL.pack(w.ANY, 1)] = answer  # ANY: every type of the name
        zone.names.update(wire[i:] for i in (_label_offsets(wire) or [0])[:-1]
                          if wire[i:].endswith(zone.domain_wire))
    return zone, skipped


def _additional(rot: tuple[bytes, ...], addresses: dict[bytes, list[bytes]], mname: bytes
                ) -> tuple[bytes, ...]:
    """A/AAAA RRs of the SRV targets (or of the NS) in `rot`, in answer order, once each."""
    targets: dict[bytes, None] = {}
    for rr in rot:
        rtype = rr[2:4]
        if rtype == b"\x00\x21":  # SRV: owner pointer, RR header, priority/weight/port, target
            targets[rr[18:]] = None
        elif rtype == b"\x00\x02":
            targets[mname] = None
    return tuple(rr for t in targets for rr in addresses.get(t, ()))


def failure_response(query: bytes, rcode: int, ra: bool) -> bytes:
    """`rcode` (e.g. SERVFAIL when every upstream failed) echoing the query's question."""
    rec = DNSRecord.parse(query)
    reply = rec.reply(ra=int(ra), aa=0)
    reply.header.rcode = rcode
    return bytes(reply.pack())
