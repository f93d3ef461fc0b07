"""Mesos master `/master/state` JSON -> `MesosState`.

The edge where raw JSON becomes typed values. A framework, agent or task with bad
data is left out with a reason in `MesosState.skipped`; only a document that is
unusable as a whole (not an object, no parsable leader) raises `StateError`.
"""

from __future__ import annotations

from typing import Any

from discoveryd.model.mesos import (
    DiscoveryInfo,
    DiscoveryPort,
    Framework,
    MesosState,
    MesosTask,
    NetworkInfo,
    Pid,
    Slave,
    canonical_ip,
)

DOCKER_IP_LABEL = "Docker.NetworkSettings.IPAddress"
MESOS_IP_LABEL = "MesosContainerizer.NetworkSettings.IPAddress"


class StateError(Exception):
    """The state document as a whole cannot be used."""


class _Bad(ValueError):
    """One item of the document is malformed; the item is skipped."""


def parse_pid(value: Any) -> Pid:
    """Parse "id@host:port" / "id@[v6]:port"; raise ValueError when malformed."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise _Bad(f"bad pid {value!r}: expected id@host:port")
    pid_id, addr = value.split("@")
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        port_s = rest[1:] if sep and rest.startswith(":") else ""
        if not sep or ":" not in host:
            raise _Bad(f"bad pid {value!r}: bad bracketed address")
    else:
        host, _, port_s = addr.rpartition(":")
        if ":" in host:
            raise _Bad(f"bad pid {value!r}: IPv6 address without brackets")
    if not host or not port_s.isdigit() or int(port_s) > 65535:
        raise _Bad(f"bad pid {value!r}: expected id@host:port")
    return Pid(pid_id, _normalise_host(host), int(port_s))


def _normalise_host(host: str) -> str:
    ip = normalise_ip(host)
    return ip if ip is not None else host.lower()


normalise_ip = canonical_ip


def parse_port_ranges(value: Any) -> tuple[tuple[int, ...], list[str]]:
    """Expand "[31000-31002, 31010-31010]"; returns (ports, problems with bad ranges)."""
    if value in (None, "", "[]"):
        return (), []
    if not isinstance(value, str):
        return (), [f"ports resource {value!r} is not a string"]
    body = value.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return (), [f"ports resource {value!r} is not a [lo-hi, ...] list"]
    ports: list[int] = []
    problems: list[str] = []
    for part in body[1:-1].split(","):
        lo_s, sep, hi_s = part.strip().partition("-")
        lo_s, hi_s = lo_s.strip(), hi_s.strip()
        if not (sep and lo_s.isdigit() and hi_s.isdigit()):
            problems.append(f"bad port range {part.strip()!r} ignored")
            continue
        lo, hi = int(lo_s), int(hi_s)
        if not 0 < lo <= hi <= 65535:
            problems.append(f"bad port range {part.strip()!r} ignored")
            continue
        ports.extend(range(lo, hi + 1))
    return tuple(ports), problems


def _latest_running(statuses: Any) -> dict[str, Any] | None:
    # Mesos does not order statuses; mesos-dns takes the newest TASK_RUNNING one.
    best, best_ts = None, -1.0
    for st in statuses if isinstance(statuses, list) else ():
        if not isinstance(st, dict) or st.get("state") != "TASK_RUNNING":
            continue
        ts = st.get("timestamp")
        ts = float(ts) if isinstance(ts, int | float) else 0.0
        if ts > best_ts:
            best, best_ts = st, ts
    return best


def _ips(values: Any) -> tuple[str, ...]:
    return tuple(ip for ip in map(normalise_ip, values) if ip is not None)


def _network_infos(status: dict[str, Any]) -> tuple[NetworkInfo, ...]:
    cs = status.get("container_status")
    infos = cs.get("network_infos") if isinstance(cs, dict) else None
    out = []
    for ni in infos if isinstance(infos, list) else ():
        if not isinstance(ni, dict):
            continue
        addrs = ni.get("ip_addresses")
        if isinstance(addrs, list) and addrs:
            raw = [a.get("ip_address") for a in addrs if isinstance(a, dict)]
        else:  # Mesos 0.25 had a single ip_address
            raw = [ni.get("ip_address")]
        out.append(NetworkInfo(str(ni.get("name") or ""), _ips(raw)))
    return tuple(out)


def _label_values(status: dict[str, Any], key: str) -> tuple[str, ...]:
    labels = status.get("labels")
    if not isinstance(labels, list):
        return ()
    return _ips(lb.get("value") for lb in labels if isinstance(lb, dict) and lb.get("key") == key)


def _labels(obj: Any) -> tuple[tuple[str, str], ...]:
    labels = obj.get("labels") if isinstance(obj, dict) else None
    if not isinstance(labels, list):
        return ()
    return tuple(
        (str(lb.get("key", "")), str(lb.get("value", ""))) for lb in labels if isinstance(lb, dict)
    )


def _discovery(raw: Any, problems: list[str]) -> DiscoveryInfo | None:
    """The DiscoveryInfo; a port that is not one is left out (noted in `problems`), the
    task kept. Port 0 is a port: mesos-dns publishes its SRV records (port 0) too."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        return None  # mesos-dns: no DiscoveryInfo name means no DiscoveryInfo
    ports_obj = raw.get("ports")
    raw_ports = ports_obj.get("ports") if isinstance(ports_obj, dict) else None
    ports = []
    for p in raw_ports if isinstance(raw_ports, list) else ():
        if not isinstance(p, dict):
            problems.append("discovery port is not an object: ignored")
            continue
        number = p.get("number")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 65535:
            problems.append(f"bad discovery port number {number!r} ignored")
            continue
        ports.append(
            DiscoveryPort(
                number=number,
                protocol=str(p.get("protocol") or ""),
                name=str(p.get("name") or ""),
                labels=_labels(p.get("labels")),
            )
        )
    return DiscoveryInfo(raw["name"], tuple(ports))


def _str_field(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise _Bad(f"missing or empty {key!r}")
    return value


def _task(raw: Any, framework_id: str, skipped: list[tuple[str, str]]) -> MesosTask:
    if not isinstance(raw, dict):
        raise _Bad("task is not an object")
    task_id = _str_field(raw, "id")
    resources = raw.get("resources")
    ports, problems = parse_port_ranges(
        resources.get("ports") if isinstance(resources, dict) else None
    )
    discovery = _discovery(raw.get("discovery"), problems)
    skipped.extend((f"task {task_id}", p) for p in problems)
    status = _latest_running(raw.get("statuses")) or {}
    name = raw.get("name")
    return MesosTask(
        id=task_id,
        name=name if isinstance(name, str) else "",
        framework_id=str(raw.get("framework_id") or framework_id),
        slave_id=_str_field(raw, "slave_id"),
        state=_str_field(raw, "state"),
        ports=ports,
        network_infos=_network_infos(status) if status else (),
        mesos_ips=_label_values(status, MESOS_IP_LABEL) if status else (),
        docker_ips=_label_values(status, DOCKER_IP_LABEL) if status else (),
        discovery=discovery,
    )


def _framework(raw: Any, skipped: list[tuple[str, str]]) -> Framework:
    if not isinstance(raw, dict):
        raise _Bad("framework is not an object")
    fw_id = _str_field(raw, "id")
    name = raw.get("name")
    if not isinstance(name, str):
        raise _Bad("missing 'name'")
    pid = parse_pid(raw["pid"]) if raw.get("pid") else None
    tasks = []
    raw_tasks = raw.get("tasks")
    for i, t in enumerate(raw_tasks if isinstance(raw_tasks, list) else ()):
        try:
            tasks.append(_task(t, fw_id, skipped))
        except _Bad as e:
            tid = t.get("id") if isinstance(t, dict) else None
            skipped.append((f"task {tid or f'#{i}'} of framework {fw_id}", str(e)))
    hostname = raw.get("hostname")
    return Framework(fw_id, name, hostname if isinstance(hostname, str) else "", pid, tuple(tasks))


def _slave(raw: Any) -> Slave:
    if not isinstance(raw, dict):
        raise _Bad("agent is not an object")
    hostname = raw.get("hostname")
    return Slave(
        _str_field(raw, "id"),
        hostname if isinstance(hostname, str) else "",
        parse_pid(raw.get("pid")),
    )


def parse_master_state(raw: Any) -> MesosState:
    """Convert a decoded `/master/state` document; raise StateError if unusable."""
    if not isinstance(raw, dict):
        raise StateError(f"state is a {type(raw).__name__}, not an object")
    leader = raw.get("leader")
    if not leader:
        raise StateError("state names no leader (not the leading master?)")
    try:
        leader_pid = parse_pid(leader)
    except _Bad as e:
        raise StateError(f"leader: {e}") from None
    skipped: list[tuple[str, str]] = []
    frameworks = []
    for i, f in enumerate(_list(raw, "frameworks")):
        try:
            frameworks.append(_framework(f, skipped))
        except _Bad as e:
            fid = f.get("id") if isinstance(f, dict) else None
            skipped.append((f"framework {fid or f'#{i}'}", str(e)))
    slaves = []
    for i, s in enumerate(_list(raw, "slaves")):
        try:
            slaves.append(_slave(s))
        except _Bad as e:
            sid = s.get("id") if isinstance(s, dict) else None
            skipped.append((f"agent {sid or f'#{i}'}", str(e)))
    return MesosState(leader, leader_pid, tuple(frameworks), tuple(slaves), tuple(skipped))


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise StateError(f"{key!r} is not a list")
    return value
