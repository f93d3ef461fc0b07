"""Typed Mesos master state: only what DNS records need.

`sources.mesos_state.parse_master_state` builds these from `/master/state` JSON;
nothing downstream looks at the raw document. Every value is immutable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


def canonical_ip(value: object) -> str | None:
    """The canonical text of an IP literal (IPv4-mapped IPv6 becomes IPv4), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def join_host_port(host: str, port: int) -> str:
    """"host:port", with IPv6 literals in brackets ("[2001:db8::1]:5050")."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Pid:
    """A libprocess UPID, "id@host:port" ("id@[v6]:port" for IPv6)."""

    id: str
    host: str  # an IP literal or a hostname, without brackets
    port: int

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class DiscoveryPort:
    number: int
    protocol: str = ""  # as given ("tcp", "udp", ""); sanitised when records are built
    name: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # for autoip: network-scope, network-name


@dataclass(frozen=True, slots=True)
class DiscoveryInfo:
    name: str  # non-empty: a task without a DiscoveryInfo name has discovery=None
    ports: tuple[DiscoveryPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    name: str
    ips: tuple[str, ...]  # normalised IP literals, in document order


@dataclass(frozen=True, slots=True)
class MesosTask:
    id: str
    name: str
    framework_id: str
    slave_id: str
    state: str
    ports: tuple[int, ...] = ()  # expanded from the "ports" resource ranges
    # IPs of the latest TASK_RUNNING status, per source (see mesos-dns IPSources).
    network_infos: tuple[NetworkInfo, ...] = ()  # "netinfo"
    mesos_ips: tuple[str, ...] = ()  # "mesos": MesosContainerizer.NetworkSettings.IPAddress
    docker_ips: tuple[str, ...] = ()  # "docker": Docker.NetworkSettings.IPAddress
    discovery: DiscoveryInfo | None = None


@dataclass(frozen=True, slots=True)
class Framework:
    id: str
    name: str
    hostname: str = ""
    pid: Pid | None = None  # None when the framework registered no pid
    tasks: tuple[MesosTask, ...] = ()

    def host_port(self) -> tuple[str, int | None]:
        """Where the scheduler listens: the pid, else the hostname without a port."""
        if self.pid is not None:
            return self.pid.host, self.pid.port
        return self.hostname, None


@dataclass(frozen=True, slots=True)
class Slave:
    id: str
    hostname: str
    pid: Pid


@dataclass(frozen=True, slots=True)
class MesosState:
    leader: str  # the leading master's pid, e.g. "master@10.0.0.1:5050"
    leader_pid: Pid
    frameworks: tuple[Framework, ...] = ()
    slaves: tuple[Slave, ...] = ()
    # (what, reason) for every framework, agent, task or value left out while parsing.
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def task_count(self) -> int:
        return sum(len(f.tasks) for f in self.frameworks)

    def leader_host_port(self) -> tuple[str, int]:
        return self.leader_pid.host, self.leader_pid.port
