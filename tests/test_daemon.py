"""The whole daemon against simulated masters: DNS answers, readiness, the /v1 API."""

import copy
import json

import pytest

from discoveryd.sim.mesos_master import SimMesosMaster, sample_state
from tests.daemon_harness import eventually, settings_for, start_daemon


@pytest.fixture
async def running(master):
    r = await start_daemon(settings_for(mesos={"masters": [master.address], "refresh_seconds": 0.5}))
    yield r
    await r.daemon.stop()


async def test_serves_task_records_and_becomes_ready(running, master):
    await eventually(lambda: not running.daemon.readiness(), what="ready")
    status, body = await running.get("/ready")
    assert status == 200 and body == {"ready": True, "waiting_for": [], "pending": [],
                                      "detail": {}}
    r = await running.query("liquor-store.marathon.mesos")
    assert r.flags & 0x0400  # authoritative
    assert {rr.address for rr in r.answer[0]} == {"1.2.3.11", "1.2.3.12"}
    leader = await running.addresses("leader.mesos")
    assert leader == {"127.0.0.1"}
    assert await running.addresses("ns1.mesos") == {"127.0.0.1"}  # the SOA mname: our listener


async def test_not_ready_until_state_loaded():
    dead = SimMesosMaster()
    dead.mode = "error"
    await dead.start()
    r = await start_daemon(settings_for(mesos={"masters": [dead.address], "refresh_seconds": 0.5}))
    try:
        status, body = await r.get("/ready")
        assert status == 503 and body["ready"] is False
        assert "mesos_state" in body["waiting_for"] and body["detail"]["mesos_state"]
        status, _ = await r.get("/health")
        assert status == 200
    finally:
        await r.daemon.stop()
        await dead.stop()


async def test_state_change_and_outage_keep_last_good_records(running, master):
    await eventually(lambda: running.addresses("liquor-store.marathon.mesos"), what="records")
    state = copy.deepcopy(sample_state())
    for f in state["frameworks"]:
        f["tasks"] = [t for t in f["tasks"] if "liquor" not in json.dumps(t)]
    master.state = state
    await eventually(lambda: _gone(running, "liquor-store.marathon.mesos"), what="task removed")
    master.mode = "error"  # the only master fails: the last good records stay
    fetches = running.daemon.metrics.mesos_state_fetches
    before = fetches.labels("error")._value.get()
    await eventually(lambda: fetches.labels("error")._value.get() > before, what="failed fetch")
    assert await running.addresses("car-store.marathon.mesos")


async def _gone(running, name):
    r = await running.query(name)
    return r.rcode() == 3  # NXDOMAIN


async def test_mesos_dns_http_api(running):
    await eventually(lambda: running.daemon.record_set, what="records")
    status, body = await running.get("/v1/version")
    assert status == 200 and body["Service"] == "discoveryd" and "Version" in body
    _, hosts = await running.get("/v1/hosts/liquor-store.marathon.mesos")
    assert sorted(h["ip"] for h in hosts) == ["1.2.3.11", "1.2.3.12"]
    assert {h["host"] for h in hosts} == {"liquor-store.marathon.mesos."}
    _, missing = await running.get("/v1/hosts/nothing.mesos")
    assert missing == [{"host": "", "ip": ""}]
    _, services = await running.get("/v1/services/_liquor-store._tcp.marathon.mesos")
    assert services and all(set(s) == {"service", "host", "ip", "port"} for s in services)
    assert all(s["port"].isdigit() and s["ip"] for s in services)
    _, none = await running.get("/v1/services/_nothing._tcp.mesos")
    assert none == [{"service": "", "host": "", "ip": "", "port": ""}]
    assert (await running.get("/v1/hosts/liquor-store.marathon.mesos/ports"))[0] == 501
    _, config = await running.get("/v1/config")
    assert config["Domain"] == "mesos" and config["dns"]["domain"] == "mesos"
    # int in mesos-dns's Config struct: a Go client refuses 60.0
    for key in ("RefreshSeconds", "ZkDetectionTimeout", "StateTimeoutSeconds", "Timeout"):
        value = config[key]  # whole seconds as an int; a fraction (a discoveryd-only value) not
        assert type(value) is int or not float(value).is_integer(), (key, value)
    assert type(config["Timeout"]) is int and type(config["ZkDetectionTimeout"]) is int
    _, state = await running.get("/v1/state")
    assert state["leader"] and state["leader_source"] == "static"
    assert state["counts"]["tasks"] > 0 and state["counts"]["records"] > 0
    assert state["last_refresh"]["mesos"] is not None
    status, _ = await running.get("/v1/haproxy/config")
    assert status == 404


async def test_metrics_count_queries(running):
    await eventually(lambda: running.daemon.record_set, what="records")
    await running.query("liquor-store.marathon.mesos")
    await running.query("nope.marathon.mesos")
    _, text = await running.get("/metrics")
    assert 'discoveryd_dns_queries_total{qtype="A",rcode="NOERROR"}' in text
    assert 'discoveryd_dns_queries_total{qtype="A",rcode="NXDOMAIN"}' in text
    assert 'discoveryd_mesos_state_fetches_total{result="ok"}' in text
    assert 'discoveryd_dns_records{type="A"}' in text
