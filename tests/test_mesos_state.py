"""parse_master_state: raw /master/state JSON -> typed, immutable MesosState."""

from __future__ import annotations

import dataclasses

import pytest

from discoveryd.model.mesos import DiscoveryPort, NetworkInfo, Pid
from discoveryd.sources.mesos_state import (
    StateError,
    parse_master_state,
    parse_pid,
    parse_port_ranges,
)
from tests.fixture_files import load_json


@pytest.fixture(scope="module")
def fake():
    return parse_master_state(load_json("mesos-state-fake.json"))


def tasks_by_name(state):
    return {t.name: t for f in state.frameworks for t in f.tasks}


def test_fake_state_shape(fake):
    assert fake.leader == "master@1.2.3.4:5050"
    assert fake.leader_host_port() == ("1.2.3.4", 5050)
    assert [f.name for f in fake.frameworks] == [
        "ipv6-framework", "chronos with a space AND MIXED CASE-2.0.1", "no pid", "marathon",
    ]
    assert fake.task_count == 10
    assert len(fake.slaves) == 4
    assert fake.skipped == ()


def test_fake_state_pids(fake):
    fw = {f.name: f for f in fake.frameworks}
    assert fw["ipv6-framework"].pid == Pid("scheduler(1)", "2001:db8::1", 25501)
    assert fw["ipv6-framework"].host_port() == ("2001:db8::1", 25501)
    assert fw["no pid"].pid is None
    assert fw["no pid"].host_port() == ("localhost", None)
    assert fake.slaves[3].pid.address == "[2001:db8::1]:5051"


def test_fake_state_task_details(fake):
    tasks = tasks_by_name(fake)
    liquor = tasks["liquor.store"]
    # statuses are unordered: the newest TASK_RUNNING one (10.3.0.1) wins over 10.3.0.4
    assert liquor.docker_ips == ("10.3.0.1",)
    assert liquor.ports == (31354, 31355)
    assert liquor.discovery is not None and liquor.discovery.name == "liquor.store"
    assert liquor.discovery.ports == (
        DiscoveryPort(80, "tcp", "http"), DiscoveryPort(443, "tcp", "https"),
    )
    assert tasks["nginx"].mesos_ips == ("10.3.0.3",) and tasks["nginx"].ports == ()
    assert tasks["toy-store"].network_infos == (
        NetworkInfo("dcos6", ("12.0.1.3",)), NetworkInfo("dcos6", ("12.0.1.2", "fd01:b::1:8000:2")),
    )
    assert tasks["poseidon.bc4e3796-2d7a-11e4-b8df-d43d7edb01cd"].state == "TASK_KILLED"
    assert tasks["car.store"].discovery is None


def test_state_is_immutable(fake):
    assert isinstance(fake.frameworks, tuple) and isinstance(fake.frameworks[0].tasks, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fake.frameworks[0].name = "x"  # type: ignore[misc]
    hash(fake)  # every field is hashable: frozen all the way down


@pytest.mark.parametrize(
    "raw, message",
    [
        ([], "not an object"),
        ("state", "not an object"),
        ({"frameworks": []}, "no leader"),
        ({"leader": ""}, "no leader"),
        ({"leader": "master@1.2.3.4"}, "leader"),
        ({"leader": "master@1.2.3.4:5050", "frameworks": {}}, "'frameworks' is not a list"),
    ],
)
def test_unusable_documents_raise(raw, message):
    with pytest.raises(StateError, match=message):
        parse_master_state(raw)


def test_bad_items_are_skipped_not_fatal():
    state = parse_master_state(load_json("states/broken-items.json"))
    assert [f.id for f in state.frameworks] == ["fw-good"]
    assert [s.id for s in state.slaves] == ["ag-S1"]
    whats = [w for w, _ in state.skipped]
    for what in ("framework fw-badpid", "framework fw-v6nobrackets", "framework #3",
                 "agent ag-S2", "agent ag-S3", "agent #3"):
        assert what in whats, what
    reasons = dict(state.skipped)
    assert "bad pid" in reasons["framework fw-badpid"]
    assert "slave_id" in reasons["task no-agent.1 of framework fw-good"]
    assert "task #2 of framework fw-good" in whats


def test_bad_port_ranges_drop_only_the_range():
    state = parse_master_state(load_json("states/broken-items.json"))
    web = state.frameworks[0].tasks[0]
    assert web.ports == (31000, 31001, 31020)
    problems = [r for w, r in state.skipped if w == "task web.1"]
    assert problems == ["bad port range 'junk' ignored", "bad port range '31010-31005' ignored"]


def test_ips_are_normalised_and_garbage_dropped():
    web = parse_master_state(load_json("states/broken-items.json")).frameworks[0].tasks[0]
    assert web.mesos_ips == ("10.9.9.9",)  # IPv4-mapped IPv6 -> IPv4; newest status only
    assert web.network_infos == (NetworkInfo("", ("10.8.0.7",)), NetworkInfo("", ()))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("master@10.0.0.1:5050", Pid("master", "10.0.0.1", 5050)),
        ("slave(1)@[2001:DB8::1]:5051", Pid("slave(1)", "2001:db8::1", 5051)),
        ("scheduler@Mesos-Master.Example:80", Pid("scheduler", "mesos-master.example", 80)),
    ],
)
def test_parse_pid(text, expected):
    assert parse_pid(text) == expected


@pytest.mark.parametrize(
    "text", ["", "10.0.0.1:5050", "a@b@c:1", "m@:5050", "m@host", "m@host:x", "m@h:70000",
             "m@2001:db8::1:5050", "m@[2001:db8::1:5050", None, 7],
)
def test_parse_pid_rejects(text):
    with pytest.raises(ValueError):
        parse_pid(text)


@pytest.mark.parametrize(
    "text, ports, n_problems",
    [
        (None, (), 0),
        ("[]", (), 0),
        ("[31000-31002]", (31000, 31001, 31002), 0),
        ("[1-1, 5-6]", (1, 5, 6), 0),
        ("[0-2]", (), 1),
        ("31000-31001", (), 1),
        ([31000], (), 1),
        ("[5-4, 7-7]", (7,), 1),
    ],
)
def test_parse_port_ranges(text, ports, n_problems):
    got, problems = parse_port_ranges(text)
    assert got == ports and len(problems) == n_problems


def test_discovery_port_0_is_kept_and_a_bad_port_drops_only_itself():
    ports = [{"number": 0, "protocol": "tcp"}, {"number": -1}, {"number": 70000}, "junk",
             {"number": "80"}, {"number": 8080, "name": "http"}]
    raw = {"leader": "master@10.0.0.1:5050",
           "slaves": [{"id": "S1", "hostname": "a1", "pid": "slave(1)@10.0.1.1:5051"}],
           "frameworks": [{"id": "F1", "name": "marathon", "tasks": [
               {"id": "t.1", "name": "web", "slave_id": "S1", "state": "TASK_RUNNING",
                "discovery": {"name": "web", "ports": {"ports": ports}}}]}]}
    state = parse_master_state(raw)
    (task,) = state.frameworks[0].tasks
    assert task.discovery is not None
    assert task.discovery.ports == (DiscoveryPort(0, "tcp"), DiscoveryPort(8080, "", "http"))
    assert [r for w, r in state.skipped if w == "task t.1"] == [
        "bad discovery port number -1 ignored", "bad discovery port number 70000 ignored",
        "discovery port is not an object: ignored", "bad discovery port number '80' ignored"]
