"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it.

Every control plane replica serves xDS from the same watched resources; only the leader
writes the resources' status, so that two replicas never fight over it.

- A replica takes the Lease when nobody holds it, or when its holder has not renewed it
  for `lease_duration_s` as measured on this replica's own clock since it last saw the
  Lease change (so clocks need not agree across machines).
- The leader renews every `retry_period_s`. It steps down when it could not renew for
  `renew_deadline_s` (shorter than the lease duration, so it stops before another may
  take over).
- Writes are guarded by the Lease's resourceVersion: of two replicas racing for it, one
  gets 409 Conflict and stays a follower.
- On shutdown the leader releases the Lease (empty holder), so a follower takes over at
  its next try instead of waiting for the lease to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from controlplane.kube_api import KubeApi, KubeApiError, Lease, LeaseConflict, now

log = logging.getLogger("weir.controlplane.leader")

__all__ = ["LeaderElector"]


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        lease_name: str,
        identity: str,
        on_change: Callable[[bool], None],
        *,
        lease_duration_s: int = 15,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
    ) -> None:
        if not renew_deadline_s < lease_duration_s:
            raise ValueError("the renew deadline must be shorter than the lease duration")
        self.api = api
        self.lease_name = lease_name
        self.identity = identity
        self.on_change = on_change
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.is_leader = False
        self._renewed_at = 0.0  # monotonic time of our last successful write
        self._observed: tuple[str, str] | None = None  # (holder, resourceVersion) last seen
        self._observed_at = 0.0  # monotonic time it was first seen

    async def run(self) -> None:
        """Try to acquire or renew every retry period, until cancelled; then call
        `release()`."""
        while True:
            try:
                held = await asyncio.to_thread(self._try_acquire_or_renew)
            except KubeApiError as error:
                log.warning("leader election: %s", error)
                held = False
            except Exception:  # a bug must not end the election with a stale verdict
                log.exception("leader election failed unexpectedly")
                held = False
            if held:
                self._renewed_at = time.monotonic()
                self._set(True)
            elif self.is_leader and time.monotonic() - self._renewed_at > self.renew_deadline_s:
                log.warning(
                    "leader election: could not renew Lease %s for %.0f s; stepping down",
                    self.lease_name,
                    self.renew_deadline_s,
                )
                self._set(False)
            await asyncio.sleep(self.retry_period_s)

    async def release(self) -> None:
        """Give the Lease up if we hold it (at shutdown, after `run()` was cancelled)."""
        if not self.is_leader:
            return
        self._set(False)
        try:
            await asyncio.to_thread(self._release)
        except KubeApiError as error:
            log.warning("leader election: could not release Lease %s: %s", self.lease_name, error)

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        if leader:
            log.info("leader election: %s now leads (Lease %s)", self.identity, self.lease_name)
        else:
            log.info("leader election: %s no longer leads", self.identity)
        self.on_change(leader)

    def _try_acquire_or_renew(self) -> bool:
        lease = self.api.read_lease(self.lease_name)
        stamp = now()
        if lease is None:
            try:
                self.api.create_lease(
                    Lease(self.lease_name, self.identity, self.lease_duration_s, stamp, stamp)
                )
            except LeaseConflict:
                return False
            return True
        seen = (lease.holder, lease.resource_version)
        if seen != self._observed:
            self._observed = seen
            self._observed_at = time.monotonic()
        if lease.holder and lease.holder != self.identity:
            expires = self._observed_at + max(lease.duration_s, 1)
            if time.monotonic() < expires:
                return False
            log.info(
                "leader election: Lease %s of %s has expired; taking it over",
                self.lease_name,
                lease.holder,
            )
        try:
            self.api.replace_lease(lease.held(self.identity, self.lease_duration_s, stamp))
        except LeaseConflict:
            return False
        return True

    def _release(self) -> None:
        lease = self.api.read_lease(self.lease_name)
        if lease is None or lease.holder != self.identity:
            return
        with contextlib.suppress(LeaseConflict):  # it changed hands already
            self.api.replace_lease(replace(lease, holder="", duration_s=1, renewed=now()))
