"""The input documents Rego policies see (`input` in Rego), one shape per stage.

The request stage sees the request as the client sent it, after validation, and who
sent it; the response stage sees the same plus the answer so far. The README documents
both with an example; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from extproc.auth import Principal
from extproc.pii_request import PiiScan
from extproc.routes import EndpointRoutes
from extproc.tool_calls import offered_tool_names


def request_document(
    body: Mapping[str, Any],
    principal: Principal,
    endpoint: EndpointRoutes,
    properties: Mapping[str, str],
    request_id: str,
    session_id: str,
    pii: PiiScan | None = None,
) -> dict[str, Any]:
    return {
        "stage": "request",
        "request": body,
        # Every tool the request offers, whatever its form (function and custom tools,
        # the deprecated `functions`): block tools by these names.
        "tool_names": offered_tool_names(body),
        "key": {
            "id": principal.key_id,
            "project": principal.project,
            "scopes": sorted(principal.scopes),
        },
        "project": endpoint.project,
        "endpoint": {"name": endpoint.name, "project": endpoint.project, "slug": endpoint.slug},
        # The endpoint's ServiceTier (its name); null without one.
        "tier": endpoint.tier.name if endpoint.tier is not None else None,
        # What the endpoint's PII policy found: types and counts, never values; null
        # when the endpoint has no PII policy. `request` itself is as the client sent it.
        "pii": None if pii is None else {"entities": pii.counts(), "art9": pii.art9_counts()},
        "properties": dict(properties),
        "request_id": request_id,
        "session_id": session_id,
    }


def response_document(
    request: Mapping[str, Any],
    *,
    backend: str,
    model: str,
    choices: Iterable[Mapping[str, Any]],
    tool_calls: list[dict[str, Any]],
    usage: Any,
    complete: bool,
) -> dict[str, Any]:
    """`request` is the request stage's document (with the request as sent upstream);
    `choices` are OpenAI choice objects ({"index", "message", "finish_reason"}),
    `tool_calls` the calls of every choice with their arguments parsed."""
    all_choices = list(choices)
    first = all_choices[0] if all_choices else {"message": {"role": "assistant"}}
    return {
        **request,
        "stage": "response",
        "response": {
            "complete": complete,
            "backend": backend,
            "model": model,
            "message": first.get("message"),
            "finish_reason": first.get("finish_reason"),
            "choices": all_choices,
            "tool_calls": tool_calls,
            "usage": usage,
        },
    }
