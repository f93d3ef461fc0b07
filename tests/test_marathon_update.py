"""Pure reducers: Marathon events applied to a snapshot."""

from discoveryd.model.marathon_update import (
    apply_health_change,
    apply_status_update,
    matches_instance,
    remove_app,
)
from discoveryd.sources.marathon_apps import parse_apps, parse_health_change, parse_status_update
from tests.fixture_files import load_json

SNAP = parse_apps(load_json("marathon/apps-marathon15.json"))

RUNNING = {  # the shape of Marathon's status_update_event
    "eventType": "status_update_event", "timestamp": "2018-01-10T08:30:00.000Z",
    "slaveId": "S9", "taskId": "shop_web.new-1", "taskStatus": "TASK_RUNNING", "message": "",
    "appId": "/shop/web", "host": "10.0.2.30", "ports": [24100],
    "ipAddresses": [{"ipAddress": "10.0.2.30", "protocol": "IPv4"}],
    "version": "2018-01-10T08:00:00.000Z",
}


def test_running_task_appears_with_event_fields():
    new = apply_status_update(SNAP, parse_status_update(RUNNING))
    tasks = {t.task_id: t for t in new.apps["/shop/web"].tasks}
    t = tasks["shop_web.new-1"]
    assert (t.host, t.ports, t.ip_addresses, t.state, t.slave_id) == (
        "10.0.2.30", (24100,), ("10.0.2.30",), "TASK_RUNNING", "S9")
    assert len(tasks) == 2 and SNAP.apps["/shop/web"].tasks != new.apps["/shop/web"].tasks


def test_update_keeps_health_and_same_event_twice_is_identity():
    tid = SNAP.apps["/shop/web"].tasks[0].task_id
    ev = parse_status_update({**RUNNING, "taskId": tid, "taskStatus": "TASK_KILLING"})
    new = apply_status_update(SNAP, ev)
    task = new.apps["/shop/web"].tasks[0]
    assert task.state == "TASK_KILLING" and task.health[0].alive is True
    assert apply_status_update(new, ev) is new


def test_terminal_states_remove_the_task():
    tid = SNAP.apps["/shop/web"].tasks[0].task_id
    for state in ("TASK_KILLED", "TASK_FAILED", "TASK_FINISHED", "TASK_LOST", "TASK_GONE"):
        ev = parse_status_update({**RUNNING, "taskId": tid, "taskStatus": state})
        assert apply_status_update(SNAP, ev).apps["/shop/web"].tasks == ()
    gone = parse_status_update({**RUNNING, "taskStatus": "TASK_KILLED"})
    assert apply_status_update(SNAP, gone) is SNAP  # unknown task: nothing to remove


def test_unknown_app_is_left_to_a_fetch():
    assert apply_status_update(SNAP, parse_status_update({**RUNNING, "appId": "/new"})) is SNAP
    assert apply_health_change(SNAP, "/new", "x", True) is SNAP


def test_health_flip_by_task_id_and_by_instance_id():
    tid = SNAP.apps["/shop/web"].tasks[0].task_id  # shop_web.a1b2c3d4-...
    ch = parse_health_change({"eventType": "health_status_changed_event", "appId": "/shop/web",
                              "taskId": tid, "alive": False, "version": "v"})
    down = apply_health_change(SNAP, ch.app_id, ch.task_id, ch.alive)
    assert down.apps["/shop/web"].tasks[0].health[0].alive is False
    instance = tid.replace("shop_web.", "shop_web.marathon-")
    ch = parse_health_change({"appId": "/shop/web", "instanceId": instance, "alive": True})
    up = apply_health_change(down, ch.app_id, ch.task_id, ch.alive)
    assert up.apps["/shop/web"].tasks[0].health[0].alive is True
    assert apply_health_change(up, "/shop/web", tid, True) is up


def test_health_for_task_without_results_creates_them():
    snap = apply_health_change(SNAP, "/pywebserver",
                               SNAP.apps["/pywebserver"].tasks[0].task_id, False)
    assert [h.alive for h in snap.apps["/pywebserver"].tasks[0].health] == [False]


def test_instance_id_matching():
    assert matches_instance("a.instance-u1._app.3", "a.instance-u1")
    assert matches_instance("g_a.u2", "g_a.marathon-u2")
    assert not matches_instance("a.u3", "a.marathon-u2")


def test_remove_app():
    assert "/pywebserver" not in remove_app(SNAP, "/pywebserver").apps
    assert remove_app(SNAP, "/none") is SNAP
