"""zone_lines and records_command: the `discoveryd records --state FILE` output."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dns.rdatatype
import dns.zone

from discoveryd.dns.records import hash_string
from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.dns.zonefile import (
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
