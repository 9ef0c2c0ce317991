"""The snapshot cache: the one narrow thing the ADS server reads.

It holds the current snapshot and lets streams wait for the next one. Every node gets
the same snapshot today (one gateway, one config); `node_group` is where a per-node
split would go.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from controlplane.snapshot import Snapshot


class ConfigCache(Protocol):
    """What the ADS server needs: the current snapshot and a way to wait for a newer one."""

    def current(self) -> tuple[int, Snapshot | None]: ...

    async def wait_newer(self, generation: int) -> None: ...


class SnapshotCache:
    def __init__(self) -> None:
        self._generation = 0
        self._snapshot: Snapshot | None = None
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def current(self) -> tuple[int, Snapshot | None]:
        return self._generation, self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Publish `snapshot` to every stream. Raises InconsistentSnapshot first if it is."""
        snapshot.check()
        self._snapshot = snapshot
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_newer(self, generation: int) -> None:
        while self._generation <= generation:
            await self._changed.wait()
