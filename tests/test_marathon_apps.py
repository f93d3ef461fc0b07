"""Converter tests: recorded Marathon 1.4 and 1.5+ payloads -> typed values."""

import pytest

from discoveryd.sources.marathon_apps import (
    MarathonFormatError,
    parse_app,
    parse_apps,
    parse_task,
)
from tests.fixture_files import load_json


def test_marathon14_host_networking_ports_tasks_and_health():
    snap = parse_apps(load_json("marathon/apps-marathon14.json"))
    assert snap.skipped == ()
    web = snap.apps["/shop/web"]
    assert web.networking == "host"
    assert [p.service_port for p in web.ports] == [10001, 10002]
    assert web.ports[1].labels == {"metrics": "true"}
    assert web.labels["HAPROXY_0_VHOST"] == "shop.example.com"
    hc = web.health_checks[0]
    assert (hc.protocol, hc.path, hc.port_index, hc.interval_seconds, hc.timeout_seconds,
            hc.grace_period_seconds, hc.max_consecutive_failures) == ("HTTP", "/health", 0, 10,
                                                                      5, 30, 3)
    t1, t2 = web.tasks
    assert (t1.host, t1.ports, t1.state, t1.ip_addresses) == (
        "10.0.1.11", (31001, 31002), "TASK_RUNNING", ("10.0.1.11",))
    assert t1.slave_id.endswith("-S0") and t1.version == "2017-03-02T10:11:12.345Z"
    assert [h.alive for h in t1.health] == [True]
    assert [h.alive for h in t2.health] == [False]
    assert snap.task_count == 4


def test_marathon14_bridge_and_ip_per_task():
    snap = parse_apps(load_json("marathon/apps-marathon14.json"))
    nginx = snap.apps["/nginx"]
    assert nginx.networking == "bridge" and nginx.has_deployments
    assert (nginx.ports[0].service_port, nginx.ports[0].container_port) == (10000, 8080)
    assert nginx.tasks[0].state == "TASK_STAGING"
    api = snap.apps["/ipt/api"]
    assert api.networking == "container" and api.ip_per_task
    assert (api.ports[0].service_port, api.ports[0].container_port) == (0, 8080)
    assert api.tasks[0].ip_addresses == ("9.0.1.7",)
    assert api.health_checks[0].port == 8080 and api.health_checks[0].port_index is None
    user = snap.apps["/user/net"]
    assert user.networking == "container"
    assert (user.ports[0].service_port, user.ports[0].container_port) == (10050, 80)


def test_marathon15_networks_modes():
    snap = parse_apps(load_json("marathon/apps-marathon15.json"))
    assert snap.apps["/shop/web"].networking == "host"
    assert snap.apps["/shop/web"].tasks[0].health[0].alive is True
    py = snap.apps["/pywebserver"]
    assert py.networking == "bridge"
    assert (py.ports[0].service_port, py.ports[0].container_port, py.ports[0].name) == (
        10101, 80, "test")
    api = snap.apps["/ipt/api"]
    assert api.networking == "container"
    assert api.ports[0].service_port == 10200 and api.ports[0].labels["VIP_0"] == "/api:80"


def test_malformed_app_is_skipped_not_the_snapshot():
    snap = parse_apps(load_json("marathon/apps-marathon15.json"))
    assert "/broken/ports" not in snap.apps
    assert [app_id for app_id, _ in snap.skipped] == ["/broken/ports"]
    assert "portDefinitions.port" in snap.skipped[0][1]
    assert len(snap.apps) == 3


@pytest.mark.parametrize("bad", [
    "not an app", {"id": ""}, {"id": "/x", "labels": {"A": 1}},
    {"id": "/x", "networks": [{"mode": "weird"}]}, {"id": "/x", "healthChecks": [{"portIndex": "0"}]},
])
def test_each_kind_of_bad_app_is_skipped(bad):
    snap = parse_apps({"apps": [bad, {"id": "/ok"}]})
    assert list(snap.apps) == ["/ok"]
    assert len(snap.skipped) == 1


def test_bad_task_is_skipped_and_reported_app_kept():
    raw = {"apps": [{"id": "/a", "tasks": [{"id": "a.1", "host": "h", "ports": [1]},
                                           {"id": "a.2", "ports": ["x"]}]}]}
    snap = parse_apps(raw)
    assert [t.task_id for t in snap.apps["/a"].tasks] == ["a.1"]
    assert snap.skipped[0][0] == "/a" and "a.2" in snap.skipped[0][1]


@pytest.mark.parametrize("doc", [None, [], {"apps": {}}, {"app": []}])
def test_unusable_document_raises(doc):
    with pytest.raises(MarathonFormatError):
        parse_apps(doc)


def test_single_app_and_id_normalised():
    app = parse_app(load_json("marathon-app-nginx.json"))
    assert app.app_id == "/nginx" and app.networking == "bridge" and app.instances == 5
    assert app.ports[0].service_port == 10000
    assert app.labels["HAPROXY_DEPLOYMENT_GROUP"] == "nginx"
    with pytest.raises(TypeError):
        app.labels["X"] = "y"  # type: ignore[index]


def test_parse_task_defaults():
    t = parse_task({"id": "x.1"}, "/x")
    assert (t.app_id, t.host, t.ports, t.state, t.health) == ("/x", "", (), None, ())
    with pytest.raises(MarathonFormatError):
        parse_task({"host": "h"}, "/x")
