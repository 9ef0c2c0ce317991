"""Leader election on a Lease, through the official client, against the REST protocol
(tests/kube_apiserver.py): one leader at a time, release on shutdown, take-over after
expiry, stepping down by the renew deadline when renewals fail or the API server stalls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from controlplane.kube_api import KubeApi, KubeApiError, Lease
from controlplane.leader import LeaderElector
from tests.kube_apiserver import KubeApiServer


def elector(kube_api: KubeApi, identity: str, log: list[tuple[str, bool]]) -> LeaderElector:
    return LeaderElector(
        kube_api,
        "weir-controlplane",
        identity,
        lambda leading: log.append((identity, leading)),
        lease_duration_s=2,
        renew_deadline_s=1.0,
        retry_period_s=0.1,
    )


LEASE_PATH = "/leases/weir-controlplane"


@contextlib.asynccontextmanager
async def running(*electors: LeaderElector) -> AsyncIterator[list[asyncio.Task[None]]]:
    """The electors' loops, cancelled (as at shutdown, without release) on leaving."""
    tasks = [asyncio.create_task(e.run()) for e in electors]
    try:
        yield tasks
    finally:
        await stop(*tasks)


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_one_leader_then_a_prompt_hand_over_on_release(
    kube_api: KubeApi, kube_server: KubeApiServer
) -> None:
    log: list[tuple[str, bool]] = []
    a, b = elector(kube_api, "a", log), elector(kube_api, "b", log)
    async with running(a) as (task_a,):
        await until(lambda: a.is_leader)
        async with running(b):
            await asyncio.sleep(0.8)  # b tries several times while a renews
            assert (a.is_leader, b.is_leader) == (True, False)
            lease = kube_server.get("Lease", "weir-controlplane")
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == "a"
            assert lease["spec"]["leaseDurationSeconds"] == 2

            await stop(task_a)
            await a.release()
            waited = await until(lambda: b.is_leader)
            assert waited < 1.0  # released: no need to wait for the 2 s lease to run out
    lease = kube_server.get("Lease", "weir-controlplane")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert log == [("a", True), ("a", False), ("b", True)]


async def test_a_silent_leader_is_taken_over_after_the_lease_duration(
    kube_api: KubeApi, kube_server: KubeApiServer
) -> None:
    log: list[tuple[str, bool]] = []
    a, b = elector(kube_api, "a", log), elector(kube_api, "b", log)
    async with running(a):
        await until(lambda: a.is_leader)
    # a died without releasing
    async with running(b):
        waited = await until(lambda: b.is_leader)
    assert 1.5 < waited < 4.0  # the 2 s lease, measured on b's own clock


@pytest.mark.parametrize("trouble", ["errors", "stalls"])
async def test_a_leader_that_cannot_renew_steps_down_by_its_deadline(
    kube_api: KubeApi, kube_server: KubeApiServer, trouble: str
) -> None:
    # By the renew deadline, before the lease could expire for the others: a silent API
    # server must not keep a renewal waiting past it, or two replicas would write status.
    log: list[tuple[str, bool]] = []
    a = elector(kube_api, "a", log)
    async with running(a):
        await until(lambda: a.is_leader)
        if trouble == "errors":
            kube_server.fail("GET", LEASE_PATH, 500, count=1000)
        else:
            kube_server.stall("GET", LEASE_PATH, 3.0, count=1000)  # longer than the lease
        waited = await until(lambda: not a.is_leader)
        assert 0.8 < waited < 1.5  # the 1 s renew deadline
        assert a.lead_time_left() == 0.0


async def test_racing_replicas_never_lead_together(kube_api: KubeApi) -> None:
    log: list[tuple[str, bool]] = []
    electors = [elector(kube_api, name, log) for name in "abcd"]
    seen_leaders = []
    async with running(*electors):
        for _ in range(40):
            leaders = [e.identity for e in electors if e.is_leader]
            assert len(leaders) <= 1, leaders
            seen_leaders.extend(leaders)
            await asyncio.sleep(0.02)
    assert len(set(seen_leaders)) == 1


def test_a_failed_call_is_not_retried_behind_the_callers_back(
    kube_api: KubeApi, kube_server: KubeApiServer
) -> None:
    kube_server.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "weir-controlplane"},
            "spec": {"holderIdentity": "a"},
        }
    )
    kube_server.drop("GET", LEASE_PATH)
    with pytest.raises(KubeApiError, match="unreachable"):
        kube_api.read_lease("weir-controlplane")
    assert kube_server.count("GET", LEASE_PATH) == 1
    lease = kube_api.read_lease("weir-controlplane")
    assert lease is not None and lease.holder == "a"


def test_lease_times_are_written_as_the_api_server_parses_them(kube_api: KubeApi) -> None:
    # A whole second has no fraction in isoformat(); MicroTime needs six digits.
    whole_second = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    kube_api.create_lease(Lease("weir-controlplane", "a", 15, whole_second, whole_second))
    lease = kube_api.read_lease("weir-controlplane")
    assert lease is not None
    assert (lease.holder, lease.acquired, lease.renewed) == ("a", whole_second, whole_second)


async def test_release_waits_for_a_renewal_in_flight(
    kube_api: KubeApi, kube_server: KubeApiServer
) -> None:
    log: list[tuple[str, bool]] = []
    a = elector(kube_api, "a", log)
    async with running(a):
        await until(lambda: a.is_leader)
        reads = kube_server.count("GET", LEASE_PATH)
        kube_server.stall("GET", LEASE_PATH, 0.6)
        await until(lambda: kube_server.count("GET", LEASE_PATH) > reads)
    # shut down while a renewal waits for its answer
    await a.release()
    await asyncio.sleep(0.8)  # the stalled renewal has ended by now either way
    lease = kube_server.get("Lease", "weir-controlplane")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == ""  # released, not renewed after the release
