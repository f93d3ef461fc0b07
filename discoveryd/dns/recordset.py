"""The record set: what `records.build_records` produces and the resolver serves.

Names are lowercase, fully qualified, with the trailing dot ("web.marathon.mesos.").
SOA and NS for the domain are not stored here: the resolver derives them from the
DNS settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class Srv(NamedTuple):
    """A NamedTuple, not a dataclass: comparing two 100k-record sets (to skip or limit a
    rebuild) then runs at C speed."""

    target: str  # fully qualified, trailing dot
    port: int
    priority: int = 0
    weight: int = 1


@dataclass(frozen=True, slots=True)
class RecordSet:
    a: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    aaaa: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    srv: Mapping[str, tuple[Srv, ...]] = field(default_factory=dict)
    # (what, reason) for each framework/agent/task left out, for the caller to log and count.
    skipped: tuple[tuple[str, str], ...] = ()

    def counts(self) -> dict[str, int]:
        return {
            "A": sum(map(len, self.a.values())),
            "AAAA": sum(map(len, self.aaaa.values())),
            "SRV": sum(map(len, self.srv.values())),
        }

    def names(self) -> set[str]:
        return set(self.a) | set(self.aaaa) | set(self.srv)
