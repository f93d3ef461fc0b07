"""Which upstream resolvers a forwarded name goes to (pure: text and settings in, lists out)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from discoveryd.dns.zonefile import local_ipv4s, local_ipv6s
from discoveryd.settings import DnsSettings, split_host_port

Upstream = tuple[str, int]


def parse_resolv_conf(text: str) -> list[Upstream]:
    """The `nameserver` entries of a resolv.conf, in order (invalid ones are ignored)."""
    out: list[Upstream] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            host = fields[1].split("%", 1)[0]  # drop an IPv6 zone index
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
            out.append((host, 53))
    return out


def _parse(servers: list[str]) -> list[Upstream]:
    return [split_host_port(s, 53) for s in servers]


def _is_self(upstream: Upstream, listen: list[Upstream], local: frozenset[str]) -> bool:
    """True when forwarding to `upstream` would reach this server (a loop): one of our
    listen addresses, or, for a wildcard listener on its port, loopback or any address of
    this host's interfaces (`local`; mesos-dns drops every local address from resolv.conf)
    of the listener's family only: "::" is bound IPv6-only, so it never gets IPv4 queries,
    and "0.0.0.0" never gets IPv6 ones. An IPv4-mapped IPv6 upstream counts as IPv4."""
    host, port = upstream
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for lhost, lport in listen:
        if lport != port:
            continue
        lip = ipaddress.ip_address(lhost)
        if ip == lip or (lip.is_unspecified and lip.version == ip.version
                         and (ip.is_loopback or ip.is_unspecified or str(ip) in local)):
            return True
    return False


def build_upstreams(settings: DnsSettings, resolv_conf_text: str, listen: list[Upstream],
                    local_ips: Iterable[str] | None = None
                    ) -> tuple[list[Upstream], dict[str, list[Upstream]]]:
    """(default upstreams, zone -> upstreams), our own addresses removed. `local_ips`: the
    host's interface addresses (default: read from the interfaces of each family that has
    a wildcard listener)."""
    if local_ips is None:
        wildcards = {ipaddress.ip_address(h).version for h, _ in listen
                     if ipaddress.ip_address(h).is_unspecified}
        local_ips = ((local_ipv4s() if 4 in wildcards else [])
                     + (local_ipv6s() if 6 in wildcards else []))
    local = frozenset(str(ipaddress.ip_address(ip)) for ip in local_ips)
    default = _parse(settings.resolvers) if settings.resolvers else parse_resolv_conf(
        resolv_conf_text)
    default = [u for u in default if not _is_self(u, listen, local)]
    zones = {zone: [u for u in _parse(servers) if not _is_self(u, listen, local)]
             for zone, servers in settings.zone_resolvers.items()}
    return default, zones


def select_upstreams(qname: str, default: list[Upstream], zones: dict[str, list[Upstream]]
                     ) -> list[Upstream]:
    """The upstreams of the longest zone that `qname` is in, else the default list."""
    name = qname.lower().rstrip(".")
    best, best_len = default, -1
    for zone, servers in zones.items():
        if (name == zone or name.endswith("." + zone)) and len(zone) > best_len:
            best, best_len = servers, len(zone)
    return best
