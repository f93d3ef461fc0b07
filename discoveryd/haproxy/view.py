"""The HAProxy view: a pure function from Marathon apps to typed frontends/backends.

Templates see only these values, never raw labels. `build_view` does no I/O, reads no
clock and logs nothing; it returns what it skipped and why, and the caller counts.
Order is always sorted (app id, port index, names), so equal input renders equal text.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib
from dataclasses import dataclass, replace

from discoveryd.haproxy.labels import (
    APP_ID_RE,
    Auth,
    LabelError,
    PortLabels,
    parse_deployment,
    parse_port_labels,
    shown,
)
from discoveryd.model.marathon import App, HealthCheck, MarathonSnapshot, Task
from discoveryd.settings import HAProxySettings

# Like marathon-lb: LOST/UNREACHABLE tasks (agent partitioned) keep their traffic.
SERVED_STATES = frozenset({"TASK_RUNNING", "TASK_LOST", "TASK_UNREACHABLE", None})
HTTP_CHECKS = frozenset({"HTTP", "MESOS_HTTP"})
TCP_CHECKS = frozenset({"TCP", "MESOS_TCP", "HTTPS", "MESOS_HTTPS"})
ADDRESS_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")
NAME_CHARS = str.maketrans({c: "_" for c in ".:-[]%"})
CHECK_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%?&=+-]*$")
Skipped = tuple[str, int, str]  # (app_id, port_index or -1 for the whole app, reason)


@dataclass(frozen=True, slots=True)
class Check:
    kind: str  # "http" or "tcp"
    path: str
    interval: int
    fall: int
    timeout: int


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    id: int
    address: str
    port: int
    check_port: int | None = None
    disabled: bool = False  # blue/green: the old colour, drained

    @property
    def cookie(self) -> str:
        """The sticky-session cookie value: a digest (as marathon-lb), so the cookie does not
        tell clients the backend's address."""
        return hashlib.sha1(self.name.encode()).hexdigest()[:10]

    @property
    def endpoint(self) -> str:
        """`address:port` as a server line takes it: an attribute, where the template's
        `bind(...)` call costs a jinja context call per server (a fifth of a cold render)."""
        return bind_spec(self.address, self.port)


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    app_id: str
    port_index: int
    mode: str
    frontend_port: int
    bind: str
    labels: PortLabels
    servers: tuple[Server, ...]
    check: Check | None

    @property
    def userlist(self) -> str:
        return f"user_{self.name}"


@dataclass(frozen=True, slots=True)
class HostRule:
    host: str
    wildcard: bool  # "*.example.com": match the suffix ".example.com"
    path: str | None
    backend: str
    weight: int
    auth: Auth | None
    userlist: str
    redirect_to_https: bool


@dataclass(frozen=True, slots=True)
class AppIdRule:
    app_id: str
    backend: str


@dataclass(frozen=True, slots=True)
class Globals:
    bind_address: str
    http_port: int
    https_port: int
    appid_port: int
    stats_port: int
    ssl_certs: tuple[str, ...]
    maxconn: int
    hard_stop_after: str
    stats_socket: str
    server_state_file: str | None


@dataclass(frozen=True, slots=True)
class HAProxyView:
    globals: Globals
    backends: tuple[Backend, ...]
    host_rules: tuple[HostRule, ...]
    appid_rules: tuple[AppIdRule, ...]

    def without(self, app_ids: set[str]) -> HAProxyView:
        """The same view minus every backend and rule of these apps (for bisection)."""
        names = {b.name for b in self.backends if b.app_id in app_ids}
        return replace(
            self,
            backends=tuple(b for b in self.backends if b.name not in names),
            host_rules=tuple(r for r in self.host_rules if r.backend not in names),
            appid_rules=tuple(r for r in self.appid_rules if r.backend not in names),
        )

    @property
    def app_ids(self) -> tuple[str, ...]:
        return tuple(sorted({b.app_id for b in self.backends}))


def bind_spec(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def globals_from(settings: HAProxySettings) -> Globals:
    return Globals(
        bind_address=settings.bind_address, http_port=settings.http_port,
        https_port=settings.https_port, appid_port=settings.appid_port,
        stats_port=settings.stats_port, ssl_certs=tuple(settings.ssl_certs),
        maxconn=settings.maxconn, hard_stop_after=settings.hard_stop_after,
        stats_socket=settings.stats_socket, server_state_file=settings.server_state_file,
    )


def backend_name(app_id: str, port: int) -> str:
    return f"{app_id.lstrip('/').replace('/', '_')}_{port}"


def build_view(snapshot: MarathonSnapshot,
               settings: HAProxySettings) -> tuple[HAProxyView, list[Skipped]]:
    """Every served app port as a backend plus its routing rules; skipped ports with reasons."""
    view, skipped, _ = _build(snapshot, settings, {})
    return view, skipped


class ViewBuilder:
    """`build_view` that remembers each app's backends and skips, by the App object itself.

    Marathon events replace one app and keep every other App object, so an unchanged app
    costs a dict lookup, not a label parse and a server list. Held by its one caller (the
    HAProxy pipeline), so two pipelines share nothing; not for use from two threads at once.
    """

    def __init__(self) -> None:
        self._memo: dict[_MemoKey, _MemoEntry] = {}

    def build(self, snapshot: MarathonSnapshot,
              settings: HAProxySettings) -> tuple[HAProxyView, list[Skipped]]:
        view, skipped, used = _build(snapshot, settings, self._memo)
        # Keep this view's entries, and earlier ones only while they are few: a full
        # Marathon fetch makes every App object new, and the old ones must not stay alive.
        if len(self._memo) > len(used) + 1000:
            self._memo = used
        else:
            self._memo.update(used)
        return view, skipped


# The entry holds the app, so its id() cannot be reused while the entry lives, and
# `entry[0] is app` proves the hit. Every input of _app_backends is in the key; apps are
# frozen.
_MemoKey = tuple[int, str, str, frozenset[str]]
_MemoEntry = tuple[App, tuple[Backend, ...], tuple[Skipped, ...]]


def _build(snapshot: MarathonSnapshot, settings: HAProxySettings,
           memo: dict[_MemoKey, _MemoEntry],
           ) -> tuple[HAProxyView, list[Skipped], dict[_MemoKey, _MemoEntry]]:
    """The view, its skips, and the memo entries it used; `memo` is only read."""
    skipped: list[Skipped] = []
    backends: list[Backend] = []
    used: dict[_MemoKey, _MemoEntry] = {}
    for app, draining in merge_deployments(snapshot.ordered, skipped):
        key = (id(app), settings.group, settings.bind_address, draining)
        entry = memo.get(key)
        if entry is None or entry[0] is not app:
            entry = (app, *_app_backends(app, draining, settings))
        used[key] = entry
        backends += entry[1]
        skipped += entry[2]
    backends = _drop_port_conflicts(backends, settings, skipped)
    view = HAProxyView(
        globals=globals_from(settings),
        backends=tuple(sorted(backends, key=lambda b: b.name)),
        host_rules=_host_rules(backends),
        appid_rules=_appid_rules(backends),
    )
    return view, skipped, used


def _app_backends(app: App, draining: frozenset[str],
                  settings: HAProxySettings) -> tuple[tuple[Backend, ...], tuple[Skipped, ...]]:
    """One app's backends, one per served port, and the ports it skipped with reasons."""
    skipped: list[Skipped] = []
    backends = []
    for index in range(len(app.ports)):
        try:
            b = _backend(app, draining, index, settings, skipped)
        except LabelError as e:
            skipped.append((app.app_id, index, e.reason))
            continue
        if b is not None:
            backends.append(b)
    return tuple(backends), tuple(skipped)


def merge_deployments(apps: tuple[App, ...],
                      skipped: list[Skipped]) -> list[tuple[App, frozenset[str]]]:
    """Blue/green, as marathon-lb: apps sharing HAPROXY_DEPLOYMENT_GROUP become one app.

    The colour whose deployment started first keeps its labels and service ports (the new
    colour runs on the alternate port until it takes over) under the group's id; it gets
    every task of both. Returns each app with the ids of its tasks to drain (`disabled`).
    """
    out: list[tuple[App, frozenset[str]]] = []
    groups: dict[str, list[tuple[str, App]]] = {}
    for app in apps:
        if not APP_ID_RE.fullmatch(app.app_id):
            # Named escaped and bounded: the id goes into a log line and a metric label,
            # where a newline would forge a log entry and 10 KB would bloat every scrape.
            skipped.append((shown(app.app_id, 200), -1, "bad_app_id"))
            continue
        try:
            dep = parse_deployment(app)
        except LabelError as e:
            skipped.append((app.app_id, -1, e.reason))
            continue
        if dep is None:
            out.append((app, frozenset()))
        else:
            groups.setdefault(dep.group, []).append((dep.started_at, app))
    for group in sorted(groups):
        members = [a for _, a in sorted(groups[group], key=lambda m: (m[0], m[1].app_id))]
        merged, draining = members[0], frozenset[str]()
        for new in members[1:]:
            merged, drained = _merge_colours(merged, new)
            draining |= drained
        out.append((replace(merged, app_id=group), draining))
    return out


def _merge_colours(old: App, new: App) -> tuple[App, frozenset[str]]:
    """The old colour with the new one's tasks added; drain as many old tasks as the new
    colour has healthy instances, keeping HAPROXY_DEPLOYMENT_TARGET_INSTANCES in service."""
    dep = parse_deployment(new)
    target = dep.target_instances if dep and dep.new_instances and dep.target_instances else 1
    if new.health_checks:
        healthy = sum(1 for t in new.tasks if any(h.alive for h in t.health))
    else:
        healthy = new.instances
    old_tasks = sorted(old.tasks, key=lambda t: t.task_id)
    count = min(len(old_tasks), healthy, max(0, healthy + old.instances - target))
    drained = frozenset(t.task_id for t in old_tasks[:count])
    return old.with_tasks(tuple(old_tasks) + new.tasks), drained


def _backend(app: App, draining: frozenset[str], index: int, settings: HAProxySettings,
             skipped: list[Skipped]) -> Backend | None:
    labels = parse_port_labels(app.labels, index)
    if not labels.enabled or not _group_matches(labels.groups, settings.group):
        return None
    sp = app.ports[index]
    if "tcp" not in sp.protocol.split(","):
        return None  # HAProxy balances TCP only
    port = labels.port or sp.service_port
    if not port:
        raise LabelError("no_service_port", "neither a servicePort nor HAPROXY_n_PORT")
    hc, http_hint = _health_check(app, labels, index)
    mode = labels.mode or ("http" if labels.vhosts or http_hint else "tcp")
    if labels.vhosts and mode != "http":
        raise LabelError("vhost_needs_http", "HAPROXY_n_VHOST with HAPROXY_n_MODE=tcp")
    check = _check(hc, mode)
    servers = _servers(app, draining, index, labels.healthcheck_port_index,
                       hc.port if hc else None, skipped)
    if not servers:
        return None  # as marathon-lb: no frontend without a server behind it
    return Backend(
        name=backend_name(app.app_id, port), app_id=app.app_id, port_index=index, mode=mode,
        frontend_port=port, bind=bind_spec(labels.bind_addr or settings.bind_address, port),
        labels=labels, servers=servers, check=check,
    )


def _group_matches(groups: tuple[str, ...], wanted: str) -> bool:
    return wanted == "*" or wanted in groups


def _find_check(app: App, index: int) -> HealthCheck | None:
    """marathon-lb's pick: a check with a fixed `port` serves every port, else portIndex."""
    for h in app.health_checks:
        if h.port or h.port_index == index:
            return h
    return None


def _health_check(app: App, labels: PortLabels, index: int) -> tuple[HealthCheck | None, bool]:
    """The port's health check and whether it makes the port `http` by default."""
    hc = _find_check(app, index)
    if hc is not None:
        return hc, hc.protocol == "HTTP"
    if labels.healthcheck_port_index is None:
        return None, False
    hc = _find_check(app, labels.healthcheck_port_index)
    return hc, hc is not None and hc.protocol in HTTP_CHECKS | {"HTTPS", "MESOS_HTTPS"}


def _check(hc: HealthCheck | None, mode: str) -> Check | None:
    if hc is None or hc.protocol not in HTTP_CHECKS | TCP_CHECKS:
        return None
    fall = hc.max_consecutive_failures + 1
    if mode == "http" and hc.protocol in HTTP_CHECKS:
        if not CHECK_PATH_RE.fullmatch(hc.path or "/"):
            raise LabelError("bad_healthcheck_path", repr(hc.path))
        return Check("http", hc.path or "/", hc.interval_seconds, fall, hc.timeout_seconds)
    # tcp mode, or an HTTPS check (HAProxy would speak plain HTTP to it): connect only
    return Check("tcp", "", hc.interval_seconds, fall, hc.timeout_seconds)


def _task_served(app: App, task: Task) -> bool:
    if task.state not in SERVED_STATES or not task.host:
        return False
    if app.health_checks:
        return bool(task.health) and all(h.alive for h in task.health)
    return True


def _endpoint(app: App, task: Task, index: int) -> tuple[str, int] | None:
    """Where HAProxy reaches port `index` of a task (IP per task: task IP + container port)."""
    if app.ip_per_task:
        sp = app.ports[index] if index < len(app.ports) else None
        ips = sorted(task.ip_addresses, key=lambda ip: ":" in ip)  # IPv4 first
        if sp is None or not sp.container_port or not ips:
            return None
        return ips[0], sp.container_port
    if not task.host or index >= len(task.ports) or not task.ports[index]:
        return None
    return task.host, task.ports[index]


@functools.lru_cache(maxsize=65536)  # agents repeat across every task they run
def _valid_address(address: str) -> bool:
    """A hostname, IPv4 or IPv6 address: nothing that could inject a directive."""
    return bool(ADDRESS_RE.fullmatch(address))


def _servers(app: App, draining: frozenset[str], index: int, check_index: int | None,
             fixed_check_port: int | None, skipped: list[Skipped]) -> tuple[Server, ...]:
    """Served tasks as servers, sorted by name, with ids stable across reloads."""
    found: dict[str, tuple[str, int, int | None, bool]] = {}
    # _task_served and _endpoint inlined for the common host-networking case: this loop
    # runs once per task of every app, the hottest loop of a 5,000-app view.
    checked = bool(app.health_checks)
    host_net = not app.ip_per_task
    separate_check = check_index is not None and check_index != index
    for task in app.tasks:
        if task.state not in SERVED_STATES or not task.host:
            continue
        if checked and not (task.health and all(h.alive for h in task.health)):
            continue
        if host_net:
            ports = task.ports
            if index >= len(ports) or not ports[index]:
                continue
            address, port = task.host, ports[index]
        else:
            ep = _endpoint(app, task, index)
            if ep is None:
                continue
            address, port = ep
        if not _valid_address(address):
            skipped.append((app.app_id, index, "bad_task_address"))
            continue
        check_port = fixed_check_port
        if separate_check:
            cp = _endpoint(app, task, check_index)  # type: ignore[arg-type]
            check_port = cp[1] if cp else None
        name = f"{address}_{port}".translate(NAME_CHARS)
        disabled = task.task_id in draining
        if name not in found or found[name][3] > disabled:  # one server per endpoint
            found[name] = (address, port, check_port, disabled)
    used: set[int] = set()
    out = []
    for name in sorted(found):
        # The id comes from the name (not the position), so server-state survives reloads.
        sid = zlib.crc32(name.encode()) % 1_000_000 + 1
        while sid in used:
            sid += 1
        used.add(sid)
        out.append(Server(name, sid, *found[name]))
    return tuple(out)


def _drop_port_conflicts(backends: list[Backend], settings: HAProxySettings,
                         skipped: list[Skipped]) -> list[Backend]:
    taken = {settings.http_port, settings.appid_port, settings.stats_port}
    if settings.ssl_certs:
        taken.add(settings.https_port)
    out = []
    for b in sorted(backends, key=lambda b: (b.app_id, b.port_index)):
        if b.frontend_port in taken:
            skipped.append((b.app_id, b.port_index, "port_conflict"))
            continue
        taken.add(b.frontend_port)
        out.append(b)
    return out


def _host_rules(backends: list[Backend]) -> tuple[HostRule, ...]:
    rules = []
    # marathon-lb's order for equal weights: app id, then service (frontend) port
    for b in sorted(backends, key=lambda b: (b.app_id, b.frontend_port)):
        if b.mode != "http":
            continue
        for host in b.labels.vhosts:
            wildcard = host.startswith("*.")
            rules.append(HostRule(host[1:] if wildcard else host, wildcard, b.labels.path, b.name,
                                  b.labels.weight, b.labels.auth, b.userlist,
                                  b.labels.redirect_to_https))
    # Higher weight first (a path counts as weight 1, as in marathon-lb), then path rules
    # before catch-alls (a prefix must win over its host's catch-all), longest prefix first,
    # exact hosts before wildcards. Ties keep marathon-lb's order: app id, service port,
    # hosts in VHOST label order (the sort is stable).
    rules.sort(key=lambda r: (-r.weight, r.path is None, -_longest_prefix(r.path), r.wildcard))
    return tuple(rules)


def _longest_prefix(path: str | None) -> int:
    return max((len(p) for p in path.split()), default=0) if path else 0


def _appid_rules(backends: list[Backend]) -> tuple[AppIdRule, ...]:
    first: dict[str, Backend] = {}
    for b in sorted(backends, key=lambda b: (b.app_id, b.frontend_port)):
        if b.mode == "http":  # marathon-lb: the app's lowest HTTP service port
            first.setdefault(b.app_id, b)
    return tuple(AppIdRule(app_id, b.name) for app_id, b in sorted(first.items()))
