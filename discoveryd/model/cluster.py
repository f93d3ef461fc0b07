"""The cluster model: one immutable value holding everything the sources learned.

DNS records and the HAProxy view are pure functions of a `ClusterState`; the store
replaces the whole value on every change, so readers never see a half-update.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from discoveryd.model.marathon import MarathonSnapshot
from discoveryd.model.mesos import join_host_port

if TYPE_CHECKING:
    from discoveryd.model.mesos import MesosState


@dataclass(frozen=True, slots=True)
class Leader:
    """The leading Mesos master we read state from."""

    host: str  # what we connect to: an IP or a hostname
    port: int
    source: str  # "zk" or "static"
    ip: str | None = None  # the master's IP when known (MasterInfo, or host if an IP)

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class ClusterState:
    version: int = 0
    mesos: MesosState | None = None
    # "ip:port" of every known master, leader first (ZooKeeper order or static list).
    masters: tuple[str, ...] = ()
    leader: Leader | None = None
    mesos_updated_at: float | None = None
    marathon: MarathonSnapshot | None = None
    marathon_updated_at: float | None = None


def with_mesos(
    state: ClusterState,
    mesos: MesosState,
    leader: Leader,
    masters: tuple[str, ...],
    now: float,
) -> ClusterState:
    return replace(state, mesos=mesos, leader=leader, masters=masters, mesos_updated_at=now)


def with_marathon(state: ClusterState, snapshot: MarathonSnapshot, now: float) -> ClusterState:
    return replace(state, marathon=snapshot, marathon_updated_at=now)
