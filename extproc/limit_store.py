"""Where rate-limit counters live: one narrow interface, and the in-process store.

Every limit is a counter with a ceiling. `take` is the one operation that admits: it
checks that each counter is still below its ceiling and, only if all are, adds to each,
as one atomic step, so that concurrent requests can never all pass the same check.
`add` adjusts counters unconditionally (settling tokens, releasing a concurrency slot).
A shared store (extproc.redis_store) implements the same two operations as server-side
scripts, and raises StoreUnavailable when it cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Counter:
    key: str
    limit: int  # admit while the counter is below this
    amount: int  # what an admitted request adds
    expires_at: float | None  # the end of its window (epoch seconds); None: never
    # A concurrency slot names the request that holds it, so that a shared store can
    # release exactly that slot, and drop it after `lease_s` if its holder died.
    holder: str = ""
    lease_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Taken:
    admitted: bool
    values: tuple[int, ...]  # each counter after the step (unchanged when refused)
    refused: int = -1  # the index of the first counter at its limit


class StoreUnavailable(Exception):
    """The store could not be reached (or did not answer in time); nothing was taken."""


class LimitStore(Protocol):
    where: str  # for logs: where the counters live (never a password)

    async def take(self, counters: Sequence[Counter]) -> Taken: ...

    async def add(self, counters: Sequence[Counter]) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """The embedded default: counters in this process (exact for one ext_proc replica).
    Expired windows are dropped as they are met and in a sweep every minute."""

    where = "this process"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._values: dict[str, tuple[int, float | None]] = {}
        self._next_sweep = clock() + 60

    def _current(self, key: str, now: float) -> int:
        found = self._values.get(key)
        if found is None:
            return 0
        value, expires_at = found
        if expires_at is not None and expires_at <= now:
            del self._values[key]
            return 0
        return value

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60
        for key, (_, expires_at) in list(self._values.items()):
            if expires_at is not None and expires_at <= now:
                del self._values[key]

    async def take(self, counters: Sequence[Counter]) -> Taken:
        now = self._clock()
        self._sweep(now)
        current = tuple(self._current(c.key, now) for c in counters)
        for index, (counter, value) in enumerate(zip(counters, current, strict=True)):
            if value >= counter.limit:
                return Taken(False, current, index)
        values = []
        for counter, value in zip(counters, current, strict=True):
            self._values[counter.key] = (value + counter.amount, counter.expires_at)
            values.append(value + counter.amount)
        return Taken(True, tuple(values))

    async def add(self, counters: Sequence[Counter]) -> None:
        now = self._clock()
        for counter in counters:
            value = self._current(counter.key, now) + counter.amount
            if counter.expires_at is not None and counter.expires_at <= now:
                continue  # the window is over: nothing left to adjust
            if value <= 0 and counter.expires_at is None:
                self._values.pop(counter.key, None)
            else:
                self._values[counter.key] = (value, counter.expires_at)

    async def close(self) -> None:
        self._values.clear()
