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
