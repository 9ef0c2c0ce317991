"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it.

Every control plane replica serves xDS from the same watched resources; only the leader
writes the resources' status, so that two replicas never fight over it.

- A replica takes the Lease when nobody holds it, or when its holder has not renewed it
  for `lease_duration_s` as measured on this replica's own clock since it last saw the
  Lease change (so clocks need not agree across machines).
- The leader renews every `retry_period_s`. It leads until `renew_deadline_s` after the
  start of its last successful renewal (shorter than the lease duration, which the others
  count from when they saw that renewal: so it stops before another may take over). Each
  attempt is cut off at that deadline, however slow the API server is, and the status
  writer asks `lead_time_left()` before every write.
- Writes are guarded by the Lease's resourceVersion: of two replicas racing for it, one
  gets 409 Conflict and stays a follower.
- On shutdown the leader releases the Lease (empty holder), once any renewal still in
  flight has ended, so a follower takes over at its next try instead of waiting for the
  lease to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
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
        self._lead_until = 0.0  # monotonic time our leadership runs out unless renewed
        self._observed: tuple[str, str] | None = None  # (holder, resourceVersion) last seen
        self._observed_at = 0.0  # monotonic time it was first seen
        # Held by each attempt's thread: a release waits for the attempt in flight, which
        # could otherwise renew the Lease just after it was given up.
        self._attempt_lock = threading.Lock()
        self._wrote_lease = False  # whether this replica ever wrote itself in as holder

    def lead_time_left(self) -> float:
        """Seconds this replica may still act as leader (0 when it is not leading)."""
        if not self.is_leader:
            return 0.0
        return max(0.0, self._lead_until - time.monotonic())

    async def run(self) -> None:
        """Try to acquire or renew every retry period, until cancelled; then call
        `release()`."""
        while True:
            started = time.monotonic()
            # A leader's attempt must end by its deadline; a follower's within as long.
            deadline = self._lead_until if self.is_leader else started + self.renew_deadline_s
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that comes as the call ends, and then the loop would never stop.
                async with asyncio.timeout(max(0.0, deadline - started)):
                    held = await asyncio.to_thread(self._try_acquire_or_renew, deadline)
            except TimeoutError:
                log.warning(
                    "leader election: the API server did not answer in time about Lease %s",
                    self.lease_name,
                )
                held = False
            except KubeApiError as error:
                log.warning("leader election: %s", error)
                held = False
            except Exception:  # a bug must not end the election with a stale verdict
                log.exception("leader election failed unexpectedly")
                held = False
            if held:
                self._lead_until = started + self.renew_deadline_s
                self._set(True)
            elif self.is_leader and time.monotonic() >= self._lead_until:
                log.warning(
                    "leader election: could not renew Lease %s for %.0f s; stepping down",
                    self.lease_name,
                    self.renew_deadline_s,
                )
                self._set(False)
            await asyncio.sleep(self.retry_period_s)

    async def release(self) -> None:
        """Give the Lease up if we hold it (at shutdown, after `run()` was cancelled)."""
        self._set(False)
        if not self._wrote_lease:
            return
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

    def _try_acquire_or_renew(self, deadline: float) -> bool:
        with self._attempt_lock:
            if time.monotonic() >= deadline:
                return False  # the attempt before this one ran late; this one is too late
            return self._acquire_or_renew(deadline)

    def _acquire_or_renew(self, deadline: float) -> bool:
        def left() -> float:  # each call's timeout: whatever remains until the deadline
            return max(0.05, deadline - time.monotonic())

        lease = self.api.read_lease(self.lease_name, left())
        stamp = now()
        if lease is None:
            try:
                self.api.create_lease(
                    Lease(self.lease_name, self.identity, self.lease_duration_s, stamp, stamp),
                    left(),
                )
            except LeaseConflict:
                return False
            self._wrote_lease = True
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
            self.api.replace_lease(lease.held(self.identity, self.lease_duration_s, stamp), left())
        except LeaseConflict:
            return False
        self._wrote_lease = True
        return True

    def _release(self) -> None:
        # Wait for an attempt still in flight (its calls end by its deadline), then give up.
        if not self._attempt_lock.acquire(timeout=self.renew_deadline_s):
            raise KubeApiError("a renewal of the Lease is still in flight")
        try:
            timeout = max(1.0, self.retry_period_s)
            lease = self.api.read_lease(self.lease_name, timeout)
            if lease is None or lease.holder != self.identity:
                return
            with contextlib.suppress(LeaseConflict):  # it changed hands already
                released = replace(lease, holder="", duration_s=1, renewed=now())
                self.api.replace_lease(released, timeout)
        finally:
            self._attempt_lock.release()
