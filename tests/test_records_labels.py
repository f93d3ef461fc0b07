"""Label sanitising, with the cases of mesos-dns's records/labels/labels_test.go."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoveryd.dns.labels import domain_frag, rfc952, rfc1123

COMMON = {
    "": "",
    "a": "a",
    "-": "",
    "a---": "a",
    "---a---": "a",
    "---a---b": "a---b",
    "a.b.c.d.e": "a-b-c-d-e",
    "a.c.d_de.": "a-c-d-de",
    "abc123": "abc123",
    "-abc123": "abc123",
    "abc123-": "abc123",
    "abc-123": "abc-123",
    "abc--123": "abc--123",
    "r29f.dev.angrypigs": "r29f-dev-angrypigs",
    "hello" + "-" * 58 + "f": "hellof",
}
RFC952 = {
    "4abc123": "abc123",
    "-4abc123": "abc123",
    "fd%gsf---gs7-f$gs--d7fddg-123": "fdgsf---gs7-fgs--d7fddg1",
    "89fdgsf---gs7-fgs--d7fddg-123": "fdgsf---gs7-fgs--d7fddg1",
    "89fdgsf---gs7-fgs--d7fddg---123": "fdgsf---gs7-fgs--d7fddg1",
    "89fdgsf---gs7-fgs--d7fddg-": "fdgsf---gs7-fgs--d7fddg",
    "chronos with a space AND MIXED CASE-2.0.1": "chronoswithaspaceandmixe",
    "chronos with a space AND----------MIXED--": "chronoswithaspaceandmixe",
}
RFC1123 = {
    "4abc123": "4abc123",
    "-4abc123": "4abc123",
    "89fdgsf---gs7-fgs--d7fddg-123": "89fdgsf---gs7-fgs--d7fddg-123",
    "89fdgsf---gs7-fgs--d7fddg-": "89fdgsf---gs7-fgs--d7fddg",
    "fd%gsf---gs7-f$gs--d7fddg123456789012345678901234567890123456789-123":
        "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
    "%%fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789---123":
        "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
    "##fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-":
        "fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789",
    "hello" + "-" * 56 + "f": "hello" + "-" * 56 + "f",
}
FRAGMENTS = {
    "": "", ".": "", "...": "", "abc.": "abc", ".a.c": "a.c", "a..c.e": "a.c.e",
    "host.com": "host.com", "space space.com": "spacespace.com", "not$1234.com": "not1234.com",
    "(@ host . com": "host.com", "MiXeDcase.CoM": "mixedcase.com",
}


@pytest.mark.parametrize("name, want", sorted((COMMON | RFC952).items()))
def test_rfc952(name, want):
    assert rfc952(name) == want


@pytest.mark.parametrize("name, want", sorted((COMMON | RFC1123).items()))
def test_rfc1123(name, want):
    assert rfc1123(name) == want


@pytest.mark.parametrize("name, want", sorted(FRAGMENTS.items()))
def test_domain_frag(name, want):
    assert domain_frag(name, rfc1123) == want


def test_domain_frag_rfc952_vs_rfc1123():
    name = "pod_123$abc.marathon-0.6.0-dev.mesos"
    assert domain_frag(name, rfc952) == "pod-123abc.marathon-0.dev.mesos"
    assert domain_frag(name, rfc1123) == "pod-123abc.marathon-0.6.0-dev.mesos"


@given(st.text())
def test_label_properties(name):
    for func, maxlen in ((rfc952, 24), (rfc1123, 63)):
        label = func(name)
        assert len(label) <= maxlen and not label.startswith("-")
        assert set(label) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not rfc952(name)[:1].isdigit()
