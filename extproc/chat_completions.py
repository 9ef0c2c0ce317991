"""`POST /{project}/{slug}/v1/chat/completions`: the request body stage.

Parses and validates the body, resolves the requested model to its backend target,
clamps `max_tokens` / `max_completion_tokens` to what the target model can produce, and
returns the mutations that send the request there: the routing header, the backend's
path, authority and key, and the body with the backend's model name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from extproc.errors import InvalidRequest, ModelNotFound
from extproc.openai_request import validate_chat_request
from extproc.routes import EndpointRoutes, RouteTable, Target

API_PATH = "chat/completions"


FALLBACK_HEADER: Final = "x-weir-fallback"  # Envoy's routes match it (translate_envoy)
API_PATH_HEADER: Final = "x-weir-api-path"  # the path after a backend's base URL
STREAM_HEADER: Final = "x-weir-stream"  # Envoy's stream routes match it (translate_envoy)


@dataclass(slots=True)
class RoutedRequest:
    target: Target
    model: str  # the name the client asked for
    stream: bool
    headers: list[tuple[str, bytes]]
    body: bytes  # what goes upstream: exactly the request that was checked
    clamped_from: int | None  # the client's max tokens value, when it was clamped


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {error}. Expected a JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


TOKEN_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


def clamp_max_tokens(body: dict[str, Any], capacity: int) -> int | None:
    """Lower the token limits above `capacity` to it; return the largest original value
    that was lowered, or None. A capacity of 0 (unknown) clamps nothing."""
    clamped: int | None = None
    if capacity <= 0:
        return None
    for field in TOKEN_LIMIT_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > capacity:
            body[field] = capacity
            clamped = value if clamped is None else max(clamped, value)
    return clamped


def check(endpoint: EndpointRoutes, body: dict[str, Any]) -> tuple[str, tuple[Target, ...]]:
    """The requested model and its targets, once `body` is a valid request for a model
    the endpoint serves; raises GatewayError."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            "You must provide a model parameter (a non-empty string).", param="model"
        )
    targets = endpoint.models.get(model)
    if targets is None:
        raise ModelNotFound(
            f"The model `{model}` does not exist on endpoint "
            f"/{endpoint.project}/{endpoint.slug}/v1 or you do not have access to it.",
            param="model",
        )
    validate_chat_request(body)
    return model, targets


def route(
    endpoint: EndpointRoutes,
    body: dict[str, Any],
    table: RouteTable,
    query: str,
    model: str,
    targets: tuple[Target, ...],
) -> RoutedRequest:
    """Route a `body` that passed `check` (changed in place); raises GatewayError."""
    target = targets[0]
    clamped_from = clamp_max_tokens(body, target.max_output_tokens)
    api_path = f"/{API_PATH}?{query}" if query else f"/{API_PATH}"
    path = f"{target.path_prefix}{api_path}"
    fallback = endpoint.fallbacks.get(model) if len(targets) > 1 else None
    headers = [
        (table.cluster_header, (fallback or target.cluster).encode()),
        (table.endpoint_header, endpoint.name.encode()),
        (":path", path.encode()),
        (":authority", target.authority.encode()),
    ]
    if fallback:
        # The route that tries the candidates in turn; each attempt is rewritten for its
        # candidate by ext_proc's upstream filter (extproc.attempts).
        headers += [(FALLBACK_HEADER, b"1"), (API_PATH_HEADER, api_path.encode())]
    if body.get("stream") is True:
        headers.append((STREAM_HEADER, b"1"))
    if target.authorization:
        headers.append(("authorization", target.authorization))
    # Always re-serialized, never the client's bytes: a body with duplicate keys would
    # otherwise reach a provider whose parser keeps another `model` than the one checked.
    body["model"] = target.model
    try:
        upstream_body = orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise InvalidRequest(
            "The request body is nested too deeply.", code="invalid_json"
        ) from None
    headers.append(("content-length", str(len(upstream_body)).encode()))
    return RoutedRequest(
        target, model, body.get("stream") is True, headers, upstream_body, clamped_from
    )
