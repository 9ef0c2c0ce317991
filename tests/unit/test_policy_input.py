"""The document request policies see: the endpoint's service tier by name."""

from __future__ import annotations

from types import MappingProxyType

from extproc.auth import Principal
from extproc.limits import Limits, Tier
from extproc.policy_input import request_document
from extproc.routes import EndpointRoutes

PRINCIPAL = Principal("key_1", "demo", frozenset({"inference"}), 0, False)


def endpoint(tier: Tier | None) -> EndpointRoutes:
    return EndpointRoutes("demo-chat", "demo", "chat", MappingProxyType({}), b"", tier=tier)


def test_policies_see_the_tier_of_the_endpoint() -> None:
    body = {"model": "m", "messages": []}
    trial = Tier("trial", Limits(requests_per_minute=5), Limits())
    document = request_document(body, PRINCIPAL, endpoint(trial), {}, "r1", "s1")
    assert document["tier"] == "trial"
    assert request_document(body, PRINCIPAL, endpoint(None), {}, "r1", "s1")["tier"] is None
