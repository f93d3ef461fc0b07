"""Marathon JSON -> typed values (`discoveryd.model.marathon`), for 1.4 and 1.5+ alike.

The only place that knows Marathon's app and task shapes. One malformed app (or task)
is left out with a reason in `MarathonSnapshot.skipped`; only a document that is not
an apps list at all, or whose items are none of them an object with an id, raises
`MarathonFormatError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from discoveryd.model.marathon import (
    EMPTY,
    App,
    HealthCheck,
    HealthResult,
    MarathonSnapshot,
    ServicePort,
    Task,
)
from discoveryd.model.marathon_update import HealthChange, StatusUpdate

# Marathon 1.5+ `networks[].mode` -> our networking kind.
_NETWORK_MODES = {"host": "host", "container/bridge": "bridge", "container": "container"}


class MarathonFormatError(ValueError):
    """The document (or one app/task in it) does not have Marathon's shape."""


# What reading one app or task of an unexpected shape can raise besides our own
# MarathonFormatError (a list where a string was expected: TypeError; a string where an
# object was expected: AttributeError ...): that app or task is skipped, never the fetch.
_SHAPE_ERRORS = (MarathonFormatError, TypeError, AttributeError, ValueError, KeyError,
                 IndexError)


def _reason(e: Exception) -> str:
    if isinstance(e, MarathonFormatError):
        return str(e)
    return f"unexpected shape ({type(e).__name__}: {e})"


def parse_apps(raw: Any) -> MarathonSnapshot:
    """A `/v2/apps?embed=apps.tasks` answer -> snapshot; bad apps/tasks are skipped."""
    if not isinstance(raw, dict) or not isinstance(raw.get("apps"), list):
        raise MarathonFormatError("expected an object with an 'apps' list")
    apps: dict[str, App] = {}
    skipped: list[tuple[str, str]] = []
    identified = 0  # items that are objects with an id, readable or not
    for item in raw["apps"]:
        app_id = item.get("id") if isinstance(item, dict) else None
        label = app_id if isinstance(app_id, str) and app_id else "?"
        identified += label != "?"
        try:
            app, bad_tasks = _parse_app(item)
        except _SHAPE_ERRORS as e:
            skipped.append((label, _reason(e)))
            continue
        skipped.extend((app.app_id, reason) for reason in bad_tasks)
        if app.app_id in apps:
            skipped.append((app.app_id, "duplicate app id"))
            continue
        apps[app.app_id] = app
    if raw["apps"] and not identified:
        # Not one item is an object with an id: this is not Marathon's apps list (an API
        # change, another service's JSON), and installing it would empty haproxy.cfg.
        # Apps that have an id but bad fields are skipped one by one as usual.
        raise MarathonFormatError(f"no item of the {len(raw['apps'])} in 'apps' is an app "
                                  "with an id")
    return MarathonSnapshot(apps=MappingProxyType(apps), skipped=tuple(skipped))


def parse_app(raw: Any) -> App:
    """One app object (from /v2/apps or /v2/apps/{id}); malformed tasks are dropped."""
    return _parse_app(raw)[0]


def parse_task(raw: Any, app_id: str) -> Task:
    """One task object of app `app_id`; raises MarathonFormatError."""
    if not isinstance(raw, dict):
        raise MarathonFormatError("task is not an object")
    task_id = raw.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise MarathonFormatError("task without an id")
    results = raw.get("healthCheckResults")
    health = tuple(
        HealthResult(alive=_bool(r.get("alive"), "alive"), first_success=r.get("firstSuccess"),
                     last_failure=r.get("lastFailure"))
        for r in _list_of_dicts(results, "healthCheckResults")
    ) if results else ()
    return Task(
        task_id=task_id,
        app_id=app_id,
        host=_str(raw.get("host"), "host"),
        ip_addresses=parse_ip_addresses(raw.get("ipAddresses")),
        ports=_ints(raw.get("ports"), "ports"),
        state=raw.get("state") if isinstance(raw.get("state"), str) else None,
        health=health,
        started_at=raw.get("startedAt"),
        staged_at=raw.get("stagedAt"),
        slave_id=_str(raw.get("slaveId"), "slaveId"),
        version=_str(raw.get("version"), "version"),
    )


def parse_status_update(raw: Any) -> StatusUpdate:
    """A `status_update_event` payload -> StatusUpdate; raises MarathonFormatError."""
    if not isinstance(raw, dict):
        raise MarathonFormatError("event is not an object")
    for key in ("appId", "taskId", "taskStatus"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise MarathonFormatError(f"status_update_event without {key}")
    return StatusUpdate(
        app_id="/" + raw["appId"].strip("/"),
        task_id=raw["taskId"],
        state=raw["taskStatus"],
        host=_str(raw.get("host"), "host"),
        ports=_ints(raw.get("ports"), "ports"),
        ip_addresses=parse_ip_addresses(raw.get("ipAddresses")),
        version=_str(raw.get("version"), "version"),
        slave_id=_str(raw.get("slaveId"), "slaveId"),
        timestamp=raw.get("timestamp") if isinstance(raw.get("timestamp"), str) else None,
    )


def parse_health_change(raw: Any) -> HealthChange:
    """A `health_status_changed_event` (1.4: taskId, 1.5+: instanceId) -> HealthChange."""
    if not isinstance(raw, dict):
        raise MarathonFormatError("event is not an object")
    ref = raw.get("instanceId") or raw.get("taskId")
    if not isinstance(ref, str) or not isinstance(raw.get("appId"), str):
        raise MarathonFormatError("health_status_changed_event without appId and taskId")
    return HealthChange(app_id="/" + raw["appId"].strip("/"), task_id=ref,
                        alive=_bool(raw.get("alive"), "alive"))


def parse_ip_addresses(raw: Any) -> tuple[str, ...]:
    """`[{"ipAddress": "10.0.0.1", "protocol": "IPv4"}]` -> ("10.0.0.1",)."""
    if not raw:
        return ()
    out = []
    for entry in _list_of_dicts(raw, "ipAddresses"):
        ip = entry.get("ipAddress")
        if not isinstance(ip, str) or not ip:
            raise MarathonFormatError("ipAddresses entry without an ipAddress")
        out.append(ip)
    return tuple(out)


def _parse_app(raw: Any) -> tuple[App, list[str]]:
    if not isinstance(raw, dict):
        raise MarathonFormatError("app is not an object")
    app_id = raw.get("id")
    if not isinstance(app_id, str) or not app_id.strip("/"):
        raise MarathonFormatError("app without an id")
    app_id = "/" + app_id.strip("/")  # Marathon normalises "nginx" to "/nginx"
    networking = parse_networking(raw)
    tasks, bad = [], []
    for t in _list(raw.get("tasks"), "tasks"):
        try:
            tasks.append(parse_task(t, app_id))
        except _SHAPE_ERRORS as e:
            tid = t.get("id") if isinstance(t, dict) else None
            bad.append(f"task {tid if isinstance(tid, str) and tid else '?'}: {_reason(e)}")
    app = App(
        app_id=app_id,
        labels=parse_labels(raw.get("labels")),
        networking=networking,
        ports=parse_service_ports(raw, networking),
        health_checks=tuple(_health_check(h) for h in
                            _list_of_dicts(raw.get("healthChecks"), "healthChecks")),
        tasks=tuple(tasks),
        instances=_int(raw.get("instances", 0), "instances"),
        version=_str(raw.get("version"), "version"),
        has_deployments=bool(raw.get("deployments")),
    )
    return app, bad


def parse_labels(raw: Any) -> Mapping[str, str]:
    if raw is None:
        return EMPTY
    if not isinstance(raw, dict):
        raise MarathonFormatError("labels is not an object")
    for k, v in raw.items():
        if not isinstance(v, str):
            raise MarathonFormatError(f"label {k} is not a string")
    return MappingProxyType(dict(raw))


def parse_networking(raw: dict[str, Any]) -> str:
    """"host" | "bridge" | "container" from 1.5+ `networks` or 1.4 docker/ipAddress."""
    networks = raw.get("networks")
    if networks:
        mode = _list_of_dicts(networks, "networks")[0].get("mode", "container")
        if not isinstance(mode, str) or mode not in _NETWORK_MODES:
            raise MarathonFormatError(f"unknown network mode {mode!r}")
        return _NETWORK_MODES[mode]
    if raw.get("ipAddress") is not None:
        if not isinstance(raw["ipAddress"], dict):
            raise MarathonFormatError("ipAddress is not an object")
        return "container"
    docker = _docker(raw)
    network = docker.get("network")
    if network == "BRIDGE":
        return "bridge"
    if network == "USER":
        return "container"
    return "host"


def parse_service_ports(raw: dict[str, Any], networking: str) -> tuple[ServicePort, ...]:
    container = raw.get("container") or {}
    if not isinstance(container, dict):
        raise MarathonFormatError("container is not an object")
    mappings = container.get("portMappings") or _docker(raw).get("portMappings")
    if networking != "host" and mappings:
        return tuple(_port_mapping(m) for m in _list_of_dicts(mappings, "portMappings"))
    if networking == "container":
        ip = raw.get("ipAddress") or {}
        if not isinstance(ip, dict):
            raise MarathonFormatError("ipAddress is not an object")
        discovery = ip.get("discovery") or ip.get("discoveryInfo") or {}
        if not isinstance(discovery, dict):
            raise MarathonFormatError("ipAddress.discovery is not an object")
        return tuple(
            ServicePort(service_port=0, container_port=_int(p.get("number"), "discovery port"),
                        protocol=_str(p.get("protocol"), "protocol") or "tcp",
                        name=_str(p.get("name"), "name"), labels=parse_labels(p.get("labels")))
            for p in _list_of_dicts(discovery.get("ports"), "discovery.ports")
        )
    if raw.get("portDefinitions") is not None:
        return tuple(
            ServicePort(service_port=_int(p.get("port", 0), "portDefinitions.port"),
                        protocol=_str(p.get("protocol"), "protocol") or "tcp",
                        name=_str(p.get("name"), "name"), labels=parse_labels(p.get("labels")))
            for p in _list_of_dicts(raw["portDefinitions"], "portDefinitions")
        )
    return tuple(ServicePort(service_port=_int(p, "ports")) for p in _list(raw.get("ports"),
                                                                             "ports"))


def _port_mapping(m: dict[str, Any]) -> ServicePort:
    host_port = m.get("hostPort")
    container_port = m.get("containerPort")
    return ServicePort(
        service_port=_int(m.get("servicePort") or 0, "servicePort"),
        container_port=None if container_port is None else _int(container_port, "containerPort"),
        host_port=None if host_port is None else _int(host_port, "hostPort"),
        protocol=_str(m.get("protocol"), "protocol") or "tcp",
        name=_str(m.get("name"), "name"),
        labels=parse_labels(m.get("labels")),
    )


def _health_check(h: dict[str, Any]) -> HealthCheck:
    port = h.get("port")
    port_index = h.get("portIndex")
    if port is None and port_index is None and h.get("protocol") not in ("COMMAND",):
        port_index = 0
    return HealthCheck(
        protocol=_str(h.get("protocol"), "protocol") or "HTTP",
        path=_str(h.get("path"), "path") or "/",
        port_index=None if port_index is None else _int(port_index, "portIndex"),
        port=None if port is None else _int(port, "port"),
        interval_seconds=_int(h.get("intervalSeconds", 60), "intervalSeconds"),
        timeout_seconds=_int(h.get("timeoutSeconds", 20), "timeoutSeconds"),
        grace_period_seconds=_int(h.get("gracePeriodSeconds", 300), "gracePeriodSeconds"),
        max_consecutive_failures=_int(h.get("maxConsecutiveFailures", 3),
                                      "maxConsecutiveFailures"),
    )


def _docker(raw: dict[str, Any]) -> dict[str, Any]:
    container = raw.get("container") or {}
    docker = container.get("docker") if isinstance(container, dict) else None
    return docker if isinstance(docker, dict) else {}


def _list(v: Any, what: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise MarathonFormatError(f"{what} is not a list")
    return v


def _list_of_dicts(v: Any, what: str) -> list[dict[str, Any]]:
    items = _list(v, what)
    if not all(isinstance(i, dict) for i in items):
        raise MarathonFormatError(f"{what} entry is not an object")
    return items


def _ints(v: Any, what: str) -> tuple[int, ...]:
    """A list of integers (the common case checked in one pass: thousands of tasks)."""
    if v.__class__ is list and all(p.__class__ is int for p in v):
        return tuple(v)
    return tuple(_int(p, what) for p in _list(v, what))


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise MarathonFormatError(f"{what} is not an integer: {v!r}")
    return v


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise MarathonFormatError(f"{what} is not a boolean: {v!r}")
    return v


def _str(v: Any, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise MarathonFormatError(f"{what} is not a string: {v!r}")
    return v
