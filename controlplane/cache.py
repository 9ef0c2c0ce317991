"""The snapshot cache: the one narrow thing the ADS server reads.

It holds the current snapshot and lets streams wait for the next one. Every node gets
the same snapshot today (one gateway, one config); `node_group` is where a per-node
split would go. Types that change on their own schedule (the API keys) are set apart
with `set_independent` and carried into every snapshot, so a config publish never
rolls them back and a key change never waits for a config publish.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from controlplane.snapshot import Snapshot, TypedResources


class ConfigCache(Protocol):
    """What the ADS server needs: the current snapshot and a way to wait for a newer one."""

    def current(self) -> tuple[int, Snapshot | None]: ...

    async def wait_newer(self, generation: int) -> None: ...


class SnapshotCache:
    def __init__(self) -> None:
        self._generation = 0
        self._snapshot: Snapshot | None = None
        self._independent: dict[str, TypedResources] = {}
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def current(self) -> tuple[int, Snapshot | None]:
        return self._generation, self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Publish `snapshot` to every stream. Raises InconsistentSnapshot first if it is."""
        snapshot.check()
        for type_url, resources in self._independent.items():
            snapshot = snapshot.with_type(type_url, resources)
        self._snapshot = snapshot
        self._bump()

    def set_independent(self, type_url: str, resources: TypedResources) -> None:
        """Set one type's resources, now and in every later snapshot."""
        self._independent[type_url] = resources
        if self._snapshot is not None:
            self._snapshot = self._snapshot.with_type(type_url, resources)
            self._bump()

    def independent(self, type_url: str) -> TypedResources | None:
        return self._independent.get(type_url)

    def _bump(self) -> None:
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_newer(self, generation: int) -> None:
        while self._generation <= generation:
            await self._changed.wait()
