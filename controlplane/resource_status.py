"""Writes each custom resource's `Accepted` condition and `observedGeneration`.

After every build of the namespace's resources (`controlplane.source_kubernetes`) the
control plane reports whether its config was published. A resource's desired status:

- `Accepted=True`, reason `Accepted`: this generation of it is in the config Envoy and the
  ext_proc replicas are served.
- `Accepted=False`, reason `Invalid`: this generation has problems of its own; the message
  lists them (the last good config keeps serving).
- `Accepted=False`, reason `NotServed`: this generation is valid, but the config it belongs
  to was rejected because of other resources (named in the message), or could not be
  translated; the last good config keeps serving.

Only the leader writes (see `controlplane.leader`), and only what differs from the status
the watch shows, by a merge patch of the status subresource. Failed writes are retried
with backoff; a resource deleted meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from controlplane.kube_api import WEIR_COLLECTIONS, Collection, KubeApi, KubeApiError, now
from controlplane.source_kubernetes import Build, KubernetesSource, ResourceKey

log = logging.getLogger("weir.controlplane.status")

__all__ = ["Condition", "StatusWriter", "desired_condition"]

CONDITION: Final = "Accepted"
# metav1.Condition.message is at most 32768 characters.
MAX_MESSAGE: Final = 32_000


@dataclass(frozen=True)
class Condition:
    status: str  # "True" or "False"
    reason: str
    message: str
    observed_generation: int

    def as_status(self, previous: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
        """The status to write: our condition replaces the previous `Accepted` one (its
        lastTransitionTime kept while status stays the same); others are left as they are."""
        conditions = [
            c
            for c in (previous or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") != CONDITION
        ]
        old = _accepted(previous)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if old is not None and old.get("status") == self.status:
            stamp = old.get("lastTransitionTime", stamp)
        conditions.append(
            {
                "type": CONDITION,
                "status": self.status,
                "reason": self.reason,
                "message": self.message,
                "observedGeneration": self.observed_generation,
                "lastTransitionTime": stamp,
            }
        )
        return {"observedGeneration": self.observed_generation, "conditions": conditions}

    def shown_by(self, status: dict[str, Any] | None) -> bool:
        """Whether `status` already says this."""
        old = _accepted(status)
        return (
            old is not None
            and (status or {}).get("observedGeneration") == self.observed_generation
            and old.get("status") == self.status
            and old.get("reason") == self.reason
            and old.get("message") == self.message
            and old.get("observedGeneration") == self.observed_generation
        )


def _accepted(status: dict[str, Any] | None) -> dict[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == CONDITION:
            return condition
    return None


def _trim(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def desired_condition(
    key: ResourceKey,
    generation: int,
    build: Build,
    published: bool,
    failure: str | None,
    served: dict[ResourceKey, int],
) -> Condition | None:
    """What the `Accepted` condition of `key` at `generation` should say; None when no
    build has judged that generation yet."""
    if served.get(key) == generation:
        return Condition("True", "Accepted", "The resource is valid and served.", generation)
    if build.generations.get(key) != generation:
        return None
    problems = build.problems.get(key)
    if problems:
        text = "; ".join(problems)
        return Condition(
            "False",
            "Invalid",
            _trim(f"{text}. The last good config keeps serving."),
            generation,
        )
    if published:
        return None  # served and recorded: the first branch answers once `served` is updated
    if failure is not None:
        message = f"valid, but the config could not be served: {failure}"
    else:
        others = sorted(str(k) for k in build.problems if k != key)
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        named = ", ".join(others[:10]) + more
        message = (
            f"valid, but the config is rejected because of {named}"
            if others
            else "valid, but the config is rejected: " + "; ".join(build.general)
        )
    return Condition(
        "False", "NotServed", _trim(f"{message}. The last good config keeps serving."), generation
    )


@dataclass(frozen=True)
class Outcome:
    """A build, whether its config was published (and why not), and the generations the
    served config holds."""

    build: Build
    published: bool
    failure: str | None
    served: dict[ResourceKey, int]


class StatusWriter:
    """Keeps the resources' status in line with the last build; writes while leading."""

    def __init__(self, api: KubeApi, source: KubernetesSource) -> None:
        self.api = api
        self.source = source
        self.leading = False
        # How long this replica may still write: the leader elector's `lead_time_left`, or
        # no limit when leader election is off.
        self.lead_time_left: Callable[[], float] = lambda: math.inf
        # The last outcome, replaced whole (never changed in place): a pass of writes in a
        # worker thread reads it once and so never mixes two builds' outcomes.
        self.outcome: Outcome | None = None
        self._wake = asyncio.Event()
        # Resource -> the resourceVersion it had when we patched it: until the watch shows a
        # newer one, its status there is stale and must not be patched again.
        self._pending: dict[ResourceKey, str] = {}

    def record(self, build: Build, published: bool, failure: str | None = None) -> None:
        """The outcome of publishing `build`'s result."""
        before = self.outcome
        if published:
            served = dict(build.generations)
        else:
            served = before.served if before is not None else {}
        self.outcome = Outcome(build, published, failure, served)
        self._wake.set()

    def set_leading(self, leading: bool) -> None:
        self.leading = leading
        self._pending.clear()
        self._wake.set()

    async def run(self) -> None:
        delay = 0.5
        changed = self.source.changed
        while True:
            wake = asyncio.create_task(self._wake.wait())
            watched = asyncio.create_task(changed.wait())
            try:
                await asyncio.wait({wake, watched}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
                watched.cancel()
            self._wake.clear()
            changed.clear()
            if not self.leading or self.outcome is None:
                continue
            try:
                failed = await asyncio.to_thread(self._reconcile)
            except Exception:  # a bug must not end the status writes silently
                log.exception("writing the resources' status failed")
                failed = True
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self._wake.set()
            else:
                delay = 0.5

    def _reconcile(self) -> bool:
        """Patch every status that differs; True when a write failed (to retry)."""
        outcome = self.outcome
        assert outcome is not None
        failed = False
        for collection in WEIR_COLLECTIONS:
            for name, obj in self.source.objects(collection).items():
                if not self.leading:
                    return False
                failed |= not self._reconcile_one(collection, name, obj, outcome)
        return failed

    def _reconcile_one(
        self, collection: Collection, name: str, obj: dict[str, Any], outcome: Outcome
    ) -> bool:
        key = ResourceKey(collection.kind, name)
        metadata = obj.get("metadata") or {}
        generation = metadata.get("generation")
        version = str(metadata.get("resourceVersion", ""))
        if not isinstance(generation, int) or self._pending.get(key) == version:
            return True
        condition = desired_condition(
            key, generation, outcome.build, outcome.published, outcome.failure, outcome.served
        )
        status = obj.get("status") if isinstance(obj.get("status"), dict) else None
        if condition is None or condition.shown_by(status):
            return True
        time_left = self.lead_time_left()
        if time_left <= 0:
            return False  # leadership runs out: no write may land after another takes over
        try:
            self.api.patch_status(
                collection, name, condition.as_status(status, now()), min(30.0, time_left)
            )
        except KubeApiError as error:
            if error.status == 404:
                return True  # deleted meanwhile
            log.warning("%s", error)
            return False
        self._pending[key] = version
        log.info("%s: Accepted=%s (%s)", key, condition.status, condition.reason)
        return True
