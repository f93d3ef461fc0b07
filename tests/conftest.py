"""Fixtures shared across test modules."""

import pytest

from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from discoveryd.sim.mesos_master import SimMesosMaster

# The real ZooKeeper server fixtures: zk_server (session), zk (fresh chroot), zk_admin.
pytest_plugins = ["tests.fakes.zookeeper"]


@pytest.fixture
async def master():
    """A simulated leading Mesos master serving the bundled sample state."""
    m = SimMesosMaster()
    await m.start()
    yield m
    await m.stop()


@pytest.fixture
async def masters():
    """Two simulated masters; each leads until told to follow another."""
    sims = [SimMesosMaster(), SimMesosMaster()]
    for s in sims:
        await s.start()
    yield sims
    for s in sims:
        await s.stop()


@pytest.fixture
async def server():
    """A DnsServer on 127.0.0.1 port 0 serving tests.test_dns_server.record_set()."""
    from tests.test_dns_server import record_set

    srv = DnsServer(DnsSettings(listen=["127.0.0.1:0"], external=False), Metrics(),
                    resolv_conf="/nonexistent")
    await srv.start()
    srv.update(record_set())
    yield srv
    await srv.stop()
