"""Marathon events drive DNS: a task event triggers a prompt Mesos refresh."""

import pytest

from discoveryd.sim.cluster import SimCluster
from discoveryd.sim.marathon import app
from tests.daemon_harness import eventually, settings_for, start_daemon


@pytest.fixture
async def cluster():
    c = SimCluster()
    await c.start()
    c.marathon.add_app(app("/shop/api", instances=1, service_ports=(10002,)))
    c.sync()
    yield c
    await c.stop()


@pytest.fixture
async def running(cluster):
    r = await start_daemon(settings_for(
        mesos={"masters": [cluster.master.address], "refresh_seconds": 3600},
        marathon={"urls": [cluster.marathon.url]},
        haproxy={"enabled": False},
    ))
    yield r
    await r.daemon.stop()


async def test_scale_follows_in_dns_without_waiting_for_refresh(running, cluster):
    await eventually(lambda: not running.daemon.readiness(), what="ready")
    assert len(await running.addresses("api-shop.marathon.mesos")) == 1
    cluster.marathon.scale("/shop/api", 3)  # pushes TASK_RUNNING events
    cluster.sync()
    # refresh_seconds is an hour: only the event-triggered refresh can make this pass.
    await eventually(lambda: _count(running, "api-shop.marathon.mesos", 3), what="3 tasks")
    snapshot = running.daemon.store.current.marathon
    assert len(snapshot.apps["/shop/api"].tasks) == 3
    _, state = await running.get("/v1/state")
    assert state["marathon_url"] == cluster.marathon.url
    assert state["counts"]["apps"] == 1 and state["counts"]["marathon_tasks"] == 3
    _, text = await running.get("/metrics")
    assert 'discoveryd_marathon_events_total{type="status_update_event"}' in text
    assert "discoveryd_marathon_connected 1.0" in text


async def _count(running, name, n):
    return len(await running.addresses(name)) == n
