"""A consistent simulated cluster: the Mesos master's state follows the simulated Marathon.

Marathon's tasks appear in `/master/state` under the `marathon` framework, named the
way Marathon names Mesos tasks (app id path reversed: `/shop/api` -> `api.shop`), so
`api-shop.marathon.mesos` (mesos-dns turns the dot into a dash) answers with the same tasks HAProxy routes to.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aiohttp import web

from discoveryd.sim.marathon import SimMarathon
from discoveryd.sim.mesos_master import SimMesosMaster, sample_state

MARATHON_FRAMEWORK_ID = "sim-0000-0000-0000-marathon"


def mesos_task_name(app_id: str) -> str:
    return ".".join(reversed([p for p in app_id.split("/") if p]))


def _ports_resource(ports: list[int]) -> str:
    return "[" + ", ".join(f"{p}-{p}" for p in ports) + "]"


def mesos_state_from_marathon(sim: SimMarathon, base: dict[str, Any] | None = None,
                              ) -> dict[str, Any]:
    """`base` (default: the bundled sample state) plus Marathon's running tasks."""
    state = copy.deepcopy(base if base is not None else sample_state())
    state["frameworks"] = [f for f in state.get("frameworks", []) if f.get("name") != "marathon"]
    agents = {a: f"sim-agent-S{a.rsplit('.', 1)[-1]}" for a in sim.agents}
    state["slaves"] = list(state.get("slaves", [])) + [
        {"id": sid, "hostname": ip, "pid": f"slave(1)@{ip}:5051", "active": True}
        for ip, sid in agents.items()
    ]
    tasks = []
    for app_id in sorted(sim.apps):
        for t in sim.apps[app_id]["tasks"]:
            ip = (t.get("ipAddresses") or [{}])[0].get("ipAddress", t["host"])
            tasks.append({
                "id": t["id"], "name": mesos_task_name(app_id),
                "framework_id": MARATHON_FRAMEWORK_ID, "executor_id": "",
                "slave_id": agents.get(t["host"], t["slaveId"]), "state": t["state"],
                "resources": {"cpus": 0.1, "mem": 32, "disk": 0,
                              **({"ports": _ports_resource(t["ports"])} if t["ports"] else {})},
                "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0, "container_status": {
                    "network_infos": [{"ip_addresses": [{"ip_address": ip}]}]}}],
            })
    state["frameworks"].append({
        "id": MARATHON_FRAMEWORK_ID, "name": "marathon", "active": True,
        "hostname": "127.0.0.1", "pid": "scheduler-sim@127.0.0.1:8080", "tasks": tasks,
    })
    return state


class _ClusterMaster(SimMesosMaster):
    """The cluster's master: reports the version of every state it serves, so a checker
    knows which state the daemon can have seen at any moment."""

    def __init__(self, cluster: SimCluster) -> None:
        super().__init__(state={})
        self._cluster = cluster

    async def _handle_state(self, request: web.Request) -> web.StreamResponse:
        version = self._cluster.version  # the state that answer carries, unless it fails
        resp = await super()._handle_state(request)
        # Only a whole document counts: failure modes may answer 200 with a broken body.
        if self.mode == "ok" and resp.status == 200 and self._cluster.on_served is not None:
            self._cluster.on_served(version)
        return resp


class SimCluster:
    """A simulated Marathon and a Mesos master kept in step with it.

    `version` counts `sync()` calls; `on_served(version)`, when set, is called each time
    the master answers a state request with 200 (on the loop, before the body is sent).
    """

    def __init__(self, *, agents: tuple[str, ...] = ("127.0.1.11", "127.0.1.12", "127.0.1.13"),
                 ) -> None:
        self.marathon = SimMarathon(agents=agents, keepalive_seconds=2.0)
        self.master: SimMesosMaster = _ClusterMaster(self)
        self.version = 0
        self.on_served: Callable[[int], None] | None = None
        self._base = sample_state()

    def sync(self) -> None:
        """Copy Marathon's tasks into the master's state (call after every change)."""
        self.master.state = mesos_state_from_marathon(self.marathon, self._base)
        self.version += 1

    async def start(self) -> None:
        await self.marathon.start()
        await self.master.start()
        self.sync()

    async def stop(self) -> None:
        await self.marathon.stop()
        await self.master.stop()
