"""Fixtures shared across test modules."""

import pytest

from discoveryd.sim.mesos_master import SimMesosMaster


@pytest.fixture
async def master():
    """A simulated leading Mesos master serving the bundled sample state."""
    m = SimMesosMaster()
    await m.start()
    yield m
    await m.stop()
