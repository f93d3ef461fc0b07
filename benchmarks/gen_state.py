"""Generate a synthetic Mesos `/master/state` document of any size (for benchmarks).

Deterministic: the same `n_tasks` always gives the same document. Tasks are spread
over Marathon apps (10 instances each), 3 frameworks and n_tasks/20 agents; every
fifth task has DiscoveryInfo with named ports, every third a container IP.
"""

from __future__ import annotations

from typing import Any


def _slave_id(i: int) -> str:
    return f"20160101-000000-16777343-5050-1000-S{i}"


def generate_state(n_tasks: int, *, leader: str = "master@10.0.0.1:5050") -> dict[str, Any]:
    n_slaves = max(1, n_tasks // 20)
    slaves = [
        {
            "id": _slave_id(i),
            "hostname": f"agent-{i}.example.internal",
            "pid": f"slave(1)@10.1.{i // 250}.{i % 250 + 1}:5051",
        }
        for i in range(n_slaves)
    ]
    frameworks = [
        {"id": f"fw-{k}", "name": name, "pid": f"scheduler-{k}@10.0.0.{k + 2}:{25500 + k}",
         "hostname": f"sched-{k}", "tasks": []}
        for k, name in enumerate(["marathon", "chronos", "Metronome Jobs"])
    ]
    for i in range(n_tasks):
        fw = frameworks[0] if i % 10 < 8 else frameworks[1 + i % 2]
        app = f"app-{i // 10}"
        task_id = f"{app}.{i:08x}-0000-11e6-0000-000000000000"
        port = 31000 + i % 1000
        status: dict[str, Any] = {"state": "TASK_RUNNING", "timestamp": 1500000000.0 + i}
        if i % 3 == 0:
            status["container_status"] = {"network_infos": [{
                "name": "overlay",
                "ip_addresses": [{"ip_address": f"9.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}],
            }]}
        task: dict[str, Any] = {
            "id": task_id,
            "name": app,
            "framework_id": fw["id"],
            "slave_id": _slave_id(i % n_slaves),
            "state": "TASK_RUNNING" if i % 50 else "TASK_STAGING",
            "resources": {"cpus": 0.1, "mem": 64, "ports": f"[{port}-{port + 1}]"},
            "statuses": [status],
        }
        if i % 5 == 0:
            task["discovery"] = {"name": app, "visibility": "FRAMEWORK", "ports": {"ports": [
                {"number": port, "protocol": "tcp", "name": "http"},
                {"number": port + 1, "protocol": "udp", "name": "metrics"},
            ]}}
        fw["tasks"].append(task)
    return {"leader": leader, "pid": leader, "frameworks": frameworks, "slaves": slaves}
