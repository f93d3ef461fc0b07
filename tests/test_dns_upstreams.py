import ipaddress
import shutil
import subprocess

import pytest

from discoveryd.dns.upstreams import build_upstreams, parse_resolv_conf, select_upstreams
from discoveryd.settings import DnsSettings

RESOLV = """# generated
search example.com
nameserver 10.0.0.2  # primary
nameserver fe80::1%eth0
nameserver not-an-ip
nameserver 127.0.0.1
options ndots:2
"""


def test_parse_resolv_conf():
    assert parse_resolv_conf(RESOLV) == [("10.0.0.2", 53), ("fe80::1", 53), ("127.0.0.1", 53)]


def test_own_listen_address_is_not_an_upstream():
    settings = DnsSettings(listen=["0.0.0.0:53"])
    default, zones = build_upstreams(settings, RESOLV, [("0.0.0.0", 53)])
    assert default == [("10.0.0.2", 53), ("fe80::1", 53)]
    assert zones == {}


def test_configured_resolvers_win_over_resolv_conf():
    settings = DnsSettings(resolvers=["10.1.1.1", "10.1.1.2:5353"],
                           zone_resolvers={"Weave.": ["172.17.0.1"]})
    default, zones = build_upstreams(settings, RESOLV, [("127.0.0.1", 53)])
    assert default == [("10.1.1.1", 53), ("10.1.1.2", 5353)]
    assert zones == {"weave": [("172.17.0.1", 53)]}


def test_select_longest_suffix():
    default = [("10.0.0.1", 53)]
    zones = {"weave": [("10.0.0.2", 53)], "b.weave": [("10.0.0.3", 53)]}
    assert select_upstreams("x.weave.", default, zones) == [("10.0.0.2", 53)]
    assert select_upstreams("X.B.Weave.", default, zones) == [("10.0.0.3", 53)]
    assert select_upstreams("b.weave.", default, zones) == [("10.0.0.3", 53)]
    assert select_upstreams("xweave.", default, zones) == default
    assert select_upstreams("example.com.", default, zones) == default


def test_wildcard_listener_drops_every_local_address():
    """mesos-dns's layout: listen 0.0.0.0:53 and the host's own LAN address in resolv.conf
    (nonLocalAddies). Forwarding there would loop back to us."""
    text = "nameserver 10.0.0.5\nnameserver 8.8.8.8\nnameserver fd00::5\nnameserver 10.0.0.6\n"
    local = ["10.0.0.5", "fd00:0:0::5"]
    both = [("0.0.0.0", 53), ("::", 53)]
    default, _ = build_upstreams(DnsSettings(), text, both, local_ips=local)
    assert default == [("8.8.8.8", 53), ("10.0.0.6", 53)]
    settings = DnsSettings(zone_resolvers={"weave": ["10.0.0.5", "10.0.0.7"]})
    _, zones = build_upstreams(settings, text, [("0.0.0.0", 53)], local_ips=local)
    assert zones == {"weave": [("10.0.0.7", 53)]}
    # Not a loop: another port, or a listener on one address only.
    default, _ = build_upstreams(DnsSettings(), text, [("0.0.0.0", 5353)], local_ips=local)
    assert ("10.0.0.5", 53) in default
    default, _ = build_upstreams(DnsSettings(), text, [("127.0.0.1", 53)], local_ips=local)
    assert ("10.0.0.5", 53) in default


def test_a_wildcard_listener_covers_its_own_family_only():
    """"::" is bound IPv6-only (IPV6_V6ONLY), so an IPv4 upstream never reaches it, even a
    local or loopback one; "0.0.0.0" never gets IPv6. An exact listen address is always self."""
    text = "".join(f"nameserver {ip}\n" for ip in (
        "10.0.0.5", "127.0.0.1", "127.0.0.53", "fd00::5", "::1", "::ffff:10.0.0.5", "8.8.8.8"))
    local = ["10.0.0.5", "fd00::5"]

    def kept(listen: list[tuple[str, int]]) -> list[str]:
        default, _ = build_upstreams(DnsSettings(), text, listen, local_ips=local)
        return [host for host, _ in default]

    assert kept([("::", 53)]) == ["10.0.0.5", "127.0.0.1", "127.0.0.53", "::ffff:10.0.0.5",
                                  "8.8.8.8"]
    assert kept([("0.0.0.0", 53)]) == ["fd00::5", "::1", "8.8.8.8"]
    assert kept([("0.0.0.0", 53), ("::", 53)]) == ["8.8.8.8"]
    assert kept([("::1", 53), ("127.0.0.53", 53)]) == [
        "10.0.0.5", "127.0.0.1", "fd00::5", "::ffff:10.0.0.5", "8.8.8.8"]
    # zone resolvers follow the same rule
    settings = DnsSettings(zone_resolvers={"weave": ["10.0.0.5", "fd00::5"]})
    _, zones = build_upstreams(settings, "", [("::", 53)], local_ips=local)
    assert zones == {"weave": [("10.0.0.5", 53)]}


def _ip_addr_list() -> list[str]:
    """This host's non-loopback addresses as `ip -o addr` lists them (not our own code)."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command to list this host's addresses independently")
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    ips = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] in ("inet", "inet6"):
            ip = ipaddress.ip_address(fields[3].split("/")[0])
            if not ip.is_loopback:
                ips.append(str(ip))
    return ips


def test_wildcard_listener_drops_this_hosts_real_addresses():
    """Without `local_ips`, the host's interfaces are read (nothing is sent anywhere); the
    expectation comes from `ip -o addr`, independently of the code under test."""
    local = _ip_addr_list()
    if not local:
        pytest.skip("this host has no non-loopback address")
    text = "".join(f"nameserver {ip}\n" for ip in local) + "nameserver 8.8.8.8\n"
    default, _ = build_upstreams(DnsSettings(), text, [("0.0.0.0", 53), ("::", 53)])
    assert default == [("8.8.8.8", 53)]
    v4 = [ip for ip in local if ipaddress.ip_address(ip).version == 4]
    default, _ = build_upstreams(DnsSettings(), text, [("0.0.0.0", 53)])
    assert default == [(ip, 53) for ip in local if ip not in v4] + [("8.8.8.8", 53)]
