"""100,000 hostile DNS packets against `discoveryd run` as a process.

80% over UDP in windows of WINDOW, each followed by a valid probe, 20% over TCP sessions
(pipelined garbage, empty frames, huge frames, half-close, lying length prefixes), both
at once. Throughout: every probe gets its exact answer, every packet owed a reply gets
exactly one, no response is reflected; at the end the process is alive, answering, and
its RSS grew by less than RSS_GROWTH_LIMIT_KIB since the warm-up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from discoveryd.dns.answers import MAX_UDP
from discoveryd.sim.cluster import mesos_state_from_marathon
from discoveryd.sim.marathon import SimMarathon, app
from discoveryd.sim.mesos_master import SimMesosMaster
from tests.daemon_harness import eventually
from tests.daemon_process import DaemonProcess
from tests.fakes.dns_hostile import UdpBlaster, tcp_session
from tests.fakes.dns_packets import PROBE_IDS, Packets, tcp_frame

LIVE_SEED = 8
WINDOW = 32  # hostile UDP packets in flight at most, before each probe
RSS_GROWTH_LIMIT_KIB = 40 << 10  # the hot table's HOT_BYTES (16 MiB) plus allocator slack
LIVE_PROBES = [("web.marathon.mesos.", "A"), ("_web._tcp.marathon.mesos.", "SRV"),
               ("leader.mesos.", "A"), ("nope-{}.marathon.mesos.", "A"),
               ("_fuzz._tcp.marathon.mesos.", "SRV")]
LIVE_QUESTIONS = [(n.format(0), {"A": 1, "SRV": 33}[t]) for n, t in LIVE_PROBES] + [
    ("fuzz.marathon.mesos.", 1), ("mesos.", 6), ("example.com.", 1)]


def fuzz_cluster() -> tuple[dict, SimMarathon]:
    """A Mesos state with `web` (3 tasks) and `fuzz` (80 tasks: a 4 KB SRV answer)."""
    sim = SimMarathon(agents=tuple(f"10.7.0.{i}" for i in range(1, 81)))
    sim.add_app(app("/fuzz", instances=80))
    sim.add_app(app("/web", instances=3))
    return mesos_state_from_marathon(sim), sim


def values(msg: dns.message.Message, section: str = "answer") -> frozenset[str]:
    out = set()
    for rrset in getattr(msg, section):
        for rr in rrset:
            out.add(f"{rr.target}:{rr.port}".lower() if rr.rdtype == dns.rdatatype.SRV
                    else rr.to_text())
    return frozenset(out)


class Prober:
    """Valid questions with known exact answers, asked between the hostile packets."""

    def __init__(self, truth: dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]]):
        self.truth = truth  # (name, type) -> (answer values, additional addresses)
        self.asked = 0

    @classmethod
    async def learn(cls, port: int, sim: SimMarathon) -> Prober:
        """Read the answers once over TCP and check them against the simulated cluster."""
        truth = {}
        for name, rdtype in LIVE_PROBES:
            if "{}" not in name:
                msg = await dns.asyncquery.tcp(dns.message.make_query(name, rdtype),
                                               "127.0.0.1", port=port, timeout=10)
                truth[(name, rdtype)] = values(msg), values(msg, "additional")
        for app_id in ("web", "fuzz"):
            tasks = sim.apps[f"/{app_id}"]["tasks"]
            srv, adds = truth[(f"_{app_id}._tcp.marathon.mesos.", "SRV")]
            assert sorted(int(v.rsplit(":", 1)[1]) for v in srv) == sorted(t["ports"][0] for t in tasks)
            assert adds == {t["host"] for t in tasks}
        assert truth[("web.marathon.mesos.", "A")][0] == {t["host"] for t in sim.apps["/web"]["tasks"]}
        assert truth[("leader.mesos.", "A")][0] == {"127.0.0.1"}
        return cls(truth)

    def next(self) -> tuple[bytes, Callable[[bytes, bool], None]]:
        name, rdtype = LIVE_PROBES[self.asked % len(LIVE_PROBES)]
        q = dns.message.make_query(name.format(self.asked), rdtype, use_edns=0, payload=4096)
        q.id = self.asked % PROBE_IDS.stop
        self.asked += 1
        return q.to_wire(), lambda data, tcp: self.check(data, name, rdtype, tcp)

    def check(self, data: bytes, name: str, rdtype: str, tcp: bool) -> None:
        msg = dns.message.from_wire(data)
        if "{}" in name:
            assert msg.rcode() == dns.rcode.NXDOMAIN and msg.authority[0].rdtype == dns.rdatatype.SOA
            return
        answer, additional = self.truth[(name, rdtype)]
        assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
        assert tcp or len(data) <= MAX_UDP
        if msg.flags & dns.flags.TC:  # the 80 SRV records take more than 4096 bytes
            assert not tcp and values(msg) < answer and len(values(msg)) > 60, name
        else:
            assert values(msg) == answer, (name, msg.to_text())
        assert values(msg, "additional") <= additional
        assert not tcp or values(msg, "additional") == additional


def answered(data: bytes) -> bool:
    """Whether the server must reply to `data` (every packet but responses and scraps)."""
    return len(data) >= 12 and not data[2] & 0x80


async def blast_udp(port: int, packets: Packets, n: int, prober: Prober) -> Counter[int]:
    """`n` hostile packets in windows of WINDOW, each followed by a probe; every packet
    owed a reply gets exactly one (all arrive before the probe's answer)."""
    blaster = await UdpBlaster.open(port)
    owed = 0
    try:
        for start in range(0, n, WINDOW):
            for _ in range(min(WINDOW, n - start)):
                data = packets.next()
                owed += answered(data)
                blaster.send(data)
            owed += 1  # the probe
            wire, check = prober.next()
            check(await blaster.ask(wire, timeout=30), False)
            assert not blaster.problems, blaster.problems[:5]
            assert blaster.rcodes.total() == owed, "a reply went missing"
    finally:
        blaster.close()
    return blaster.rcodes


async def blast_tcp(port: int, packets: Packets, n: int, prober: Prober) -> int:
    """`n` hostile frames over TCP sessions that pipeline, send empty frames and huge
    garbage, half-close, or lie about a length and hang up. Returns the sessions used."""
    rng = random.Random(packets.rng.random())
    sent = sessions = 0
    endings = ("probe", "probe", "half-close", "lie")
    while sent < n:
        payloads = [packets.next() for _ in range(min(rng.randint(50, 300), n - sent))]
        for i in rng.sample(range(len(payloads)), k=len(payloads) // 20):
            payloads[i] = b""  # zero-length frames
        if rng.random() < 0.3:
            payloads[-1] = rng.randbytes(rng.randint(600, 65535))
        stream = b"".join(tcp_frame(p) for p in payloads)
        wire, check = prober.next()
        ending = endings[sessions % len(endings)]
        out = await tcp_session(port, stream, wire, ending)
        sent += len(payloads)
        sessions += 1
        if ending == "lie":
            continue
        assert not out.problems, out.problems[:5]
        assert out.probe_answer is not None, ending
        check(out.probe_answer, True)
        assert len(out.answers) == sum(map(answered, payloads)) + 1, "a TCP answer went missing"
        assert out.closed_by_server == (ending == "half-close")
    return sessions


async def hostile_traffic(port: int, udp: Packets, tcp: Packets, n: int, prober: Prober,
                          ) -> tuple[Counter[int], int]:
    """`n` packets, 80% over UDP and 20% over TCP at the same time."""
    return await asyncio.gather(blast_udp(port, udp, n * 4 // 5, prober),
                                blast_tcp(port, tcp, n // 5, prober))


@pytest.fixture
async def fuzz_daemon(tmp_path):
    state, sim = fuzz_cluster()
    master = SimMesosMaster(state)
    await master.start()
    daemon = await DaemonProcess.for_master(tmp_path, master, ready_name="fuzz.marathon.mesos")
    yield daemon, sim
    await daemon.stop()
    await master.stop()


@pytest.mark.long
@pytest.mark.timeout(600)
async def test_hundred_thousand_hostile_packets(fuzz_daemon):
    daemon, sim = fuzz_daemon
    port = daemon.dns_port
    prober = await Prober.learn(port, sim)
    udp, tcp = Packets(LIVE_SEED, LIVE_QUESTIONS), Packets(LIVE_SEED + 1, LIVE_QUESTIONS)
    started = time.monotonic()
    await hostile_traffic(port, udp, tcp, 10_000, prober)  # warm-up: caches, allocator
    warm_rss, sockets = daemon.rss_kib(), daemon.sockets()
    rcodes, sessions = await hostile_traffic(port, udp, tcp, 90_000, prober)
    seconds = time.monotonic() - started
    rss = daemon.rss_kib()
    print(f"\n100,000 hostile packets ({sessions} TCP sessions) in {seconds:.1f} s "
          f"(daemon CPU {daemon.cpu_seconds():.1f} s), {prober.asked} probes; RSS {warm_rss} KiB "
          f"after warm-up, {rss} KiB after (+{rss - warm_rss} KiB); UDP rcodes {dict(rcodes)}")
    assert daemon.alive
    for tcp_probe in (False, True):  # still right, on both transports
        for _ in LIVE_PROBES:
            wire, check = prober.next()
            query_ = dns.asyncquery.tcp if tcp_probe else dns.asyncquery.udp
            r = await query_(dns.message.from_wire(wire), "127.0.0.1", port=port, timeout=10)
            check(r.to_wire(), tcp_probe)
    assert rss - warm_rss < RSS_GROWTH_LIMIT_KIB
    await eventually(lambda: daemon.sockets() <= sockets, timeout=30, what="connections closed")
    log = daemon.log_text()
    assert "dns_query_failed" not in log and "Traceback" not in log
    async with aiohttp.ClientSession() as s, s.get(daemon.http + "/metrics") as resp:
        metrics = await resp.text()
    for transport in ("udp", "tcp"):
        assert f'discoveryd_dns_malformed_queries_total{{transport="{transport}"}}' in metrics
