"""zone_lines and records_command: the `discoveryd records --state FILE` output."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from discoveryd.dns.records import hash_string
from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.dns.zonefile import (
    fib_trie_local_ipv4s,
    first_ipv4_and_ipv6,
    listener_ips,
    local_ipv4s,
    local_ipv6s,
    records_command,
    system_resolver,
    zone_lines,
)
from discoveryd.settings import Settings, SoaSettings
from tests.fixture_files import FIXTURES

FAKE = FIXTURES / "mesos-state-fake.json"


def test_zone_lines_table():
    rs = RecordSet(
        a={"web.marathon.mesos.": ("10.0.0.2", "10.0.0.1"), "ns1.mesos.": ("10.0.0.53",)},
        aaaa={"web.marathon.mesos.": ("fd00::1",)},
        srv={"_web._tcp.marathon.mesos.": (Srv("web-abcde-s1.marathon.slave.mesos.", 31000),)},
    )
    assert zone_lines(rs, domain="mesos", ttl=60, soa=SoaSettings(), serial=7) == [
        "_web._tcp.marathon.mesos. 60 IN SRV 0 1 31000 web-abcde-s1.marathon.slave.mesos.",
        "mesos. 60 IN NS ns1.mesos.",
        "mesos. 60 IN SOA ns1.mesos. root.ns1.mesos. 7 60 600 86400 60",
        "ns1.mesos. 60 IN A 10.0.0.53",
        "web.marathon.mesos. 60 IN A 10.0.0.1",
        "web.marathon.mesos. 60 IN A 10.0.0.2",
        "web.marathon.mesos. 60 IN AAAA fd00::1",
    ]


def test_soa_settings_are_used():
    soa = SoaSettings(mname="DNS.Example.", rname="hostmaster.example", refresh=1, retry=2,
                      expire=3, minttl=4)
    lines = zone_lines(RecordSet(), domain="Example", ttl=5, soa=soa, serial=9)
    assert lines == ["example. 5 IN NS dns.example.",
                     "example. 5 IN SOA dns.example. hostmaster.example. 9 1 2 3 4"]


def test_records_command_prints_a_loadable_zone(tmp_path):
    state = tmp_path / "state.json"
    state.write_bytes(FAKE.read_bytes())
    os.utime(state, (1_700_000_000, 1_700_000_000))
    settings = Settings.model_validate({"dns": {"listen": ["127.0.0.1:5353"], "ttl": 30}})
    text = records_command(state, settings)
    assert text == records_command(state, settings)  # deterministic
    lines = text.splitlines()
    assert lines == sorted(lines) and len(lines) == len(set(lines))
    assert "mesos. 30 IN SOA ns1.mesos. root.ns1.mesos. 1700000000 60 600 86400 60" in lines
    assert "ns1.mesos. 30 IN A 127.0.0.1" in lines
    assert "leader.mesos. 30 IN A 1.2.3.4" in lines
    assert "_framework._tcp.marathon.mesos. 30 IN SRV 0 1 25501 marathon.mesos." in lines
    # dnspython reads it back as a valid zone with the records we expect
    zone = dns.zone.from_text(text, origin="mesos.", relativize=False)
    node = zone.find_rdataset("toy-store.ipv6-framework.mesos.", dns.rdatatype.AAAA)
    assert {r.address for r in node} == {"fd01:b::1:8000:2"}
    srv = zone.find_rdataset("_liquor-store._tcp.marathon.mesos.", dns.rdatatype.SRV)
    assert {(r.port, r.target.to_text()) for r in srv} == {
        (80, "liquor-store-4dfjd-0.marathon.mesos."), (443, "liquor-store-4dfjd-0.marathon.mesos."),
        (80, "liquor-store-zasmd-1.marathon.mesos."), (443, "liquor-store-zasmd-1.marathon.mesos."),
    }


def test_listener_ips_expands_wildcards():
    assert listener_ips(["10.0.0.53:53", "[fd00::53]:53", "10.0.0.53:5353"]) == (
        "10.0.0.53", "fd00::53")
    wildcard = listener_ips(["0.0.0.0:53"])
    assert not any(ip.startswith("127.") or ip == "::1" for ip in wildcard)


def test_a_wildcard_listener_stands_for_every_non_loopback_address():
    # mesos-dns setFromLocal: every interface address but loopback ones, IPv6 included
    # (as AAAA), link-local included, for "0.0.0.0" as for "::".
    v4, v6 = local_ipv4s(), local_ipv6s()
    assert listener_ips(["0.0.0.0:53"]) == listener_ips(["[::]:53"]) == tuple(v4 + v6)
    rows = Path("/proc/net/if_inet6").read_text().split("\n") if Path(
        "/proc/net/if_inet6").exists() else []
    listed = {str(ipaddress.IPv6Address(bytes.fromhex(r.split()[0]))) for r in rows if r.split()}
    assert set(v6) == listed - {"::1"}
    if shutil.which("ip"):  # IPv4, independently of the code under test
        out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
        ip4 = {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}
        assert set(v4) == {ip for ip in ip4 if not ip.startswith("127.")}


# /proc/net/fib_trie of a host whose eth0 has 192.0.2.2/24 and a secondary 192.0.2.7/24
# (`ip addr add 192.0.2.7/24 dev eth0`) and whose lo has an extra 10.9.0.1/32.
FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     |-- 10.9.0.1
        /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/29 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
           |-- 192.0.2.7
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.9.0.1
        /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/29 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
           |-- 192.0.2.7
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
"""


def test_fib_trie_lists_secondary_addresses():
    # Each /32 LOCAL leaf once: not the /8 loopback route, broadcasts or the subnet route.
    assert fib_trie_local_ipv4s(FIB_TRIE) == ["10.9.0.1", "127.0.0.1", "192.0.2.2", "192.0.2.7"]
    assert fib_trie_local_ipv4s("") == []


def test_local_ipv4s_sees_a_secondary_address_in_a_network_namespace():
    """End to end in a user+net namespace: an interface with a primary and a secondary
    address; local_ipv4s, the SOA mname records and the self-forwarding guard see both."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("no unshare/ip to build a network namespace")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rn unavailable: {probe.stderr.decode().strip()}")
    script = (
        "import json\n"
        "from discoveryd.dns.upstreams import build_upstreams\n"
        "from discoveryd.dns.zonefile import listener_ips, local_ipv4s\n"
        "from discoveryd.settings import DnsSettings\n"
        "text = 'nameserver 10.9.0.1\\nnameserver 10.9.0.2\\nnameserver 10.9.0.3\\n'\n"
        "up, _ = build_upstreams(DnsSettings(), text, [('0.0.0.0', 53)])\n"
        "print(json.dumps([local_ipv4s(), list(listener_ips(['0.0.0.0:53'])), up]))\n"
    )
    shell = (
        "set -e; if ip link add v0 type veth peer name v1 2>/dev/null; then d=v0; else d=lo; fi\n"
        "ip link set lo up; ip addr add 10.9.0.1/24 dev $d; ip addr add 10.9.0.2/24 dev $d\n"
        "ip link set $d up\n"
        f'exec "{sys.executable}" -c "$0"'
    )
    out = subprocess.run(["unshare", "-rn", "sh", "-c", shell, script], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    v4, mname_ips, upstreams = json.loads(out.stdout)
    assert v4 == ["10.9.0.1", "10.9.0.2"]
    assert [ip for ip in mname_ips if ":" not in ip] == ["10.9.0.1", "10.9.0.2"]
    assert upstreams == [["10.9.0.3", 53]]


def test_system_resolver_caches_and_reads_literals():
    cache: dict[str, str | None] = {"preset.invalid": "10.9.9.9"}
    resolve = system_resolver(cache)
    assert resolve("preset.invalid") == "10.9.9.9"
    assert resolve("::ffff:10.1.2.3") == ("10.1.2.3",)
    got = resolve("localhost")
    assert isinstance(got, tuple) and 1 <= len(got) <= 2 and set(got) <= {"127.0.0.1", "::1"}
    assert "localhost" in cache


def test_first_ipv4_and_ipv6_keeps_one_of_each_in_answer_order():
    # mesos-dns ipsTo4And6 over net.LookupIP's answer: the first IPv4, then the first IPv6.
    assert first_ipv4_and_ipv6(["fd00::1", "10.0.0.1", "fd00::2", "10.0.0.2"]) == (
        "10.0.0.1", "fd00::1")
    assert first_ipv4_and_ipv6(["fe80::1%eth0", "::ffff:10.0.0.3"]) == ("10.0.0.3", "fe80::1")
    assert first_ipv4_and_ipv6(["fd00::9"]) == ("fd00::9",)
    assert first_ipv4_and_ipv6([]) == ()


def test_records_command_reads_a_bad_byte_as_go_does(tmp_path):
    # An invalid UTF-8 byte in one task id is U+FFFD (as mesos-dns's decoder has it), not a
    # refusal of the whole file; the task keeps its records, hashed from the replaced id.
    state = tmp_path / "state.json"
    bad_id = b"nginx.1bc32344-3dda-11e4-a088-c20493233aa5\xff"
    state.write_bytes(FAKE.read_bytes().replace(b"nginx.1bc32344-3dda-11e4-a088-c20493233aa5",
                                                bad_id))
    settings = Settings.model_validate({"dns": {"listen": ["127.0.0.1:5353"]}})
    text = records_command(state, settings)
    canonical = f"nginx-{hash_string(bad_id.decode('utf-8', 'replace'))}-0.marathon.mesos."
    assert any(line.startswith(canonical + " ") for line in text.splitlines()), text
