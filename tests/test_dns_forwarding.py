"""Forwarding of names outside the domain, against fake upstream resolvers on loopback."""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from discoveryd.dns.recordset import RecordSet
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from tests.fakes.upstream_dns import FakeUpstream


@pytest.fixture
async def upstreams():
    fakes: list[FakeUpstream] = []

    async def make(**kw) -> FakeUpstream:
        fake = await FakeUpstream(**kw).start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        await fake.stop()


@pytest.fixture
async def make_server():
    servers: list[DnsServer] = []

    async def make(**dns_settings) -> DnsServer:
        settings = DnsSettings(listen=["127.0.0.1:0"], **dns_settings)
        srv = DnsServer(settings, Metrics(), resolv_conf="/nonexistent")
        await srv.start()
        srv.update(RecordSet(a={"web.marathon.mesos.": ("10.0.0.1",)}))
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.stop()


async def ask(server: DnsServer, name: str, *, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    host, port = server.addresses[0]
    query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    r = await query(q, host, port=port, timeout=30)
    assert r.id == q.id  # the upstream's ID never reaches the client
    return r


def forwarded(server: DnsServer, result: str) -> float:
    return server.metrics.registry.get_sample_value("discoveryd_dns_forwarded_total",
                                                    {"result": result}) or 0


def failures(server: DnsServer, upstream: FakeUpstream, reason: str) -> float:
    return server.metrics.registry.get_sample_value(
        "discoveryd_dns_forward_failures_total", {"upstream": upstream.spec, "reason": reason}) or 0


async def test_forward_ok_with_id_rewrite(upstreams, make_server):
    up = await upstreams(records={"example.com": "192.0.2.7"})
    srv = await make_server(resolvers=[up.spec])
    for tcp in (False, True):
        r = await ask(srv, "Example.COM.", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR
        assert [rd.to_text() for rd in r.answer[0]] == ["192.0.2.7"]
    assert up.queries and all(qname == "example.com" for _, qname, _ in up.queries)
    assert forwarded(srv, "ok") == 2
    # the upstream saw a fresh ID, not the client's
    r = await ask(srv, "nope.example.com.")
    assert r.rcode() == dns.rcode.NXDOMAIN and up.queries[-1][2] != r.id


async def test_timeout_moves_to_next_upstream(upstreams, make_server):
    dead = await upstreams(mode="drop")
    live = await upstreams(records={"example.com": "192.0.2.8"})
    srv = await make_server(resolvers=[dead.spec, live.spec], timeout=0.5)
    r = await ask(srv, "example.com.")
    assert [rd.to_text() for rd in r.answer[0]] == ["192.0.2.8"]
    assert len(dead.queries) == 1 and failures(srv, dead, "timeout") == 1


async def test_truncated_answer_is_retried_over_tcp_for_tcp_clients(upstreams, make_server):
    up = await upstreams(records={"example.com": "192.0.2.9"}, mode="truncate")
    srv = await make_server(resolvers=[up.spec])
    r = await ask(srv, "example.com.", tcp=True)
    assert [rd.to_text() for rd in r.answer[0]] == ["192.0.2.9"]
    assert [t for t, _, _ in up.queries] == ["udp", "tcp"]
    assert failures(srv, up, "truncated") == 1
    # A UDP client gets the truncated answer as is, and asks again over TCP itself.
    up.queries.clear()
    r = await ask(srv, "example.com.")
    assert r.flags & dns.flags.TC and not r.answer
    assert [t for t, _, _ in up.queries] == ["udp"]


async def test_all_upstreams_fail_servfail(upstreams, make_server):
    a, b = await upstreams(mode="drop"), await upstreams(mode="drop")
    srv = await make_server(resolvers=[a.spec, b.spec], timeout=0.3)
    r = await ask(srv, "example.com.")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert forwarded(srv, "servfail") == 1
    assert len(a.queries) == len(b.queries) == 1


async def test_external_false_refused(upstreams, make_server):
    up = await upstreams(records={"example.com": "192.0.2.7"})
    srv = await make_server(resolvers=[up.spec], external=False)
    r = await ask(srv, "example.com.")
    assert r.rcode() == dns.rcode.REFUSED
    assert up.queries == [] and forwarded(srv, "refused") == 1


async def test_zone_resolvers_longest_suffix(upstreams, make_server):
    default = await upstreams(records={"a.weave": "192.0.2.1"})
    weave = await upstreams(records={"a.weave": "192.0.2.2", "a.b.weave": "192.0.2.2"})
    deeper = await upstreams(records={"a.b.weave": "192.0.2.3"})
    srv = await make_server(resolvers=[default.spec],
                            zone_resolvers={"weave": [weave.spec], "b.weave": [deeper.spec]})
    assert [rd.to_text() for rd in (await ask(srv, "a.weave.")).answer[0]] == ["192.0.2.2"]
    assert [rd.to_text() for rd in (await ask(srv, "A.B.weave.")).answer[0]] == ["192.0.2.3"]
    assert default.queries == []


async def test_slow_upstream_does_not_block_local_answers(upstreams, make_server):
    slow = await upstreams(records={"example.com": "192.0.2.7"}, delay=3.0)
    srv = await make_server(resolvers=[slow.spec])
    pending = asyncio.create_task(ask(srv, "example.com."))
    # while the forward waits on the slow upstream, local names answer
    for _ in range(20):
        r = await ask(srv, "web.marathon.mesos.")
        assert r.rcode() == dns.rcode.NOERROR
    assert not pending.done()
    assert (await pending).rcode() == dns.rcode.NOERROR
