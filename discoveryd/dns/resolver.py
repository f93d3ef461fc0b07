"""The resolver: query bytes in, response bytes out (sans-IO, no clock, no logging).

`build_zone` turns a RecordSet into a `Zone` off the query path: an answer cache keyed
by the lowercased question as it appears on the wire (name + type + class), the set of
existing names (for NODATA vs NXDOMAIN) and prebuilt negative answers. `Zone.answer`
serves the common case (one question, no EDNS or EDNS whose options are ignored, cached)
with a slice, a dict lookup and a concatenation; anything unusual goes through dnslib.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

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
# ... or when its packets add up to HOT_BYTES: an entry for a big answer holds every rotation
# (up to ROTATION_BYTES), so a flood of 0x20 spellings of one big name would otherwise take GBs.
HOT_BYTES = 16 << 20
HOT_ENTRY_OVERHEAD = 300  # bytes of Python objects per entry besides the packets...
HOT_FORM_OVERHEAD = 64  # ... and per response form it cycles through
MAX_TCP = 65535  # bytes in a DNS message over TCP (its 2-byte length prefix)
_KEYS = {t: _QTAIL.pack(t, 1) for t in (1, 2, 6, 28, 33, 255)}  # answer cache key: name + these
_NONE: frozenset[bytes] = frozenset()


class Zone:
    """Everything needed to answer for `domain`, built once per record set."""

    def __init__(self, settings: DnsSettings, serial: int, *, ready: bool = True) -> None:
        self.ready = ready
        self.external = settings.external
        self.domain_wire = w.name_to_wire(settings.domain + ".")
        # zone_resolvers zones inside the domain: the longest match wins, so they forward.
        self.forwarded = tuple(w.name_to_wire(z + ".") for z in forwarded_zones(settings))
        self.cache: dict[bytes, w.Answer] = {}
        self.hot: dict[bytes, Hot] = {}  # always starts empty: it may hold changed answers
        self.hot_bytes = 0  # what `hot` holds, roughly (see HOT_BYTES)
        self.names: dict[bytes, int] = {self.domain_wire: 1}  # `in`: the name exists
        self._index: _Index | None = None  # set by build_zone, for the next build
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
        # e <= 266: a name of at most 255 bytes; longer ones get FORMERR from _slow.
        if 0 < e <= 266 and data[4:10] == _ONE_QUESTION and not data[2] & 0xF8:
            rest = len(data) - e - 5
            if rest == 0 and data[10:12] == b"\x00\x00":
                edns, size = False, 512
            elif (rest == 11 and data[10:12] == b"\x00\x01" and data[e + 5:e + 8] == b"\x00\x00\x29"
                  and data[e + 10:e + 12] == b"\x00\x00" and data[e + 14:e + 16] == b"\x00\x00"):
                # A client may offer up to 65535 bytes; over UDP we never send more than MAX_UDP.
                edns, size = True, min(data[e + 8] << 8 | data[e + 9], w.MAX_UDP)
            else:
                shape = _shape(data, e)  # e.g. EDNS options (a COOKIE from bind9 or dig)
                if shape is None:
                    return self._slow(data, tcp)
                edns, size = shape
            q = data[12:e + 5]
            hit = self.cache.get(q.lower())
            if hit is not None:
                idx = (data[2] & 1) | ((data[3] >> 3) & 2)
                if edns:
                    if (hit.max_edns <= size or hit.max_edns <= 512
                            or tcp and hit.max_edns <= MAX_TCP):
                        return (data[:2] + hit.heads_edns[idx] + q + hit.next_edns(),
                                QTYPE_NAMES.get(data[e + 1] << 8 | data[e + 2], "other"),
                                hit.rcode_name)
                elif hit.max_plain <= 512 or tcp and hit.max_plain <= MAX_TCP:
                    return (data[:2] + hit.heads_plain[idx] + q + hit.next_plain(),
                            QTYPE_NAMES.get(data[e + 1] << 8 | data[e + 2], "other"),
                            hit.rcode_name)
            offsets = _label_offsets(data[12:e + 1])
            if offsets is not None:
                return self._respond(data[:2], data[2] & 1 | (data[3] >> 3) & 2, q, offsets, edns,
                                     size, tcp)
        return self._slow(data, tcp)

    def remember(self, data: bytes, out: bytes, counter: list[int]) -> None:
        """Enter `data` in `hot` when `out` = answer(data) is, up to the ID and the RR
        rotation, what every query with these bytes after the ID gets: a query the fast
        path takes (see `_shape`). `counter` is the entry's query count."""
        e = data.find(0, 12)
        shape = _shape(data, e)
        if shape is None:
            return
        if len(self.hot) >= HOT_LIMIT or self.hot_bytes >= HOT_BYTES:
            self.hot.clear()
            self.hot_bytes = 0
        q = data[12:e + 5]
        hit = self.cache.get(q.lower())
        if hit is None:  # a negative or error answer: the same bytes every time
            if out[6:8] != b"\x00\x00":  # records after all (".*" removed): they rotate
                return
            self.hot[data[2:]] = repeat(out[2:]).__next__, counter
            self.hot_bytes += len(data) + len(out) + HOT_ENTRY_OVERHEAD + HOT_FORM_OVERHEAD
            return
        idx = (data[2] & 1) | ((data[3] >> 3) & 2)
        form, held = hit.hot(shape[1], shape[0], idx, q)
        self.hot[data[2:]] = form, counter
        self.hot_bytes += (len(data) + held + HOT_ENTRY_OVERHEAD
                           + HOT_FORM_OVERHEAD * min(hit.orders, 64))

    def _respond(self, qid: bytes, idx: int, q: bytes, offsets: list[int], edns: bool, size: int,
                 tcp: bool) -> Result:
        """Answer a well-formed single question `q` (name + type + class, as asked) whose
        name's labels start at `offsets` (see `_label_offsets`)."""
        qtype, qclass = _QTAIL.unpack(q[-4:])
        name = q[:-4].lower()
        tname = QTYPE_NAMES.get(qtype, "other")
        cut = len(name) - len(self.domain_wire)
        if (not name.endswith(self.domain_wire) or cut not in offsets
                or self.forwarded and self._in_forwarded(name, offsets)):
            if self.external:
                return FORWARD, tname, _wire_to_text(name)
            return self._error(qid, idx, q, w.REFUSED, edns, aa=False), tname, "REFUSED"
        if qclass not in (1, 255):
            return self._error(qid, idx, q, w.REFUSED, edns), tname, "REFUSED"
        if not self.ready:
            return self._error(qid, idx, q, w.SERVFAIL, edns), tname, "SERVFAIL"
        hit = self.cache.get(name + q[-4:-2] + b"\x00\x01")
        if hit is not None:
            return self._respond_hit(qid, idx, q, hit, edns, size, tcp), tname, hit.rcode_name
        # mesos-dns's cleanWild: ".*" removed from the name, on a miss only. Not when a
        # label holds a "." itself: mesos-dns sees "web\\.*" there, which matches nothing.
        if b"*" in name and not any(b"." in name[o + 1:o + 1 + name[o]] for o in offsets[:-1]):
            cleaned = _wire_to_text(name).replace(".*", "")
            try:
                name = w.name_to_wire(cleaned)
            except ValueError:
                pass
            hit = self.cache.get(name + q[-4:-2] + b"\x00\x01")
            if hit is not None:  # the answer RRs own the question's name (0xC00C) as asked,
                # which is longer than the name `hit` is sized for
                extra = len(q) - 4 - len(name)
                return (self._respond_hit(qid, idx, q, hit, edns, size, tcp, extra), tname,
                        hit.rcode_name)
        if qtype in (251, 252):  # IXFR, AXFR
            return self._error(qid, idx, q, w.NOTIMP, edns), tname, "NOTIMP"
        rcode = w.NOERROR if name in self.names else w.NXDOMAIN
        tail = self.soa_rr + (w.OPT_RR if edns else b"")
        return qid + self._neg[(rcode, edns)][idx] + q + tail, tname, w.RCODE_NAMES[rcode]

    @staticmethod
    def _respond_hit(qid: bytes, idx: int, q: bytes, hit: w.Answer, edns: bool, size: int,
                     tcp: bool, extra: int = 0) -> bytes:
        """`hit` as the response to `q`, whose name is `extra` bytes longer than hit's."""
        limit = MAX_TCP if tcp else max(size, 512)
        if (hit.max_edns if edns else hit.max_plain) + extra <= limit:
            tail = hit.next_edns() if edns else hit.next_plain()
            head = (hit.heads_edns if edns else hit.heads_plain)[idx]
        else:  # over TCP too: a message has at most 65535 bytes (mesos-dns's truncate)
            head, tail = hit.truncated(limit, edns, idx, extra)
        return qid + head + q + tail

    def _in_forwarded(self, name: bytes, offsets: list[int]) -> bool:
        return any(name.endswith(z) and len(name) - len(z) in offsets for z in self.forwarded)

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
        if (data[2] >> 3) & 0xF:  # NOTIFY, UPDATE, ...: the reply must carry the opcode
            edns = query_edns_size(data) is not None  # and an OPT when the query has one
            out = self._error(qid, idx, b"", w.NOTIMP, edns)  # or the sender ignores it
            return out[:2] + bytes((out[2] | data[2] & 0x78,)) + out[3:], "other", "NOTIMP"
        try:
            rec = DNSRecord.parse(data)
            if len(rec.questions) != 1:
                raise ValueError("not one question")
            question = rec.questions[0]
            name = b"".join(bytes((len(x),)) + x for x in question.qname.label) + b"\x00"
            offsets = _label_offsets(name)
            if offsets is None or len(name) > 255:
                raise ValueError("bad name")
            opts = [rr for rr in rec.ar if rr.rtype == w.OPT]
            if len(opts) > 1 or any(str(rr.rname) != "." for rr in opts):
                raise ValueError("bad OPT")
        except Exception:  # dnslib raises many types on garbage; all mean the same here
            edns = query_edns_size(data) is not None  # a well-formed OPT gets one back
            return self._error(qid, idx, b"", w.FORMERR, edns), "other", "FORMERR"
        q = name + _QTAIL.pack(question.qtype, question.qclass)
        edns = bool(opts)
        if edns and (opts[0].ttl >> 16) & 0xFF:  # EDNS version we do not speak
            badvers = qid + w.heads(0, (1, 0, 0, 1), aa=False, ra=self.external)[idx] + q
            return badvers + w.OPT_RR[:5] + b"\x01" + w.OPT_RR[6:], "other", "BADVERS"
        size = min(opts[0].rclass, w.MAX_UDP) if edns else 512
        return self._respond(qid, idx, q, offsets, edns, size, tcp)


def _shape(data: bytes, e: int) -> tuple[bool, int] | None:
    """(EDNS, UDP size) of a query that `Zone.answer` takes the fast way (one question,
    uncompressed name ending at `e`, no or simple EDNS), else None."""
    if not 0 < e <= 266 or data[4:10] != _ONE_QUESTION or data[2] & 0xF8:
        return None
    rest = len(data) - e - 5
    if rest == 0 and data[10:12] == b"\x00\x00":
        return False, 512
    if (rest >= 11 and data[10:12] == b"\x00\x01" and data[e + 5:e + 8] == b"\x00\x00\x29"
            and data[e + 10:e + 12] == b"\x00\x00"
            and rest == 11 + (data[e + 14] << 8 | data[e + 15]) and _options_fit(data, e + 16)):
        # EDNS options (COOKIE, padding, ...) are well-formed and ignored: the reply's OPT
        # has none, which is what a server that does not implement them sends (RFC 7873).
        return True, min(data[e + 8] << 8 | data[e + 9], w.MAX_UDP)
    return None


def _options_fit(data: bytes, i: int) -> bool:
    """The EDNS options from `i` to the end of `data` are whole (code, length, value)s."""
    end = len(data)
    while i < end:
        if i + 4 > end:
            return False
        i += 4 + (data[i + 2] << 8 | data[i + 3])
    return i == end


def forwarded_zones(settings: DnsSettings) -> tuple[str, ...]:
    """The zone_resolvers zones inside the domain (when forwarding is on): their names are
    forwarded, not answered from the records (mesos-dns: the longest zone wins)."""
    if not settings.external:
        return ()
    return tuple(sorted(z for z in settings.zone_resolvers if z.endswith("." + settings.domain)))


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


@dataclass(frozen=True, slots=True)
class _Index:
    """What a zone keeps so that the next `build_zone` rebuilds only the names that changed.

    Never mutated once built: the next build copies the dicts (cheap next to packing) so a
    failed build leaves the serving zone intact. Sets are frozen for the same reason."""

    settings: tuple[object, ...]  # what shapes every packed answer (domain, ttl, RA, NS)
    record_set: RecordSet  # canonical names only (see `_canonical`)
    wires: dict[str, bytes]  # record set name -> wire name, for names inside the domain
    addresses: dict[bytes, tuple[bytes, ...]]  # wire -> its A/AAAA RRs (additional sections)
    targets: dict[bytes, frozenset[bytes]]  # wire -> the SRV targets in its answers
    users: dict[bytes, frozenset[bytes]]  # target wire -> wires whose answers carry its addresses
    names: dict[bytes, int]  # name or ancestor -> record names at or below it (NODATA/NXDOMAIN)
    skipped: dict[str, list[tuple[str, str]]]  # record set name -> (name, reason) left out


def build_zone(record_set: RecordSet, settings: DnsSettings, serial: int,
               previous: Zone | None = None) -> tuple[Zone, list[tuple[str, str]]]:
    """Index and prebuild every answer; returns the zone and the (name, reason) skipped.

    With `previous` (built with the same settings), the answers of every name whose inputs
    are unchanged (its records, and the addresses of its SRV targets) are reused as they
    are; the result is the same as a build from scratch. The apex (SOA with the serial,
    NS) is always rebuilt."""
    zone = Zone(settings, serial)
    forwarded = forwarded_zones(settings)
    key = (settings.domain, settings.ttl, settings.external, settings.soa.mname.lower(),
           forwarded)
    old = previous._index if previous is not None else None
    if old is None or old.settings != key:
        old = _Index(key, RecordSet(), {}, {}, {}, {}, {zone.domain_wire: 1}, {})
        cache: dict[bytes, w.Answer] = {}
    else:
        cache = dict(previous.cache)  # type: ignore[union-attr]
    rs = record_set
    changed = _changed_names(old.record_set, rs)
    if not all(_canonical(name) for name in changed):
        rs = _canonical_record_set(rs)
        changed = _changed_names(old.record_set, rs)
    new = _Index(key, rs, dict(old.wires), dict(old.addresses), dict(old.targets),
                 dict(old.users), dict(old.names), dict(old.skipped))
    mname = w.name_to_wire(key[3] + ".")
    packed: dict[bytes, tuple[str, dict[int, list[bytes]], list[tuple[str, str]]]] = {}
    dirty = {zone.domain_wire}
    for name in changed:
        wire = _wire(name, settings.domain, forwarded, rs, new)
        if wire is None:
            continue
        types, addresses, errors = _pack(name, wire, rs, settings.ttl)
        packed[wire] = name, types, errors
        dirty.add(wire)
        if addresses != new.addresses.get(wire, ()):
            dirty.update(new.users.get(wire, ()))
            if addresses:
                new.addresses[wire] = addresses
            else:
                del new.addresses[wire]
    for wire in dirty:
        if wire in packed:
            name, types, errors = packed[wire]
        else:  # the apex, or a name whose SRV targets' addresses changed
            name = _wire_to_text(wire)
            types, _, errors = _pack(name, wire, rs, settings.ttl)
        if wire == zone.domain_wire:
            types = {**types, w.SOA: [w.pack_rr(b"\xc0\x0c", w.SOA, settings.ttl, zone.soa_rdata)],
                     w.NS: [w.pack_rr(b"\xc0\x0c", w.NS, settings.ttl, mname)]}
        existed = cache.pop(wire + _KEYS[w.ANY], None) is not None  # every name has ANY
        if existed:
            for rtype in (w.A, w.AAAA, w.SRV, w.SOA, w.NS):
                cache.pop(wire + _KEYS[rtype], None)
        answers = w.build_answers(types, len(wire) + 4, new.addresses, mname, ra=zone.external)
        for rtype, answer in answers.items():
            cache[wire + _KEYS[rtype]] = answer
        if errors:
            new.skipped[name] = errors
        else:
            new.skipped.pop(name, None)
        srv = types.get(w.SRV)
        _retarget(new, wire, frozenset(rr[18:] for rr in srv) if srv else _NONE)
        if wire != zone.domain_wire and existed != bool(answers):
            _count(new.names, wire, zone.domain_wire, 1 if answers else -1)
    zone.cache, zone.names, zone._index = cache, new.names, new
    return zone, sorted(entry for entries in new.skipped.values() for entry in entries)


def _changed_names(old: RecordSet, new: RecordSet) -> set[str]:
    """Names whose A, AAAA or SRV records differ between `old` and `new` (added or removed too)."""
    changed: set[str] = set()
    for old_map, new_map in ((old.a, new.a), (old.aaaa, new.aaaa), (old.srv, new.srv)):
        get = old_map.get
        diff = [name for name, items in new_map.items() if get(name) != items]
        changed.update(diff)
        if len(old_map) > len(new_map) - sum(1 for name in diff if name not in old_map):
            changed.update(old_map.keys() - new_map.keys())
    return changed


def _canonical(name: str) -> bool:
    """Lowercase with one trailing dot: one name per wire name, so names index the zone."""
    return name == name.lower().rstrip(".") + "."


def _canonical_record_set(rs: RecordSet) -> RecordSet:
    """`rs` with names spelled canonically; records of names spelled differently are merged."""
    def merged(m: Mapping[str, tuple]) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        for name, items in m.items():
            name = name.lower().rstrip(".") + "."
            out[name] = out.get(name, ()) + tuple(items)
        return out
    return RecordSet(a=merged(rs.a), aaaa=merged(rs.aaaa), srv=merged(rs.srv), skipped=rs.skipped)


def _wire(name: str, domain: str, forwarded: tuple[str, ...], rs: RecordSet, index: _Index
          ) -> bytes | None:
    """The wire name of the changed `name`, recording in `index` whether it is still served
    (None: gone from the record set, or skipped as a whole). Names in `forwarded` zones
    are skipped: their queries go to the zone's resolvers."""
    present = (name in rs.a) + (name in rs.aaaa) + (name in rs.srv)
    wire = index.wires.get(name)
    if wire is None and present:
        try:
            text = name[:-1]
            if text != domain and not text.endswith("." + domain):
                raise ValueError("outside the domain")
            for zone in forwarded:
                if text == zone or text.endswith("." + zone):
                    raise ValueError(f"in {zone}, forwarded to its zone_resolvers")
            wire = index.wires[name] = w.name_to_wire(name)
        except (ValueError, UnicodeError) as e:
            index.skipped[name] = [(name, str(e))] * present
            return None
    if wire is None:
        index.skipped.pop(name, None)
        return None
    if not present:
        del index.wires[name]  # the wire is rebuilt once more, as a name with no records
    return wire


def _pack(name: str, wire: bytes, rs: RecordSet, ttl: int
          ) -> tuple[dict[int, list[bytes]], tuple[bytes, ...], list[tuple[str, str]]]:
    """`name`'s RRs by type (owner 0xC00C), its A/AAAA RRs owned by `wire`, and what was bad."""
    types: dict[int, list[bytes]] = {}
    addresses: list[bytes] = []
    errors: list[tuple[str, str]] = []
    specs: tuple[tuple[int, Iterable[Any], Callable[[Any], bytes]], ...] = (
        (w.A, rs.a.get(name, ()), w.a_rdata), (w.AAAA, rs.aaaa.get(name, ()), w.aaaa_rdata),
        (w.SRV, sorted(rs.srv.get(name, ())), w.srv_rdata))
    for rtype, items, rdata in specs:
        rrs = []
        for item in items:
            try:
                rd = rdata(item)
            except (ValueError, UnicodeError, struct.error) as e:
                errors.append((name, str(e)))
                continue
            rrs.append(w.pack_rr(b"\xc0\x0c", rtype, ttl, rd))
            if rtype != w.SRV:
                addresses.append(w.pack_rr(wire, rtype, ttl, rd))
        if rrs:
            types[rtype] = rrs
    return types, tuple(addresses), errors


def _retarget(index: _Index, wire: bytes, targets: frozenset[bytes]) -> None:
    """Record that `wire`'s answers now carry the addresses of `targets` (and no others)."""
    before = index.targets.get(wire, _NONE)
    if targets == before:
        return
    for t in before - targets:
        users = index.users[t] - {wire}
        if users:
            index.users[t] = users
        else:
            del index.users[t]
    for t in targets - before:
        index.users[t] = index.users.get(t, _NONE) | {wire}
    if targets:
        index.targets[wire] = targets
    else:
        del index.targets[wire]


def _count(names: dict[bytes, int], wire: bytes, domain_wire: bytes, delta: int) -> None:
    """Add `delta` to `wire` (a name inside the domain) and each of its ancestors up to the
    domain itself."""
    i, end = 0, len(wire) - len(domain_wire)
    while i <= end:
        suffix = wire[i:]
        n = names.get(suffix, 0) + delta
        if n:
            names[suffix] = n
        else:
            del names[suffix]
        i += wire[i] + 1


def failure_response(query: bytes, rcode: int, ra: bool) -> bytes:
    """`rcode` (e.g. SERVFAIL when every upstream failed) to a forwarded `query`, echoing
    its question when that is one plain name. Built from the bytes: dnslib refuses names
    the fast path takes (labels that are not UTF-8), and raising here lost the answer."""
    question = _plain_question(query)
    flags = bytes((0x80 | query[2] & 0x79, (0x80 if ra else 0) | query[3] & 0x10 | rcode))
    edns = query_edns_size(query) is not None
    return (query[:2] + flags + struct.pack(">HHHH", 1 if question else 0, 0, 0, int(edns))
            + question + (w.OPT_RR if edns else b""))


def _plain_question(query: bytes) -> bytes:
    """The question of `query` (name + type + class) when it has one uncompressed name, else b""."""
    end = 12
    while end < len(query) and 0 < query[end] < 64:
        end += query[end] + 1
    plain = query[4:6] == b"\x00\x01" and end + 5 <= len(query) and query[end] == 0
    return query[12:end + 5] if plain else b""


def query_edns_size(query: bytes) -> int | None:
    """The UDP payload size in `query`'s OPT record; None when it has none, or the packet
    does not parse, or its OPT is malformed (not one, not owned by the root, options that
    do not fill its data): then a reply must carry no OPT (RFC 6891 section 7)."""
    size = None
    try:
        qd, an, ns, ar = struct.unpack_from(">HHHH", query, 4)
        i = 12
        for _ in range(qd):
            i = _skip_name(query, i) + 4
        for k in range(an + ns + ar):
            owner = i
            i = _skip_name(query, i)
            rtype, rclass, _, rdlen = struct.unpack_from(">HHIH", query, i)
            i += 10 + rdlen
            if rtype == w.OPT:
                if (k < an + ns or size is not None or query[owner] != 0
                        or not _options_fit(query[:i], i - rdlen)):
                    return None
                size = rclass
        if i > len(query):
            return None
    except (IndexError, ValueError, struct.error):
        return None
    return size


def _skip_name(data: bytes, i: int) -> int:
    while True:
        n = data[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        if n & 0xC0:
            raise ValueError("bad label type")
        i += n + 1


def fit_udp(query: bytes, answer: bytes) -> bytes:
    """A forwarded `answer` as a UDP client that sent `query` can take it: as is when it fits
    512 bytes (or the query's EDNS size), else its header with TC set, the question and our
    OPT (when the query had one), and no records: the client asks again over TCP."""
    if len(answer) <= 512:  # the usual case: fits any client, no need to read the query
        return answer
    size = query_edns_size(query)
    if size is not None and len(answer) <= size:
        return answer
    question = _plain_question(query)
    counts = struct.pack(">HHHH", 1 if question else 0, 0, 0, 0 if size is None else 1)
    return (query[:2] + bytes((answer[2] | 0x02, answer[3])) + counts + question
            + (b"" if size is None else w.OPT_RR))
