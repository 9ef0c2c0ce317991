"""Rego policies on the hot path: compiled once per config, evaluated per request.

The policies of one endpoint and stage share one regorus engine (a `Bundle`), so the
input document is converted once however many policies there are; each policy is still
evaluated on its own (its own package's rules), so one policy's failure (or `failOpen`)
never touches another's. Every policy of a stage sees the same input document; their
`deny` reasons are pooled, and their `patch` objects are applied in policy-name order
(a later policy's value for the same field wins).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from extproc.errors import PolicyDenied, PolicyFailed
from extproc.metrics import policy_decided
from weir.config.v1 import runtime_pb2
from weir.rego import Bundle, RegoCompileError, RegoEvalError, compile_module

log = logging.getLogger("weir.extproc.policy")

REQUEST: Final = "request"
RESPONSE: Final = "response"
_STAGES: Final = {
    runtime_pb2.Policy.STAGE_REQUEST: REQUEST,
    runtime_pb2.Policy.STAGE_RESPONSE: RESPONSE,
}
_ENTRY_RULES: Final = {REQUEST: ("deny", "patch"), RESPONSE: ("deny",)}
# Fields a patch may not touch: the client would get a different kind of answer than
# it asked for (`stream`), or Weir's own bookkeeping would break.
UNPATCHABLE: Final = frozenset({"stream", "stream_options"})
MAX_REASON_CHARS: Final = 1000


class PolicyConfigInvalid(Exception):
    """A Policy of the runtime config does not compile here (the config is NACKed)."""


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    stage: str
    fail_open: bool
    package: str  # "data.weir.tools"
    rules: tuple[str, ...]  # the entry rules the module defines, in evaluation order
    source: str


@dataclass(frozen=True, slots=True)
class PolicyGroup:
    """The policies of one endpoint at one stage, in name order, in one engine."""

    policies: tuple[CompiledPolicy, ...]
    bundle: Bundle

    @classmethod
    def of(cls, policies: Iterable[CompiledPolicy]) -> PolicyGroup:
        ordered = tuple(sorted(policies, key=lambda p: p.name))
        return cls(ordered, Bundle((f"{p.name}.rego", p.source) for p in ordered))

    def __bool__(self) -> bool:
        return bool(self.policies)

    def __iter__(self) -> Iterator[CompiledPolicy]:
        return iter(self.policies)


NO_GROUP: Final = PolicyGroup((), Bundle(()))


@dataclass(frozen=True, slots=True)
class EndpointPolicies:
    request: PolicyGroup = NO_GROUP
    response: PolicyGroup = NO_GROUP


NO_POLICIES: Final = EndpointPolicies()


def compile_policies(
    policies: Iterable[runtime_pb2.Policy],
) -> dict[str, EndpointPolicies]:
    """Endpoint name -> its policies by stage. Raises PolicyConfigInvalid."""
    by_endpoint: dict[str, dict[str, list[CompiledPolicy]]] = {}
    seen: set[str] = set()
    packages: dict[str, str] = {}
    for policy in policies:
        stage = _STAGES.get(policy.stage)
        if not policy.name or stage is None or not policy.endpoints:
            raise PolicyConfigInvalid(
                f"policy {policy.name!r} has no name, no known stage or no endpoints"
            )
        if policy.name in seen:
            raise PolicyConfigInvalid(f"policy {policy.name!r} is defined twice")
        seen.add(policy.name)
        try:
            module = compile_module(f"{policy.name}.rego", policy.module, _ENTRY_RULES[stage])
        except RegoCompileError as error:
            raise PolicyConfigInvalid(f"policy {policy.name!r} does not compile: {error}") from None
        other = packages.setdefault(module.package, policy.name)
        if other != policy.name:
            raise PolicyConfigInvalid(
                f"policies {other!r} and {policy.name!r} declare the same package "
                f"{module.package.removeprefix('data.')}"
            )
        rules = tuple(rule for rule in _ENTRY_RULES[stage] if rule in module.rules)
        if not rules:
            raise PolicyConfigInvalid(f"policy {policy.name!r} defines no {stage} rule")
        compiled = CompiledPolicy(
            policy.name, stage, policy.fail_open, module.package, rules, policy.module
        )
        for endpoint in policy.endpoints:
            by_endpoint.setdefault(endpoint, {REQUEST: [], RESPONSE: []})[stage].append(compiled)
    try:
        return {
            endpoint: EndpointPolicies(
                PolicyGroup.of(stages[REQUEST]), PolicyGroup.of(stages[RESPONSE])
            )
            for endpoint, stages in by_endpoint.items()
        }
    except RegoCompileError as error:  # each compiled alone, so not expected
        raise PolicyConfigInvalid(f"the policies do not compile together: {error}") from None


@dataclass(slots=True)
class Decision:
    """What one policy decided; stored with the request record."""

    policy: str
    stage: str
    result: str  # "allow", "deny" or "error"
    reasons: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "policy": self.policy,
            "stage": self.stage,
            "result": self.result,
            "reasons": self.reasons,
        }
        if self.patched:
            record["patched"] = self.patched
        return record


@dataclass(slots=True)
class Outcome:
    decisions: list[Decision]
    patch: dict[str, Any]


# Evaluation errors per policy name since the process started, for the log line (the
# metric weir_policy_decisions_total{result="error"} counts them too).
EVALUATION_ERRORS: Counter[str] = Counter()


class _NotAReasonSet(Exception):
    pass


def _reasons(value: Any) -> list[str]:
    """A `deny` value -> its reasons as text. `deny` is a set (or array) of reasons;
    anything else (`deny := false`, an object) is a policy bug, not a denial."""
    if value is None:
        return []
    if not isinstance(value, set | frozenset | list | tuple):
        raise _NotAReasonSet
    items = value
    reasons = [
        item if isinstance(item, str) else orjson.dumps(item, default=str).decode()
        for item in items
    ]
    return sorted(reason[:MAX_REASON_CHARS] for reason in reasons)


def evaluate(group: PolicyGroup, document: Mapping[str, Any], decisions: list[Decision]) -> Outcome:
    """Run the group's policies on `document`; append each policy's Decision to
    `decisions`.

    Raises PolicyDenied when any `deny` is non-empty (a denial wins: the request is
    refused either way), else PolicyFailed when a policy without failOpen failed to
    evaluate or returned a `patch` that is not an object of fields.
    """
    outcome = Outcome(decisions, {})
    if not group:
        return outcome
    denied: list[str] = []
    failed: list[str] = []  # fail-closed failures
    try:
        group.bundle.set_input(document)
    except RegoEvalError as error:
        for policy in group:
            _failed(policy, str(error), decisions, failed)
        raise _verdict(denied, failed) from None
    for policy in group:
        try:
            by_rule = {
                rule: group.bundle.value(f"{policy.package}.{rule}") for rule in policy.rules
            }
        except RegoEvalError as error:
            _failed(policy, str(error), decisions, failed)
            continue
        try:
            reasons = _reasons(by_rule.get("deny"))
        except _NotAReasonSet:
            why = "`deny` must be a set of reasons (`deny contains msg if ...`)"
            _failed(policy, why, decisions, failed)
            continue
        patch = by_rule.get("patch")
        if patch is not None and not (
            isinstance(patch, dict) and all(isinstance(key, str) for key in patch)
        ):
            _failed(policy, "`patch` must be an object of request fields", decisions, failed)
            continue
        blocked = sorted(UNPATCHABLE.intersection(patch or ()))
        if blocked:
            _failed(policy, f"`patch` may not change {', '.join(blocked)}", decisions, failed)
            continue
        decision = Decision(policy.name, policy.stage, "deny" if reasons else "allow", reasons)
        if patch and not reasons:
            decision.patched = sorted(patch)
            outcome.patch.update(patch)
        decisions.append(decision)
        policy_decided(policy.name, policy.stage, decision.result)
        denied.extend(f"{policy.name}: {reason}" for reason in reasons)
    if denied or failed:
        raise _verdict(denied, failed)
    return outcome


def _verdict(denied: list[str], failed: list[str]) -> PolicyDenied | PolicyFailed:
    if denied:
        return PolicyDenied("Denied by policy: " + "; ".join(denied))
    return PolicyFailed("; ".join(failed))


def _failed(policy: CompiledPolicy, why: str, decisions: list[Decision], failed: list[str]) -> None:
    EVALUATION_ERRORS[policy.name] += 1
    decisions.append(Decision(policy.name, policy.stage, "error", [why]))
    policy_decided(policy.name, policy.stage, "error")
    log.warning(
        "policy %s (%s stage) failed to evaluate (%d failures so far; %s): %s",
        policy.name,
        policy.stage,
        EVALUATION_ERRORS[policy.name],
        "fail-open: the request goes on" if policy.fail_open else "fail-closed: answered 500",
        why,
    )
    if not policy.fail_open:
        failed.append(f"Policy {policy.name!r} failed to evaluate: {why}")


def _json_value(value: Any) -> Any:
    """A Rego value as JSON: sets become sorted arrays."""
    if isinstance(value, set | frozenset):
        return sorted((_json_value(v) for v in value), key=orjson.dumps)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def apply_patch(body: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Set each patched field; a null value removes the field."""
    for key, value in patch.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = _json_value(value)
