"""translate_runtime: Policies in ext_proc's runtime config."""

from __future__ import annotations

from controlplane.model import Backend, BackendModel, ConfigSet, Endpoint, ModelAlias, ModelTarget
from controlplane.model import Policy as PolicyResource
from controlplane.translate_runtime import translate
from weir.config.v1 import runtime_pb2


def config(*policies: PolicyResource) -> ConfigSet:
    alias = ModelAlias("m", (ModelTarget("b", "m"),))
    return ConfigSet(
        backends=(Backend("b", "http://127.0.0.1:9/v1", (BackendModel("m"),)),),
        endpoints=(Endpoint("one", "p", "one", (alias,)), Endpoint("two", "p", "two", (alias,))),
        policies=policies,
    )


def test_policies_go_in_name_order_and_every_endpoint_is_spelled_out() -> None:
    runtime = translate(
        config(
            PolicyResource("z-resp", "response", "package z", "data.z", ("two",), fail_open=True),
            PolicyResource("a-all", "request", "package a", "data.a"),
        ),
        {},
    )
    assert [(p.name, p.stage, list(p.endpoints), p.fail_open) for p in runtime.policies] == [
        ("a-all", runtime_pb2.Policy.STAGE_REQUEST, ["one", "two"], False),
        ("z-resp", runtime_pb2.Policy.STAGE_RESPONSE, ["two"], True),
    ]
    assert runtime.policies[0].module == "package a"
    assert runtime.policies[0].package == "data.a"


def test_a_policy_change_changes_the_revision() -> None:
    before = translate(config(PolicyResource("a", "request", "package a", "data.a")), {})
    after = translate(config(PolicyResource("a", "request", "package a\n", "data.a")), {})
    assert before.revision != after.revision


def test_a_policy_for_every_endpoint_of_a_config_without_endpoints_is_left_out() -> None:
    empty = ConfigSet(policies=(PolicyResource("a", "request", "package a", "data.a"),))
    assert list(translate(empty, {}).policies) == []
