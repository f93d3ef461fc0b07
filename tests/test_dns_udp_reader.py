"""The UDP fast path: one reader callback drains a burst; repeated queries come from Zone.hot."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from discoveryd.dns import resolver
from discoveryd.dns.resolver import build_zone
from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from tests.test_dns_server import BIG, WEB_IPS, record_set

pytestmark = pytest.mark.timeout(120)




def client(server: DnsServer) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect(server.addresses[0])
    s.setblocking(False)
    return s


async def collect(sock: socket.socket, n: int, deadline: float = 60) -> dict[int, dns.message.Message]:
    """Read answers until `n` distinct IDs have been answered (or the deadline passes)."""
    loop = asyncio.get_running_loop()
    answers: dict[int, dns.message.Message] = {}
    end = time.monotonic() + deadline
    while len(answers) < n and time.monotonic() < end:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), end - time.monotonic())
        except TimeoutError:
            break
        msg = dns.message.from_wire(data)
        answers[msg.id] = msg
    return answers


def queries_counted(metrics: Metrics) -> tuple[int, float]:
    """(sum of discoveryd_dns_queries_total, discoveryd_dns_query_duration_seconds count)."""
    total = hist = 0.0
    for family in metrics.dns.collect():
        for sample in family.samples:
            if sample.name == "discoveryd_dns_queries_total":
                total += sample.value
            elif sample.name == "discoveryd_dns_query_duration_seconds_count":
                hist = sample.value
    return total, hist


async def test_burst_answered_and_counted(server):
    sock = client(server)
    kinds = {}
    for i in range(300):
        name, rtype, kind = [("web.marathon.mesos.", "A", "web"),
                             ("WEB.marathon.MESOS.", "A", "web"),
                             (f"missing-{i % 7}.marathon.mesos.", "A", "missing"),
                             ("_big._tcp.marathon.mesos.", "SRV", "big")][i % 4]
        q = dns.message.make_query(name, rtype, use_edns=False)
        q.id = i
        kinds[i] = (kind, name)
        sock.send(q.to_wire())  # all sent before any answer is read: one burst
    answers = await collect(sock, 300)
    sock.close()
    assert sorted(answers) == list(range(300))
    for qid, msg in answers.items():
        kind, name = kinds[qid]
        assert msg.question[0].name.to_text() == name  # the client's spelling, echoed
        if kind == "web":
            assert sorted(rr.to_text() for rr in msg.answer[0]) == sorted(WEB_IPS)
        elif kind == "missing":
            assert msg.rcode() == dns.rcode.NXDOMAIN and msg.authority
        else:
            assert msg.flags & dns.flags.TC and 0 < len(msg.answer[0]) < BIG
            assert len(msg.to_wire()) <= 512
    assert len(server.zone.hot) >= 4
    assert queries_counted(server.metrics) == (300, 300)


async def test_identical_queries_still_rotate(server):
    sock = client(server)
    q = dns.message.make_query("web.marathon.mesos.", "A", use_edns=False)
    firsts = set()
    for _ in range(8):  # the same bytes each time: served from the hot table after the first
        sock.send(q.to_wire())
        answer = (await collect(sock, 1))[q.id]
        firsts.add(answer.answer[0][0].to_text())
    sock.close()
    assert firsts == set(WEB_IPS)


async def test_update_empties_the_hot_table(server):
    sock = client(server)
    q = dns.message.make_query("web.marathon.mesos.", "A", use_edns=False)
    sock.send(q.to_wire())
    assert len((await collect(sock, 1))[q.id].answer[0]) == len(WEB_IPS)
    assert server.zone.hot
    server.update(record_set(extra_ip="10.9.9.9"))
    assert not server.zone.hot
    sock.send(q.to_wire())
    answer = (await collect(sock, 1))[q.id]
    sock.close()
    assert "10.9.9.9" in {rr.to_text() for rr in answer.answer[0]}


def test_hot_table_starts_over_when_full(monkeypatch):
    monkeypatch.setattr(resolver, "HOT_LIMIT", 4)
    zone, _ = build_zone(record_set(), DnsSettings(external=False), 1)
    for i in range(10):
        data = dns.message.make_query(f"missing-{i}.marathon.mesos.", "A").to_wire()
        out, _, rcode = zone.answer(data)
        assert rcode == "NXDOMAIN"
        zone.remember(data, out, [0])
        assert 1 <= len(zone.hot) <= 4


def test_only_simple_queries_are_remembered():
    zone, _ = build_zone(record_set(), DnsSettings(external=False), 1)
    # Trailing bytes after the OPT: answered the slow way, so not remembered.
    data = dns.message.make_query("web.marathon.mesos.", "A", use_edns=0).to_wire() + b"\x00"
    out, _, rcode = zone.answer(data)
    assert rcode == "NOERROR"
    zone.remember(data, out, [0])
    assert zone.hot == {}
    # EDNS options (a COOKIE) are ignored: such a query is remembered like a plain one.
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    data = dns.message.make_query("web.marathon.mesos.", "A", use_edns=0,
                                  options=[cookie]).to_wire()
    out, _, rcode = zone.answer(data)
    assert rcode == "NOERROR"
    zone.remember(data, out, [0])
    assert list(zone.hot) == [data[2:]]
    zone.hot.clear()
    # A simple EDNS query is remembered with every rotation of its answer.
    data = dns.message.make_query("web.marathon.mesos.", "A", use_edns=0).to_wire()
    out, _, _ = zone.answer(data)
    zone.remember(data, out, [0])
    next_answer, _ = zone.hot[data[2:]]
    forms = {next_answer() for _ in range(len(WEB_IPS))}
    assert len(forms) == len(WEB_IPS) and out[2:] in forms
