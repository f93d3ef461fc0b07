"""Pure reducers: Marathon events applied to a snapshot."""

from discoveryd.model.marathon_update import (
    apply_health_change,
    apply_status_update,
    health_change_needs_fetch,
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
    for state in ("TASK_KILLED", "TASK_FAILED", "TASK_FINISHED", "TASK_GONE", "TASK_DROPPED"):
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


def test_task_lost_is_kept_as_lost_like_a_fetch_shows_it():
    # Marathon keeps a lost task whose agent may come back (it lists it as TASK_LOST, and
    # haproxy keeps serving it like marathon-lb): the event must not drop it meanwhile.
    task = SNAP.apps["/shop/web"].tasks[0]
    ev = parse_status_update({**RUNNING, "taskId": task.task_id, "taskStatus": "TASK_LOST",
                              "host": task.host, "ports": list(task.ports)})
    lost = apply_status_update(SNAP, ev)
    (t,) = [t for t in lost.apps["/shop/web"].tasks if t.task_id == task.task_id]
    assert t.state == "TASK_LOST" and (t.host, t.ports, t.health) == (
        task.host, task.ports, task.health)
    fetched = parse_apps({"apps": [{"id": "/w", "tasks": [
        {"id": "w.1", "host": "h", "ports": [1], "state": "TASK_LOST"}]}]})
    again = apply_status_update(fetched, parse_status_update(
        {**RUNNING, "appId": "/w", "taskId": "w.1", "taskStatus": "TASK_LOST", "host": "h",
         "ports": [1], "slaveId": "", "version": ""}))
    assert [(t.task_id, t.state) for t in again.apps["/w"].tasks] == [("w.1", "TASK_LOST")]


def test_task_lost_for_a_task_no_longer_listed_does_not_bring_it_back():
    """Marathon reports expunged tasks (gone, dropped, unknown) as TASK_LOST too: a late
    TASK_LOST after the task was killed must not make it a server again."""
    tid = SNAP.apps["/shop/web"].tasks[0].task_id
    killed = apply_status_update(SNAP, parse_status_update(
        {**RUNNING, "taskId": tid, "taskStatus": "TASK_KILLED"}))
    late = parse_status_update({**RUNNING, "taskId": tid, "taskStatus": "TASK_LOST"})
    assert apply_status_update(killed, late) is killed


TWO_CHECKS = parse_apps({"apps": [{
    "id": "/web", "instances": 1, "portDefinitions": [{"port": 10000}],
    "healthChecks": [{"protocol": "HTTP", "path": "/a"}, {"protocol": "TCP"}],
    "tasks": [{"id": "web.1", "host": "h", "ports": [31000], "state": "TASK_RUNNING",
               "healthCheckResults": [{"alive": False}, {"alive": False}]}]}]})


def test_one_alive_event_does_not_mark_every_check_of_a_multi_check_app_alive():
    # The event does not say which check passed: only a fetch can tell all of them do.
    assert apply_health_change(TWO_CHECKS, "/web", "web.1", True) is TWO_CHECKS
    assert health_change_needs_fetch(TWO_CHECKS, "/web", "web.marathon-1", True)
    # alive=False is safe to apply (the task is no longer all-alive) and needs no fetch.
    up = parse_apps({"apps": [{**{"id": "/web", "portDefinitions": [{"port": 10000}],
                                  "healthChecks": [{"protocol": "HTTP"}, {"protocol": "TCP"}]},
                               "tasks": [{"id": "web.1", "host": "h", "ports": [1],
                                          "healthCheckResults": [{"alive": True},
                                                                 {"alive": True}]}]}]})
    assert not health_change_needs_fetch(up, "/web", "web.1", False)
    down = apply_health_change(up, "/web", "web.1", False)
    assert [h.alive for h in down.apps["/web"].tasks[0].health] == [False, False]
    # One check: the event is the whole truth, applied as before.
    single = SNAP.apps["/shop/web"].tasks[0].task_id
    assert not health_change_needs_fetch(SNAP, "/shop/web", single, True)
