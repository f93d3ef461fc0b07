"""Distinguishable Mesos states for fault tests and the exact DNS answers each must give.

Generation `g` runs app `web` as three tasks on 10.<g>.0.1-3, port 31000+g: an answer from
another generation (or a mixture, or an empty one) is then visibly wrong.
"""

from __future__ import annotations

from typing import Any

from discoveryd.dns.records import hash_string, slave_id_tail
from discoveryd.sim.mesos_master import SIM_AGENT_ID, apps_state, running_task
from tests.dns_probe import Expected

WEB_A = ("web.marathon.mesos.", "A")
WEB_SRV = ("_web._tcp.marathon.mesos.", "SRV")
LEADER_SRV = ("_leader._tcp.mesos.", "SRV")


def web_tasks(generation: int) -> list[tuple[str, int]]:
    return [(f"10.{generation}.0.{i}", 31000 + generation) for i in (1, 2, 3)]


def generation_state(generation: int) -> dict[str, Any]:
    return apps_state({"web": web_tasks(generation)})


def expected(generation: int, leader_port: int) -> Expected:
    """The answers of `generation_state(generation)` served from the master on leader_port."""
    agent = slave_id_tail(SIM_AGENT_ID)
    targets = set()
    for ip, port in web_tasks(generation):
        task_id = running_task("web", ip, port)["id"]
        targets.add(f"web-{hash_string(task_id)}-{agent}.marathon.slave.mesos.:{port}")
    return {
        WEB_A: frozenset(ip for ip, _ in web_tasks(generation)),
        WEB_SRV: frozenset(targets),
        LEADER_SRV: frozenset({f"leader.mesos.:{leader_port}"}),
    }

