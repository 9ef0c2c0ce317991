"""The `Accepted` condition: what it says for each outcome, and how the writer keeps it
(only while leading, only what differs, lastTransitionTime kept)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.errors import ConfigInvalid
from controlplane.kube_api import KubeApi
from controlplane.model import ConfigSet
from controlplane.resource_status import Condition, StatusWriter, desired_condition
from controlplane.source_kubernetes import Build, KubernetesSource, ResourceKey
from tests.kube_apiserver import KubeApiServer
from tests.unit.test_source_kubernetes import quickstart_text

ENDPOINT = ResourceKey("Endpoint", "e")
BACKEND = ResourceKey("Backend", "b")


def build(problems: dict[ResourceKey, list[str]] | None = None) -> Build:
    return Build(ConfigInvalid([]), {ENDPOINT: 2, BACKEND: 1}, problems or {})


def test_a_served_generation_is_accepted() -> None:
    condition = desired_condition(ENDPOINT, 2, build(), True, None, {ENDPOINT: 2, BACKEND: 1})
    assert condition == Condition("True", "Accepted", "The resource is valid and served.", 2)


def test_a_resource_with_problems_is_invalid_and_says_which() -> None:
    problems = {ENDPOINT: ["spec.models[0].targets[0].backend: unknown Backend 'x'"]}
    condition = desired_condition(ENDPOINT, 2, build(problems), False, None, {ENDPOINT: 1})
    assert condition is not None
    assert (condition.status, condition.reason, condition.observed_generation) == (
        "False",
        "Invalid",
        2,
    )
    assert "unknown Backend 'x'" in condition.message
    assert "The last good config keeps serving." in condition.message


def test_a_valid_resource_held_back_by_another_is_not_served() -> None:
    problems = {ENDPOINT: ["bad"]}
    condition = desired_condition(BACKEND, 1, build(problems), False, None, {})
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "NotServed")
    assert "because of Endpoint/e" in condition.message
    # ...while an unchanged resource of the served config stays accepted.
    served = desired_condition(BACKEND, 1, build(problems), False, None, {BACKEND: 1})
    assert served is not None and served.status == "True"


def test_a_translation_failure_is_reported_on_the_resources_not_served() -> None:
    condition = desired_condition(BACKEND, 1, build(), False, "a Rego error", {})
    assert condition is not None
    assert condition.reason == "NotServed"
    assert "could not be served: a Rego error" in condition.message


def test_a_generation_no_build_has_judged_gets_no_verdict() -> None:
    assert desired_condition(ENDPOINT, 3, build(), False, None, {ENDPOINT: 2}) is None


def test_the_transition_time_changes_only_with_the_status() -> None:
    before = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 2, 1, tzinfo=UTC)
    first = Condition("False", "Invalid", "bad", 1).as_status(None, before)
    other_reason = Condition("False", "NotServed", "held", 2).as_status(first, later)
    assert other_reason["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    flipped = Condition("True", "Accepted", "ok", 3).as_status(other_reason, later)
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-02-01T00:00:00Z"
    assert flipped["observedGeneration"] == 3
    foreign = {"conditions": [{"type": "Ready", "status": "True"}, *flipped["conditions"]]}
    kept = Condition("True", "Accepted", "ok", 3).as_status(foreign, later)
    assert [c["type"] for c in kept["conditions"]] == ["Ready", "Accepted"]


# --- the writer against the REST protocol -------------------------------------------------


class Plane:
    """The part of the control plane that feeds the writer: each build and whether it
    was published (a ConfigSet is, here)."""

    def __init__(self, source: KubernetesSource, writer: StatusWriter) -> None:
        self.source, self.writer = source, writer
        self.tasks = [asyncio.create_task(self._consume()), asyncio.create_task(writer.run())]

    async def _consume(self) -> None:
        async for result in self.source.watch():
            assert self.source.last_build is not None
            self.writer.record(self.source.last_build, isinstance(result, ConfigSet))


@pytest.fixture
async def plane(kube_api: KubeApi) -> AsyncIterator[Plane]:
    source = KubernetesSource(kube_api, backoff_s=(0.05, 0.2))
    running = Plane(source, StatusWriter(kube_api, source))
    yield running
    for task in running.tasks:
        task.cancel()
    await asyncio.gather(*running.tasks, return_exceptions=True)


def accepted(kube_server: KubeApiServer, kind: str, name: str) -> dict[str, Any] | None:
    obj = kube_server.get(kind, name)
    assert obj is not None
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == "Accepted":
            return dict(condition)
    return None


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_nothing_is_written_once_the_lead_has_run_out(
    kube_server: KubeApiServer, plane: Plane
) -> None:
    # Still told it leads, but its lease is past the renew deadline (the step-down is on
    # its way): a write now could land after another replica took over.
    plane.writer.lead_time_left = lambda: 0.0
    plane.writer.set_leading(True)
    kube_server.put_yaml(quickstart_text())
    await wait_for(lambda: plane.writer.outcome is not None)
    await asyncio.sleep(0.5)
    assert kube_server.status_patches == []
    plane.writer.lead_time_left = lambda: 8.0  # renewed
    await wait_for(lambda: accepted(kube_server, "Backend", "mock") is not None)


async def test_only_a_leader_writes_and_only_what_differs(
    kube_server: KubeApiServer, plane: Plane
) -> None:
    kube_server.put_yaml(quickstart_text())
    await wait_for(lambda: plane.writer.outcome is not None)
    await asyncio.sleep(0.5)
    assert kube_server.status_patches == []  # a follower writes nothing

    plane.writer.set_leading(True)
    names = [
        (obj["kind"], name)
        for (group, _, _), objects in kube_server.objects.items()
        if group == "weir.dev"
        for name, obj in objects.items()
    ]
    assert len(names) == 6
    await wait_for(lambda: all(accepted(kube_server, k, n) for k, n in names))
    condition = accepted(kube_server, "Backend", "mock")
    assert condition is not None
    assert (condition["status"], condition["reason"], condition["observedGeneration"]) == (
        "True",
        "Accepted",
        1,
    )
    writes = len(kube_server.status_patches)
    await asyncio.sleep(0.5)
    assert writes == len(names)  # one write each: its own writes make it write no more
    assert len(kube_server.status_patches) == writes

    endpoint = kube_server.get("Endpoint", "demo-chat")
    assert endpoint is not None
    endpoint["spec"]["models"][0]["targets"][0]["backend"] = "nowhere"
    kube_server.put(endpoint)
    tier = kube_server.get("ServiceTier", "trial")
    assert tier is not None
    tier["spec"]["priority"] = "high"
    kube_server.put(tier)

    def judged() -> bool:
        e, t = (
            accepted(kube_server, "Endpoint", "demo-chat"),
            accepted(kube_server, "ServiceTier", "trial"),
        )
        return bool(e and t and e["observedGeneration"] == 2 and t["observedGeneration"] == 2)

    await wait_for(judged)
    invalid = accepted(kube_server, "Endpoint", "demo-chat")
    held = accepted(kube_server, "ServiceTier", "trial")
    unchanged = accepted(kube_server, "Backend", "mock")
    assert invalid is not None and held is not None and unchanged is not None
    assert (invalid["status"], invalid["reason"]) == ("False", "Invalid")
    assert "nowhere" in invalid["message"]
    assert (held["status"], held["reason"]) == ("False", "NotServed")
    assert "Endpoint/demo-chat" in held["message"]
    assert unchanged["status"] == "True"  # still what is served
    obj = kube_server.get("Endpoint", "demo-chat")
    assert obj is not None and obj["status"]["observedGeneration"] == 2


def test_what_the_writer_writes_fits_the_crd_status_schema() -> None:
    from jsonschema import Draft202012Validator, FormatChecker

    from controlplane.crds import STATUS_SCHEMA
    from tests.unit.test_crds import strict

    validator = Draft202012Validator(strict(STATUS_SCHEMA), format_checker=FormatChecker())
    long_problem = build({ENDPOINT: ["x" * 40_000]})
    for condition in (
        desired_condition(ENDPOINT, 2, build(), True, None, {ENDPOINT: 2}),
        desired_condition(ENDPOINT, 2, long_problem, False, None, {}),  # trimmed
    ):
        assert condition is not None
        status = condition.as_status(None, datetime(2026, 1, 1, tzinfo=UTC))
        assert list(validator.iter_errors(status)) == []
