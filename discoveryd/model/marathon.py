"""Typed Marathon values. Raw JSON is converted into these in `sources/`; nothing
downstream (HAProxy view, DNS, API) ever looks at Marathon JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of an app, by index, in Marathon 1.4 and 1.5+ alike."""

    service_port: int  # 0 when Marathon assigned none
    container_port: int | None = None  # set for bridge / container networking
    host_port: int | None = None
    protocol: str = "tcp"
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    protocol: str  # HTTP, HTTPS, TCP, MESOS_HTTP, MESOS_TCP, COMMAND ...
    path: str = "/"
    port_index: int | None = 0
    port: int | None = None
    interval_seconds: int = 60
    timeout_seconds: int = 20
    grace_period_seconds: int = 300
    max_consecutive_failures: int = 3


@dataclass(frozen=True, slots=True)
class HealthResult:
    alive: bool
    first_success: str | None = None
    last_failure: str | None = None


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    app_id: str
    host: str = ""
    ip_addresses: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    state: str | None = None  # TASK_RUNNING, ...; None when Marathon did not say
    health: tuple[HealthResult, ...] = ()
    started_at: str | None = None
    staged_at: str | None = None
    slave_id: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class App:
    app_id: str  # "/shop/web"
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    networking: str = "host"  # "host" | "bridge" | "container" (IP per task)
    ports: tuple[ServicePort, ...] = ()
    health_checks: tuple[HealthCheck, ...] = ()
    tasks: tuple[Task, ...] = ()
    instances: int = 0
    version: str = ""
    has_deployments: bool = False

    @property
    def ip_per_task(self) -> bool:
        return self.networking == "container"

    def with_tasks(self, tasks: tuple[Task, ...]) -> App:
        return replace(self, tasks=tasks)


@dataclass(frozen=True, slots=True)
class MarathonSnapshot:
    """Every app Marathon knows, keyed by app id (sorted iteration via `ordered`)."""

    apps: Mapping[str, App] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()  # (app id or "?", reason) of apps left out

    @property
    def ordered(self) -> tuple[App, ...]:
        return tuple(self.apps[k] for k in sorted(self.apps))

    @property
    def task_count(self) -> int:
        return sum(len(a.tasks) for a in self.apps.values())
