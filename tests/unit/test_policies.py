"""extproc.policies: compiling the runtime config's policies, evaluating them per request."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from extproc.errors import PolicyDenied, PolicyFailed
from extproc.policies import (
    EVALUATION_ERRORS,
    Decision,
    PolicyConfigInvalid,
    PolicyGroup,
    apply_patch,
    compile_policies,
    evaluate,
)
from extproc.routes import RouteTable, RuntimeConfigInvalid
from weir.config.v1 import runtime_pb2

REQUEST = runtime_pb2.Policy.STAGE_REQUEST
RESPONSE = runtime_pb2.Policy.STAGE_RESPONSE


def policy(
    name: str, rego: str, stage: int = REQUEST, endpoints: tuple[str, ...] = ("e",), **kw: Any
) -> runtime_pb2.Policy:
    package = f"p_{name.replace('-', '_')}"
    return runtime_pb2.Policy(
        name=name,
        stage=stage,  # type: ignore[arg-type]
        module=f"package {package}\n\n{rego}",
        package=f"data.{package}",
        endpoints=list(endpoints),
        **kw,
    )


def compiled(*policies: runtime_pb2.Policy) -> PolicyGroup:
    return compile_policies(policies)["e"].request


def test_policies_are_grouped_by_endpoint_and_stage_in_name_order() -> None:
    table = compile_policies(
        [
            policy("b", 'deny contains "b" if false', endpoints=("e", "f")),
            policy("a", 'deny contains "a" if false'),
            policy("r", 'deny contains "r" if false', stage=RESPONSE, endpoints=("f",)),
        ]
    )
    assert [p.name for p in table["e"].request] == ["a", "b"]
    assert not table["e"].response
    assert [p.name for p in table["f"].request] == ["b"]
    assert [p.name for p in table["f"].response] == ["r"]


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ([policy("a", "deny contains msg if {\n msg :=\n}")], "does not compile: line 4"),
        ([policy("a", "x := 1")], "defines no request rule"),
        ([policy("a", 'deny contains "x" if false')] * 2, "defined twice"),
        ([policy("a", 'deny contains "x" if false', endpoints=())], "no endpoints"),
        (
            [
                policy("a", 'deny contains "x" if false'),
                runtime_pb2.Policy(
                    name="b",
                    stage=REQUEST,
                    module='package p_a\n\ndeny contains "y" if false',
                    package="data.p_a",
                    endpoints=["e"],
                ),
            ],
            "'a' and 'b' declare the same package p_a",
        ),
    ],
    ids=["syntax", "no-rule", "twice", "no-endpoints", "same-package"],
)
def test_a_policy_that_cannot_run_here_rejects_the_config(
    policies: list[runtime_pb2.Policy], message: str
) -> None:
    with pytest.raises(PolicyConfigInvalid, match=message):
        compile_policies(policies)


def test_every_deny_reason_is_pooled_and_each_decision_recorded() -> None:
    policies = compiled(
        policy("a", 'deny contains "too long" if count(input.request.messages) > 1'),
        policy("b", 'deny contains "no tools" if input.request.tools'),
        policy("c", 'deny contains "never" if false'),
    )
    decisions: list[Decision] = []
    with pytest.raises(PolicyDenied) as raised:
        evaluate(policies, {"request": {"messages": [1, 2], "tools": [1]}}, decisions)
    assert raised.value.message == "Denied by policy: a: too long; b: no tools"
    assert raised.value.status == 403
    assert raised.value.error_type == "policy_violation"
    assert [(d.policy, d.result, d.reasons) for d in decisions] == [
        ("a", "deny", ["too long"]),
        ("b", "deny", ["no tools"]),
        ("c", "allow", []),
    ]


def test_patches_merge_in_policy_name_order() -> None:
    policies = compiled(
        policy("a", "patch.max_tokens := 10\npatch.temperature := 0"),
        policy("b", 'patch.max_tokens := 20\npatch.user := null\ndeny contains "x" if false'),
    )
    decisions: list[Decision] = []
    outcome = evaluate(policies, {"request": {}}, decisions)
    assert outcome.patch == {"max_tokens": 20, "temperature": 0, "user": None}
    assert [d.patched for d in decisions] == [["max_tokens", "temperature"], ["max_tokens", "user"]]
    body = {"max_tokens": 999, "user": "u", "model": "m"}
    apply_patch(body, outcome.patch)
    assert body == {"max_tokens": 20, "temperature": 0, "model": "m"}


BROKEN = 'deny contains "x" if to_number(input.v) > 0'


def test_an_evaluation_error_fails_closed_and_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policies = compiled(policy("broken", BROKEN))
    before = EVALUATION_ERRORS["broken"]
    decisions: list[Decision] = []
    with caplog.at_level(logging.WARNING), pytest.raises(PolicyFailed) as raised:
        evaluate(policies, {"v": "nope"}, decisions)
    assert raised.value.status == 500
    assert raised.value.code == "policy_error"
    assert "'broken' failed to evaluate" in raised.value.message
    assert EVALUATION_ERRORS["broken"] == before + 1
    assert decisions[0].result == "error"
    assert "fail-closed" in caplog.text


def test_an_evaluation_error_in_a_fail_open_policy_is_skipped() -> None:
    policies = compiled(
        policy("broken", BROKEN, fail_open=True),
        policy("other", 'patch.max_tokens := 5\ndeny contains "x" if false'),
    )
    decisions: list[Decision] = []
    outcome = evaluate(policies, {"v": "nope"}, decisions)
    assert outcome.patch == {"max_tokens": 5}
    assert [(d.policy, d.result) for d in decisions] == [("broken", "error"), ("other", "allow")]


def test_a_denial_wins_over_a_fail_closed_error_whatever_the_order() -> None:
    for names in (("a-broken", "b-deny"), ("b-broken", "a-deny")):
        policies = compiled(
            policy(names[0], BROKEN), policy(names[1], 'deny contains "no" if true')
        )
        decisions: list[Decision] = []
        with pytest.raises(PolicyDenied, match="no"):
            evaluate(policies, {"v": "nope"}, decisions)
        assert sorted(d.result for d in decisions) == ["deny", "error"]


@pytest.mark.parametrize(
    "rego",
    ["patch := 5", 'patch.stream := false\ndeny contains "x" if false'],
    ids=["not-an-object", "stream"],
)
def test_a_patch_weir_cannot_apply_is_a_policy_error(rego: str) -> None:
    with pytest.raises(PolicyFailed):
        evaluate(compiled(policy("p", rego)), {"request": {}}, [])


def test_a_runtime_config_whose_policy_does_not_compile_is_refused_whole() -> None:
    config = runtime_pb2.RuntimeConfig(
        cluster_header="x-c",
        endpoint_header="x-e",
        endpoints=[runtime_pb2.Endpoint(name="e", project="p", slug="s")],
        policies=[policy("bad", "deny contains msg if {\n msg :=\n}")],
    )
    with pytest.raises(RuntimeConfigInvalid, match="policy 'bad' does not compile: line 4"):
        RouteTable.compile(config)
    del config.policies[:]
    config.policies.append(policy("good", 'deny contains "x" if false', endpoints=("gone",)))
    with pytest.raises(RuntimeConfigInvalid, match="unknown endpoints: gone"):
        RouteTable.compile(config)
    config.policies[0].endpoints[:] = ["e"]
    assert [p.name for p in RouteTable.compile(config).endpoint("p", "s").policies.request] == [  # type: ignore[union-attr]
        "good"
    ]


@pytest.mark.parametrize("rego", ["default deny := false", "deny := {}", 'deny := "no"'])
def test_a_deny_that_is_not_a_set_is_a_policy_error_not_a_denial(rego: str) -> None:
    decisions: list[Decision] = []
    with pytest.raises(PolicyFailed, match="`deny` must be a set of reasons"):
        evaluate(compiled(policy("p", rego)), {"request": {}}, decisions)
    assert decisions[0].result == "error"


def test_a_patched_set_becomes_a_json_array() -> None:
    outcome = evaluate(compiled(policy("p", 'patch.tags := {"b", "a"}')), {"request": {}}, [])
    body: dict[str, Any] = {}
    apply_patch(body, outcome.patch)
    assert body == {"tags": ["a", "b"]}
