"""A record set in zone-file syntax, and the `discoveryd records --state FILE` command.

`zone_lines` is pure. `records_command`, `listener_ips` and `system_resolver` are the
I/O glue around `build_records` (file, interfaces, getaddrinfo) for the CLI and daemon.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discoveryd.dns.records import Resolve, build_records, first_of_each_family, ip_literal
from discoveryd.dns.recordset import RecordSet
from discoveryd.settings import split_host_port

if TYPE_CHECKING:
    from discoveryd.settings import Settings, SoaSettings


def _fqdn(name: str) -> str:
    return name.strip(".").lower() + "."


def zone_lines(
    rs: RecordSet, *, domain: str, ttl: int, soa: SoaSettings, serial: int
) -> list[str]:
    """Every record, SOA and NS at the apex included: `NAME TTL IN TYPE DATA`, sorted."""
    apex, mname = _fqdn(domain), _fqdn(soa.mname)
    lines = [
        f"{apex} {ttl} IN SOA {mname} {_fqdn(soa.rname)} {serial} {soa.refresh} "
        f"{soa.retry} {soa.expire} {soa.minttl}",
        f"{apex} {ttl} IN NS {mname}",
    ]
    for rtype, table in (("A", rs.a), ("AAAA", rs.aaaa)):
        lines.extend(f"{name} {ttl} IN {rtype} {ip}" for name, ips in table.items() for ip in ips)
    lines.extend(
        f"{name} {ttl} IN SRV {s.priority} {s.weight} {s.port} {s.target}"
        for name, srvs in rs.srv.items()
        for s in srvs
    )
    return sorted(lines)


def records_command(state_path: str | os.PathLike[str], settings: Settings) -> str:
    """What `discoveryd records --state FILE` prints. Raises OSError, ValueError
    (bad JSON) or sources.mesos_state.StateError for the CLI to report."""
    from discoveryd.sources.mesos_state import parse_master_state  # CLI-only edges
    from discoveryd.sources.state_decoder import load_json

    path = Path(state_path)
    mesos = parse_master_state(load_json(path.read_bytes()))
    dns = settings.dns
    rs = build_records(
        mesos,
        domain=dns.domain,
        masters=settings.mesos.masters,
        ip_sources=settings.mesos.ip_sources,
        enforce_rfc952=settings.mesos.enforce_rfc952,
        mname=dns.soa.mname,
        listen_ips=listener_ips(dns.listen),
        resolve=system_resolver(),
    )
    # The file's mtime as serial: the same file always prints the same text.
    serial = int(path.stat().st_mtime) & 0xFFFFFFFF
    lines = zone_lines(rs, domain=dns.domain, ttl=dns.ttl, soa=dns.soa, serial=serial)
    return "".join(line + "\n" for line in lines)


def listener_ips(listen: Iterable[str]) -> tuple[str, ...]:
    """IPs for the SOA mname record from `dns.listen` ("ip:port"): a wildcard listener
    ("0.0.0.0" or "::") stands for every non-loopback address of the host, IPv4 and IPv6
    (mesos-dns's setFromLocal, which gives "0.0.0.0" AAAA records too)."""
    out: dict[str, None] = {}
    for addr in listen:
        host, _ = split_host_port(addr, 53)
        if host in ("0.0.0.0", "::"):
            out.update(dict.fromkeys(local_ipv4s()))
            out.update(dict.fromkeys(local_ipv6s()))
        elif (ip := ip_literal(host)) is not None:
            out[ip] = None
    return tuple(out)


def local_ipv4s() -> list[str]:
    """Every non-loopback IPv4 address of this host, secondary ones included (the kernel's
    local routes in /proc/net/fib_trie, as Go's net.InterfaceAddrs lists them for mesos-dns);
    where /proc is unreadable, the primary address of each interface (SIOCGIFADDR)."""
    try:
        text = Path("/proc/net/fib_trie").read_text()
    except OSError:
        return _primary_ipv4s()
    return [ip for ip in fib_trie_local_ipv4s(text) if not ipaddress.IPv4Address(ip).is_loopback]


def fib_trie_local_ipv4s(text: str) -> list[str]:
    """The host addresses in a /proc/net/fib_trie text: each leaf `|-- IP` with a
    `/32 host LOCAL` entry, once each, in the order they appear (loopback ones too)."""
    out: dict[str, None] = {}
    leaf = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "|--":
            leaf = fields[1]
        elif leaf is not None and len(fields) >= 3 and fields[0] == "/32" and fields[2] == "LOCAL":
            out[str(ipaddress.IPv4Address(leaf))] = None
        elif not fields or not fields[0].startswith("/"):
            leaf = None  # a table header or an inner `+--` node
    return list(out)


def _primary_ipv4s() -> list[str]:
    """Non-loopback primary IPv4 address of each interface (Linux SIOCGIFADDR)."""
    ips = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            ip = socket.inet_ntoa(packed[20:24])
            if not ipaddress.IPv4Address(ip).is_loopback:
                ips.append(ip)
    return ips


def local_ipv6s() -> list[str]:
    """Non-loopback IPv6 addresses from /proc/net/if_inet6 (empty where that file is
    absent); link-local ones too, as mesos-dns (it skips loopback only)."""
    try:
        rows = Path("/proc/net/if_inet6").read_text().split("\n")
    except OSError:
        return []
    ips = []
    for row in rows:
        fields = row.split()
        if fields:
            ip = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            if not ip.is_loopback:
                ips.append(str(ip))
    return ips


def system_resolver(cache: dict[str, Any] | None = None) -> Resolve:
    """A `resolve` for build_records backed by getaddrinfo (blocking: call it off the
    event loop, or pre-fill `cache`): the first IPv4 and the first IPv6 of the answer, as
    mesos-dns's hostToIPs. `cache` maps host -> IPs (a str entry is one IP)."""
    memo = {} if cache is None else cache

    @functools.wraps(system_resolver)
    def resolve(host: str) -> str | tuple[str, ...] | None:
        if host in memo:
            return memo[host]
        literal = ip_literal(host)
        ips = (literal,) if literal else _lookup(host)
        memo[host] = ips
        return ips

    return resolve


def _lookup(host: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ()
    return first_ipv4_and_ipv6(str(i[4][0]) for i in infos)


def first_ipv4_and_ipv6(addrs: Iterable[str]) -> tuple[str, ...]:
    """At most one IPv4 and one IPv6, the first of each, IPv4 first (mesos-dns ipsTo4And6)."""
    # canonical; an IPv4-mapped IPv6 is IPv4; a scope id is dropped
    canonical = (ip_literal(addr.split("%", 1)[0]) for addr in addrs)
    return first_of_each_family(ip for ip in canonical if ip is not None)
