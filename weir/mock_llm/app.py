"""The Starlette application of the mock LLM."""

from __future__ import annotations

import asyncio
import hashlib
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from weir.mock_llm.behaviors import (
    TOOL_BEHAVIORS,
    TPOT_HEADER,
    TTFT_HEADER,
    Behavior,
    latency_override_ms,
    parse_behavior,
    parse_usage_options,
)
from weir.mock_llm.chat_request import ChatRequest, parse_body, parse_chat_request
from weir.mock_llm.completions import ChoicePlan, Completion, ToolCallPlan, new_call_id
from weir.mock_llm.errors import APIError, error_response
from weir.mock_llm.settings import MockSettings
from weir.mock_llm.sse import SSEResponse
from weir.mock_llm.stats import MockStats
from weir.mock_llm.tokens import (
    DEFAULT_ANSWER_TOKENS,
    TOOL_PREAMBLE_TOKENS,
    count_prompt_tokens,
    message_text,
    split_tokens,
)
from weir.mock_llm.tools import asks_for_tool, generate_arguments, pick_tool

__all__ = ["create_app"]

MODEL_CREATED = 1_700_000_000
OWNED_BY = "weir-mock"
RECEIVED_MODEL_HEADER = "X-Mock-Received-Model"
RECEIVED_AUTH_HEADER = "X-Mock-Received-Authorization-Present"
# SHA-256 (hex) of the received Authorization header, so tests can tell which key arrived
# without the key itself ever being echoed.
RECEIVED_AUTH_HASH_HEADER = "X-Mock-Received-Authorization-SHA256"

_HEADER_SAFE = string.punctuation.replace("%", "") + " "


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(obj), status_code=status, headers=headers, media_type="application/json"
    )


def _header_value(text: str) -> str:
    """``text`` if it can go in a header as is, else percent-encoded."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe=_HEADER_SAFE)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _offered_functions(req: ChatRequest) -> list[Mapping[str, Any]]:
    """The function tools the request lets the model call (``allowed_tools`` applied)."""
    if req.allowed_tools is None:
        return req.functions
    return [f for f in req.functions if f["name"] in req.allowed_tools]


def _wants_tool(req: ChatRequest, prompt: str, functions: list[Mapping[str, Any]]) -> bool:
    """Whether the default behaviour answers with a tool call."""
    if not functions or req.tool_choice == "none":
        return False
    return req.tool_choice == "required" or (
        req.messages[-1].get("role") == "user" and asks_for_tool(prompt, functions)
    )


def _functions_to_call(
    req: ChatRequest, behavior: Behavior, prompt: str
) -> list[Mapping[str, Any]]:
    """The functions the answer calls, in order; none if it answers with text."""
    functions = _offered_functions(req)
    if behavior in TOOL_BEHAVIORS:
        if not functions:
            raise APIError(
                400,
                f"X-Mock-Behavior '{behavior.value}' was requested but no tools were offered: "
                "'tools' has no function tool.",
                param="tools",
                code="no_tools_offered",
            )
    elif behavior is not Behavior.DEFAULT or not _wants_tool(req, prompt, functions):
        return []
    if behavior is not Behavior.PARALLEL_TOOL_CALLS or req.named_tool is not None:
        return [pick_tool(functions, prompt, req.named_tool)]
    return functions if req.parallel_tool_calls else functions[:1]


def _tool_call_choices(
    req: ChatRequest, behavior: Behavior, functions: list[Mapping[str, Any]]
) -> list[ChoicePlan]:
    """``n`` choices calling ``functions``, after a short sentence for ``text_then_tool_call``."""
    calls = [(str(f["name"]), generate_arguments(f.get("parameters"))) for f in functions]
    tokens = TOOL_PREAMBLE_TOKENS if behavior is Behavior.TEXT_THEN_TOOL_CALL else ()
    return [
        ChoicePlan(
            tokens=tokens,
            tool_calls=[ToolCallPlan(new_call_id(), name, arguments) for name, arguments in calls],
            finish_reason="tool_calls",
        )
        for _ in range(req.n)
    ]


def _text_choices(req: ChatRequest, behavior: Behavior, prompt: str) -> list[ChoicePlan]:
    """``n`` choices answering with text (the prompt for ``echo``), cut at ``max_tokens``."""
    tokens: list[str] | tuple[str, ...]
    tokens = split_tokens(prompt) if behavior is Behavior.ECHO else DEFAULT_ANSWER_TOKENS
    finish = "stop"
    if req.max_tokens is not None and len(tokens) > req.max_tokens:
        tokens = tokens[: req.max_tokens]
        finish = "length"
    return [ChoicePlan(tokens=tokens, finish_reason=finish) for _ in range(req.n)]


def plan_completion(
    req: ChatRequest, behavior: Behavior, ttft_ms: float, tpot_ms: float
) -> Completion:
    """Decide what the mock answers to a valid chat request."""
    prompt = _last_user_text(req.messages)
    functions = _functions_to_call(req, behavior, prompt)
    if functions:
        choices = _tool_call_choices(req, behavior, functions)
    else:
        choices = _text_choices(req, behavior, prompt)
    return Completion(
        model=req.model,
        choices=choices,
        prompt_tokens=count_prompt_tokens(req.messages, req.tools),
        ttft_s=ttft_ms / 1000.0,
        tpot_s=tpot_ms / 1000.0,
        include_usage=req.include_usage,
    )


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _hang(request: Request, stats: MockStats, stopping: asyncio.Event) -> Response:
    """Never answer: wait until the client goes away (other requests carry on).

    If the server shuts down meanwhile, answer 503 so that the shutdown is not held up.
    """
    stats.hanging += 1
    waiters = [
        asyncio.ensure_future(_wait_for_disconnect(request)),
        asyncio.ensure_future(stopping.wait()),
    ]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stats.hanging -= 1
        for waiter in waiters:
            waiter.cancel()
    return error_response(
        503,
        "The mock LLM is shutting down.",
        type="server_error",
        code="service_unavailable",
    )


def create_app(settings: MockSettings | None = None) -> Starlette:
    """A mock OpenAI-compatible upstream (see the package docs for its behaviour)."""
    settings = settings or MockSettings()
    stats = MockStats()
    stopping = asyncio.Event()  # set by the server when it begins to shut down
    models = {
        model_id: {
            "id": model_id,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": OWNED_BY,
        }
        for model_id in settings.model_ids
    }
    models_body = orjson.dumps({"object": "list", "data": list(models.values())})
    retry_after = str(settings.retry_after_s)

    async def chat_completions(request: Request) -> Response:
        raw = await request.body()
        body: Any = None
        body_error: APIError | None = None
        try:
            body = parse_body(raw)
        except APIError as exc:
            body_error = exc
        model = body.get("model") if isinstance(body, dict) else None
        headers = {
            RECEIVED_MODEL_HEADER: _header_value(model) if isinstance(model, str) else "",
            RECEIVED_AUTH_HEADER: "true" if "authorization" in request.headers else "false",
        }
        if "authorization" in request.headers:
            headers[RECEIVED_AUTH_HASH_HEADER] = hashlib.sha256(
                request.headers["authorization"].encode()
            ).hexdigest()
        try:
            try:
                behavior = parse_behavior(request.headers, settings.behavior)
            except APIError:
                stats.record(body, "invalid", headers.get(RECEIVED_AUTH_HASH_HEADER, ""))
                raise
            stats.record(body, behavior.value, headers.get(RECEIVED_AUTH_HASH_HEADER, ""))
            if behavior is Behavior.ERROR_429:
                raise APIError(
                    429,
                    "Rate limit reached for requests (mock). Please try again later.",
                    type="requests",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": retry_after},
                )
            if behavior is Behavior.ERROR_500:
                raise APIError(
                    500,
                    "The server had an error while processing your request. Sorry about that!",
                    type="server_error",
                    code="server_error",
                )
            if behavior is Behavior.HANG:
                return await _hang(request, stats, stopping)
            ttft_ms = latency_override_ms(request.headers, TTFT_HEADER, settings.ttft_ms)
            tpot_ms = latency_override_ms(request.headers, TPOT_HEADER, settings.tpot_ms)
            if body_error is not None:
                raise body_error
            req = parse_chat_request(body)
            completion = plan_completion(req, behavior, ttft_ms, tpot_ms)
            completion.report_usage, completion.cached_tokens = parse_usage_options(request.headers)
        except APIError as exc:
            return exc.to_response(headers)

        if req.stream:
            return SSEResponse(completion, headers)
        delay = completion.full_delay_s()
        if delay > 0:
            await asyncio.sleep(delay)
        return Response(completion.body(), headers=headers, media_type="application/json")

    async def list_models(request: Request) -> Response:
        return Response(models_body, media_type="application/json")

    async def get_model(request: Request) -> Response:
        model_id: str = request.path_params["model_id"]
        model = models.get(model_id)
        if model is None:
            return error_response(
                404,
                f"The model '{model_id}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return _json(model)

    async def get_stats(request: Request) -> Response:
        return _json(stats.to_json())

    async def reset_stats(request: Request) -> Response:
        stats.reset()
        return _json(stats.to_json())

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        target = f"({request.method} {request.url.path})"
        if exc.status_code == 404:
            return error_response(404, f"Invalid URL {target}", code="unknown_url")
        if exc.status_code == 405:
            return error_response(
                405,
                f"Method not allowed {target}",
                code="method_not_allowed",
                headers=exc.headers,
            )
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(
            500,
            f"The mock LLM failed: {type(exc).__name__}",
            type="server_error",
            code="server_error",
        )

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/mock/stats", get_stats, methods=["GET"]),
        Route("/mock/reset", reset_stats, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        # Like a real provider, compress whole answers for clients that accept gzip
        # (streams stay uncompressed): a gateway that must read answers has to cope.
        middleware=[Middleware(GZipMiddleware, minimum_size=1)],
    )
    app.state.mock_stats = stats
    app.state.mock_stopping = stopping
    app.state.mock_settings = settings
    return app
