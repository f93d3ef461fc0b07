"""The whole daemon following the leader through a real ZooKeeper: DNS answers switch."""

import copy
import json

import pytest

from discoveryd.sim.mesos_master import SimMesosMaster, sample_state
from tests.daemon_harness import eventually, settings_for, start_daemon
from tests.fakes.zookeeper import register_master


def state_without(word):
    state = copy.deepcopy(sample_state())
    for f in state["frameworks"]:
        f["tasks"] = [t for t in f["tasks"] if word not in json.dumps(t)]
    return state


@pytest.fixture
async def masters():
    a = SimMesosMaster(host="127.0.0.2")  # serves everything
    b = SimMesosMaster(state_without("liquor"), host="127.0.0.3")
    for m in (a, b):
        await m.start()
    yield a, b
    for m in (a, b):
        await m.stop()


async def test_leader_change_switches_dns_and_zk_outage_keeps_serving(zk, zk_admin, masters):
    a, b = masters
    node_a = register_master(zk_admin, zk.path, a.host, a.port)
    register_master(zk_admin, zk.path, b.host, b.port)
    b.follow(a)
    r = await start_daemon(settings_for(mesos={"zk": zk.url, "refresh_seconds": 3600}))
    try:
        await eventually(lambda: _has(r, "leader.mesos", "127.0.0.2"), what="leader a")
        assert await r.addresses("liquor-store.marathon.mesos")
        assert await r.addresses("master0.mesos") == {"127.0.0.2"}
        assert await r.addresses("master1.mesos") == {"127.0.0.3"}
        b.lead()
        zk_admin.delete(node_a)  # a's session ends: b leads
        await eventually(lambda: _has(r, "leader.mesos", "127.0.0.3"), what="leader b")
        assert (await r.query("liquor-store.marathon.mesos")).rcode() == 3  # b's state
        _, state = await r.get("/v1/state")
        assert state["leader"] == b.address and state["leader_source"] == "zk"

        zk.server.stop()  # ZooKeeper outage: the last good records keep being served
        await eventually(lambda: r.daemon.mesos.status()["zk_connected"] is False,
                         timeout=60, what="zk disconnected")
        assert await r.addresses("leader.mesos") == {"127.0.0.3"}
        assert await r.addresses("car-store.marathon.mesos")
        _, text = await r.get("/metrics")
        assert "discoveryd_zookeeper_connected 0.0" in text
    finally:
        zk.server.start()
        await r.daemon.stop()


async def _has(r, name, ip):
    return await r.addresses(name) == {ip}
