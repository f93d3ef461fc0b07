"""Pure reducers applying Marathon events to a `MarathonSnapshot`.

Events are converted to the typed values below in `sources/`; these functions do no
I/O. When an event names an app the snapshot does not know, the snapshot is returned
unchanged (the same object) and the caller fetches a fresh snapshot instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from discoveryd.model.marathon import App, HealthResult, MarathonSnapshot, Task

# Mesos states after which a task is gone from Marathon's view of the app. Not TASK_LOST:
# Marathon keeps a lost task (condition Unreachable, shown as TASK_LOST in /v2/apps) when
# its agent may come back, and expunges it otherwise; the event does not say which
# (no reason field), so the task is kept as TASK_LOST, as a fetch would most often show
# it, and the source asks for a fetch to settle it.
TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
})


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The fields of a `status_update_event` we use."""

    app_id: str
    task_id: str
    state: str
    host: str = ""
    ports: tuple[int, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    version: str = ""
    slave_id: str = ""
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A `health_status_changed_event`: 1.4 names the task, 1.5+ the instance."""

    app_id: str
    task_id: str  # a task id or an instance id
    alive: bool


def apply_status_update(snapshot: MarathonSnapshot, update: StatusUpdate) -> MarathonSnapshot:
    app = snapshot.apps.get(update.app_id)
    if app is None:
        return snapshot
    others = tuple(t for t in app.tasks if t.task_id != update.task_id)
    if update.state in TERMINAL_STATES:
        if len(others) == len(app.tasks):
            return snapshot
        return _with_app(snapshot, app.with_tasks(others))
    old = next((t for t in app.tasks if t.task_id == update.task_id), None)
    if old is None and update.state == "TASK_LOST":
        # Marathon also reports expunged (gone, dropped, unknown) tasks as TASK_LOST: one it
        # no longer lists must not come back as a server; the fetch the source asks for
        # settles whether a known one stays.
        return snapshot
    task = Task(
        task_id=update.task_id,
        app_id=update.app_id,
        host=update.host or (old.host if old else ""),
        ip_addresses=update.ip_addresses or (old.ip_addresses if old else ()),
        ports=update.ports or (old.ports if old else ()),
        state=update.state,
        health=old.health if old else (),
        started_at=_started_at(old, update),
        staged_at=old.staged_at if old else update.timestamp,
        slave_id=update.slave_id or (old.slave_id if old else ""),
        version=update.version or (old.version if old else ""),
    )
    if task == old:
        return snapshot
    tasks = tuple(task if t.task_id == task.task_id else t for t in app.tasks)
    return _with_app(snapshot, app.with_tasks(tasks if old else (*app.tasks, task)))


def apply_health_change(snapshot: MarathonSnapshot, app_id: str, task_id: str,
                        alive: bool) -> MarathonSnapshot:
    """Set every health result of the task (found by task or instance id) to `alive`.

    Marathon's event does not say which health check changed. With several checks,
    alive=False still applies (the task is no longer all-alive), but alive=True does not:
    one passing check says nothing of the others, so the snapshot is returned unchanged
    and the caller fetches one instead (see `health_change_needs_fetch`).
    """
    app = snapshot.apps.get(app_id)
    if app is None:
        return snapshot
    changed = False
    tasks = []
    for t in app.tasks:
        if matches_instance(t.task_id, task_id):
            count = max(len(t.health), len(app.health_checks), 1)
            if alive and count > 1:
                tasks.append(t)
                continue
            old = t.health or (HealthResult(alive=not alive),) * count
            health = tuple(replace(h, alive=alive) for h in old)
            if health != t.health:
                t, changed = replace(t, health=health), True
        tasks.append(t)
    return _with_app(snapshot, app.with_tasks(tuple(tasks))) if changed else snapshot


def health_change_needs_fetch(snapshot: MarathonSnapshot, app_id: str, task_id: str,
                              alive: bool) -> bool:
    """Whether `apply_health_change` leaves this change to a fetch: alive=True for a task
    of an app with several health checks (or with several results recorded)."""
    app = snapshot.apps.get(app_id)
    if not alive or app is None:
        return False
    if len(app.health_checks) > 1:
        return True
    return any(len(t.health) > 1 for t in app.tasks if matches_instance(t.task_id, task_id))


def remove_app(snapshot: MarathonSnapshot, app_id: str) -> MarathonSnapshot:
    if app_id not in snapshot.apps:
        return snapshot
    apps = {k: v for k, v in snapshot.apps.items() if k != app_id}
    return replace(snapshot, apps=MappingProxyType(apps))


def matches_instance(task_id: str, ref: str) -> bool:
    """Whether `ref` (a task id, or a Marathon 1.5+ instance id) names task `task_id`.

    Instance "app.marathon-<uuid>" holds the legacy task "app.<uuid>"; instance
    "app.instance-<uuid>" holds tasks "app.instance-<uuid>._app.<n>".
    """
    if task_id == ref:
        return True
    prefix, sep, rest = ref.rpartition(".marathon-")
    if sep and task_id == f"{prefix}.{rest}":
        return True
    return task_id.startswith(ref + ".")


def _started_at(old: Task | None, update: StatusUpdate) -> str | None:
    if old and old.started_at:
        return old.started_at
    return update.timestamp if update.state == "TASK_RUNNING" else None


def _with_app(snapshot: MarathonSnapshot, app: App) -> MarathonSnapshot:
    apps = dict(snapshot.apps)
    apps[app.app_id] = app
    return replace(snapshot, apps=MappingProxyType(apps))
