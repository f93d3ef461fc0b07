"""Fixtures shared across test modules."""

import pytest

from discoveryd.dns.server import DnsServer
from discoveryd.metrics import Metrics
from discoveryd.settings import DnsSettings
from discoveryd.sim.mesos_master import SimMesosMaster
from tests.daemon_harness import eventually, settings_for, start_daemon

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
async def ready_daemon(master):
    """A whole daemon in-process (DNS half, HTTP) following `master`, once it is ready."""
    r = await start_daemon(settings_for(mesos={"masters": [master.address],
                                               "refresh_seconds": 5}))
    try:
        await eventually(lambda: not r.daemon.readiness(), timeout=60, what="daemon ready")
        yield r
    finally:
        await r.daemon.stop()


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
