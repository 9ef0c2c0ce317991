"""Leader election on a Lease, through the official client, against the REST protocol
(tests/kube_apiserver.py): one leader at a time, release on shutdown, take-over after
expiry, stepping down when renewals fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controlplane.kube_api import KubeApi
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
    task_a = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.run())
    await asyncio.sleep(0.8)  # b tries several times while a renews
    assert (a.is_leader, b.is_leader) == (True, False)
    lease = kube_server.get("Lease", "weir-controlplane")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 2

    task_a.cancel()
    await asyncio.gather(task_a, return_exceptions=True)
    await a.release()
    waited = await until(lambda: b.is_leader)
    assert waited < 1.0  # released: no need to wait for the 2 s lease to run out
    lease = kube_server.get("Lease", "weir-controlplane")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert log == [("a", True), ("a", False), ("b", True)]
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)


async def test_a_silent_leader_is_taken_over_after_the_lease_duration(
    kube_api: KubeApi, kube_server: KubeApiServer
) -> None:
    log: list[tuple[str, bool]] = []
    a, b = elector(kube_api, "a", log), elector(kube_api, "b", log)
    task_a = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    task_a.cancel()  # a dies without releasing
    await asyncio.gather(task_a, return_exceptions=True)
    task_b = asyncio.create_task(b.run())
    waited = await until(lambda: b.is_leader)
    assert 1.5 < waited < 4.0  # the 2 s lease, measured on b's own clock
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)


async def test_a_leader_that_cannot_renew_steps_down(
    kube_api: KubeApi, kube_server: KubeApiServer
) -> None:
    log: list[tuple[str, bool]] = []
    a = elector(kube_api, "a", log)
    task_a = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    kube_server.fail("GET", "/leases/weir-controlplane", 500, count=1000)
    waited = await until(lambda: not a.is_leader)
    assert 0.9 < waited < 2.0  # the renew deadline, before the lease could expire
    task_a.cancel()
    await asyncio.gather(task_a, return_exceptions=True)


async def test_racing_replicas_never_lead_together(kube_api: KubeApi) -> None:
    log: list[tuple[str, bool]] = []
    electors = [elector(kube_api, name, log) for name in "abcd"]
    tasks = [asyncio.create_task(e.run()) for e in electors]
    seen_leaders = []
    for _ in range(40):
        leaders = [e.identity for e in electors if e.is_leader]
        assert len(leaders) <= 1, leaders
        seen_leaders.extend(leaders)
        await asyncio.sleep(0.02)
    assert len(set(seen_leaders)) == 1
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
