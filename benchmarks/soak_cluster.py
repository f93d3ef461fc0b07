"""The soak's cluster: a pool of Marathon apps changed at random, and what DNS must answer.

Every change is one `SimCluster.sync()`, so one state version; for each version the
expected answer of every probed name is computed from the simulated Marathon directly
(not through discoveryd's record builder), following mesos-dns's naming: app `/g/web`
runs as Mesos task `web.g`, answers `web-g.marathon.mesos` (A: the tasks' agent IPs)
and `_web-g._tcp.marathon.mesos` (SRV: each task's port on its canonical name).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from discoveryd.dns.records import hash_string
from discoveryd.sim.cluster import SimCluster, mesos_task_name
from discoveryd.sim.marathon import app

Probe = tuple[str, str]  # (name, "A" | "SRV")
Answer = frozenset[Any] | str  # a set of addresses / (port, target) pairs, or "NXDOMAIN"
MAX_INSTANCES = 5  # keeps every answer well inside 512 bytes (no truncation)
LEADER: Probe = ("leader.mesos.", "A")


def app_ids(n: int) -> list[str]:
    """The pool: every fifth app sits in a group, as Marathon groups do."""
    return [f"/grp{i % 3}/app{i}" if i % 5 == 4 else f"/app{i}" for i in range(n)]


def dns_name(app_id: str) -> str:
    return mesos_task_name(app_id).replace(".", "-")


def probes_of(app_id: str) -> list[Probe]:
    name = dns_name(app_id)
    return [(f"{name}.marathon.mesos.", "A"), (f"_{name}._tcp.marathon.mesos.", "SRV")]


def app_definition(app_id: str, index: int, instances: int) -> dict[str, Any]:
    """Varied shapes: bridge networking, health checks (HAProxy only routes to healthy
    tasks), vhosts; all in HAProxy group `external`."""
    labels = {"HAPROXY_GROUP": "external"}
    if index % 2 == 0:
        labels["HAPROXY_0_VHOST"] = f"app{index}.soak.example"
    return app(app_id, instances=instances, service_ports=(11000 + index,), labels=labels,
               networking="bridge" if index % 4 == 1 else "host",
               health_path="/health" if index % 3 == 0 else None)


class SoakCluster:
    """Owns the mutations and the expected answers of every state version."""

    def __init__(self, cluster: SimCluster, apps: int, seed: int = 1) -> None:
        self.cluster = cluster
        self.pool = app_ids(apps)
        self.index = {a: i for i, a in enumerate(self.pool)}
        self.probes: list[Probe] = [LEADER] + [p for a in self.pool for p in probes_of(a)]
        self.rng = random.Random(seed)
        self.actions: Counter[str] = Counter()
        self.expected: dict[int, dict[Probe, Answer]] = {}
        self.changed_at: dict[int, float] = {}  # versions that changed a DNS answer
        self._targets: dict[str, str] = {}

    @property
    def marathon(self) -> Any:
        return self.cluster.marathon

    def populate(self) -> None:
        """Deploy about three quarters of the pool."""
        for app_id in self.pool:
            if self.rng.random() < 0.75:
                self._deploy(app_id)
        self.sync()

    def sync(self) -> None:
        self.cluster.sync()
        version = self.cluster.version
        self.expected[version] = self.expected_answers()
        if self.expected[version] != self.expected.get(version - 1):
            self.changed_at[version] = time.monotonic()

    def change(self) -> str:
        """One random change (one new state version); returns its kind."""
        present = [a for a in self.pool if a in self.marathon.apps]
        absent = [a for a in self.pool if a not in self.marathon.apps]
        running = [a for a in present if self.marathon.apps[a]["tasks"]]
        healthy = [a for a in running if self.marathon.apps[a]["healthChecks"]]
        choices: list[tuple[str, float, list[str], Callable[[str], None]]] = [
            ("scale", 30, present, self._scale), ("replace", 25, running, self._replace),
            ("health", 20, healthy, self._health), ("scale_to_zero", 5, running, self._zero),
            ("deploy", 10 if len(absent) > len(self.pool) // 8 else 2, absent, self._deploy),
            ("delete", 10 if len(present) > len(self.pool) // 2 else 2, present,
             self.marathon.remove_app),
        ]
        live = [c for c in choices if c[2]]
        kind, _, candidates, act = self.rng.choices(live, weights=[c[1] for c in live])[0]
        act(self.rng.choice(candidates))
        self.actions[kind] += 1
        self.sync()
        return kind

    # --- changes -------------------------------------------------------------------

    def _deploy(self, app_id: str) -> None:
        self.marathon.add_app(app_definition(app_id, self.index[app_id],
                                             self.rng.randint(1, 3)))

    def _scale(self, app_id: str) -> None:
        now = len(self.marathon.apps[app_id]["tasks"])
        self.marathon.scale(app_id, self.rng.choice(
            [n for n in range(1, MAX_INSTANCES + 1) if n != now]))

    def _zero(self, app_id: str) -> None:
        self.marathon.scale(app_id, 0)

    def _replace(self, app_id: str) -> None:
        """A task dies and Marathon starts its replacement (both in one version)."""
        old = self.rng.choice(self.marathon.apps[app_id]["tasks"])
        self.marathon.kill_task(app_id, old["id"], self.rng.choice(["TASK_KILLED",
                                                                    "TASK_FAILED"]))
        self.marathon.start_task(app_id)

    def _health(self, app_id: str) -> None:
        t = self.rng.choice(self.marathon.apps[app_id]["tasks"])
        alive = all(r["alive"] for r in t.get("healthCheckResults", []))
        self.marathon.set_health(app_id, t["id"], not alive)

    # --- expectations ------------------------------------------------------------------

    def expected_answers(self) -> dict[Probe, Answer]:
        out: dict[Probe, Answer] = {LEADER: frozenset({self.cluster.master.host})}
        for app_id in self.pool:
            tasks = self.marathon.apps.get(app_id, {}).get("tasks", [])
            a_probe, srv_probe = probes_of(app_id)
            ips = frozenset(t["ipAddresses"][0]["ipAddress"] for t in tasks)
            srvs = frozenset((p, self._target(app_id, t)) for t in tasks for p in t["ports"])
            out[a_probe] = ips or "NXDOMAIN"
            out[srv_probe] = srvs or "NXDOMAIN"
        return out

    def _target(self, app_id: str, t: dict[str, Any]) -> str:
        """The task's canonical agent name, `<name>-<hash of task id>-<agent id tail>`."""
        target = self._targets.get(t["id"])
        if target is None:
            agent = "s" + t["host"].rsplit(".", 1)[-1]  # SimCluster's agent ids: sim-agent-S<n>
            target = f"{dns_name(app_id)}-{hash_string(t['id'])}-{agent}.marathon.slave.mesos."
            self._targets[t["id"]] = target
        return target

    def expected_backends(self) -> dict[str, frozenset[str]]:
        """HAProxy backend -> its servers (`host:port`): running tasks, healthy ones only
        when the app has health checks; backends without servers are left out."""
        out = {}
        for app_id, raw in self.marathon.apps.items():
            servers = frozenset(
                f"{t['host']}:{t['ports'][0]}" for t in raw["tasks"]
                if t["ports"] and all(r["alive"] for r in t.get("healthCheckResults", [])))
            service_port = 11000 + self.index[app_id]
            if servers:
                out[f"{app_id.strip('/').replace('/', '_')}_{service_port}"] = servers
        return out
