"""The single writer of the cluster model.

Sources hand pure update functions to `Store.apply` on the event loop thread;
consumers `watch()` and always get the newest version, skipping intermediate ones
(latest wins, so a burst of 200 events costs one rebuild per consumer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from discoveryd.model.cluster import ClusterState


class Store:
    def __init__(self, initial: ClusterState | None = None) -> None:
        self._state = initial or ClusterState()
        self._changed = asyncio.Condition()
        self._waiters = 0

    @property
    def current(self) -> ClusterState:
        return self._state

    def apply(self, update: Callable[[ClusterState], ClusterState]) -> ClusterState:
        """Replace the state with update(state); must run on the loop thread."""
        new = update(self._state)
        if new is self._state:
            return new
        self._state = replace(new, version=self._state.version + 1)
        asyncio.get_running_loop().create_task(self._notify())
        return self._state

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_newer(self, version: int) -> ClusterState:
        """Return the current state once its version is greater than `version`."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._state.version > version)
            return self._state

    async def watch(self, since: int = 0) -> AsyncIterator[ClusterState]:
        """Yield the newest state each time it changes (intermediate versions are skipped)."""
        version = since
        while True:
            state = await self.wait_newer(version)
            version = state.version
            yield state
