"""The mock LLM, in process (httpx.ASGITransport): routes, behaviours, OpenAPI shapes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import jsonschema
import orjson
import pytest

from tests.openapi_schema import validate_openapi
from weir.mock_llm import MockSettings, create_app
from weir.mock_llm.tokens import (
    DEFAULT_ANSWER,
    DEFAULT_ANSWER_TOKENS,
    TOOL_PREAMBLE,
    TOOL_PREAMBLE_TOKENS,
)
from weir.mock_llm.tools import generate_arguments, split_arguments

CHAT = "/v1/chat/completions"
USER_HI = [{"role": "user", "content": "Hello there"}]

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and state"},
        "unit": {"type": "string", "enum": ["fahrenheit", "celsius"]},
        "days": {"type": "integer", "minimum": 3, "maximum": 10},
        "detailed": {"type": "boolean"},
        "threshold": {"type": "number", "exclusiveMinimum": 100},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "when": {"type": "string", "format": "date-time"},
        "station": {"$ref": "#/$defs/station"},
        "note": {"type": ["string", "null"]},
        "optional_thing": {"type": "string"},
    },
    "required": [
        "location",
        "unit",
        "days",
        "detailed",
        "threshold",
        "tags",
        "when",
        "station",
        "note",
    ],
    "$defs": {
        "station": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "minLength": 12},
                "coords": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                },
                "kind": {"anyOf": [{"type": "null"}, {"type": "integer", "maximum": 5}]},
            },
            "required": ["code", "coords", "kind"],
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": WEATHER_PARAMS,
        },
    },
]
TOOL_PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(MockSettings(retry_after_s=7))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as c:
        yield c


def sse_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    """The chunks of an SSE body, each checked against the OpenAPI chunk schema."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-1] == "", "the body must end with a blank line"
    assert events[-2] == "data: [DONE]", "the stream must end with [DONE]"
    chunks = []
    for event in events[:-2]:
        assert event.startswith("data: {"), event
        chunk = orjson.loads(event[len("data: ") :])
        validate_openapi(chunk, "CreateChatCompletionStreamResponse")
        chunks.append(chunk)
    return chunks


def assert_error(response: httpx.Response, status: int, **fields: Any) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate_openapi(body, "ErrorResponse")
    for key, value in fields.items():
        assert body["error"][key] == value, body
    return dict(body["error"])


# ---- non-streamed ---------------------------------------------------------------------


async def test_non_streamed_default_answer(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"model": "my-model-x", "messages": USER_HI})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "my-model-x"
    assert abs(body["created"] - time.time()) < 60
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == DEFAULT_ANSWER
    assert choice["message"]["refusal"] is None
    assert "tool_calls" not in choice["message"]
    usage = body["usage"]
    assert usage["completion_tokens"] == len(DEFAULT_ANSWER_TOKENS) == 20
    assert usage["prompt_tokens"] > 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = set()
    for _ in range(3):
        r = await client.post(CHAT, json={"model": "m", "messages": USER_HI})
        ids.add(r.json()["id"])
    assert len(ids) == 3


async def test_prompt_tokens_grow_with_the_prompt(client: httpx.AsyncClient) -> None:
    short = await client.post(CHAT, json={"model": "m", "messages": USER_HI})
    long_messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "word " * 50},
    ]
    long = await client.post(CHAT, json={"model": "m", "messages": long_messages})
    assert long.json()["usage"]["prompt_tokens"] >= short.json()["usage"]["prompt_tokens"] + 50


async def test_n_choices(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": USER_HI, "n": 3})
    body = r.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] == DEFAULT_ANSWER for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 3 * len(DEFAULT_ANSWER_TOKENS)


@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens"])
async def test_max_tokens_cuts_the_answer(client: httpx.AsyncClient, field: str) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": USER_HI, field: 5})
    body = r.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "".join(DEFAULT_ANSWER_TOKENS[:5])
    assert body["usage"]["completion_tokens"] == 5


async def test_max_tokens_larger_than_answer_stops(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": USER_HI, "max_tokens": 500})
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    assert r.json()["choices"][0]["message"]["content"] == DEFAULT_ANSWER


# ---- streamed -------------------------------------------------------------------------


async def test_streamed_one_token_per_event(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"model": "stream-model", "messages": USER_HI, "stream": True})
    assert r.status_code == 200
    assert r.headers["x-mock-received-model"] == "stream-model"
    chunks = sse_chunks(r)
    assert len(chunks) == len(DEFAULT_ANSWER_TOKENS)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == "stream-model" for c in chunks)
    assert all("usage" not in c for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert all("role" not in d for d in deltas[1:])
    assert [d["content"] for d in deltas] == list(DEFAULT_ANSWER_TOKENS)
    assert "".join(d["content"] for d in deltas) == DEFAULT_ANSWER
    finish = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finish == [None] * (len(chunks) - 1) + ["stop"]


async def test_streamed_include_usage(client: httpx.AsyncClient) -> None:
    body = {
        "model": "m",
        "messages": USER_HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse_chunks(await client.post(CHAT, json=body))
    *content_chunks, usage_chunk = chunks
    assert all("usage" in c and c["usage"] is None for c in content_chunks)
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == len(content_chunks) == 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_streamed_include_usage_false_has_no_usage(client: httpx.AsyncClient) -> None:
    body = {
        "model": "m",
        "messages": USER_HI,
        "stream": True,
        "stream_options": {"include_usage": False},
    }
    chunks = sse_chunks(await client.post(CHAT, json=body))
    assert all("usage" not in c and c["choices"] for c in chunks)


async def test_usage_none_reports_no_usage_streamed_or_not(client: httpx.AsyncClient) -> None:
    headers = {"X-Mock-Usage": "none"}
    whole = await client.post(CHAT, json={"model": "m", "messages": USER_HI}, headers=headers)
    assert whole.status_code == 200 and "usage" not in whole.json()
    validate_openapi(whole.json(), "CreateChatCompletionResponse")
    body = {
        "model": "m",
        "messages": USER_HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse_chunks(await client.post(CHAT, json=body, headers=headers))
    assert chunks and all(c["choices"] and c["usage"] is None for c in chunks)


async def test_cached_tokens_are_reported_up_to_the_prompt(client: httpx.AsyncClient) -> None:
    for asked in ("3", "100000"):
        response = await client.post(
            CHAT,
            json={"model": "m", "messages": USER_HI},
            headers={"X-Mock-Cached-Tokens": asked},
        )
        usage = response.json()["usage"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        assert cached == min(int(asked), usage["prompt_tokens"])
    bad = await client.post(
        CHAT, json={"model": "m", "messages": USER_HI}, headers={"X-Mock-Usage": "maybe"}
    )
    assert_error(bad, 400, code="invalid_mock_usage")


async def test_streamed_n_choices_and_max_tokens(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": USER_HI, "stream": True, "n": 2, "max_tokens": 4}
    chunks = sse_chunks(await client.post(CHAT, json=body))
    assert len(chunks) == 8
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert "".join(m["delta"]["content"] for m in mine) == "".join(DEFAULT_ANSWER_TOKENS[:4])
        assert mine[0]["delta"]["role"] == "assistant"
        assert [m["finish_reason"] for m in mine] == [None, None, None, "length"]


async def timed_stream(
    app: Any, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[float, list[tuple[float, bytes]]]:
    """Drive the ASGI app directly: ``(start, [(time, body) of each non-empty body message])``."""
    raw_body = orjson.dumps(body)
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 1234),
        "server": ("mock", 80),
    }
    sent: list[tuple[float, MutableMapping[str, Any]]] = []
    body_given = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": raw_body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append((time.monotonic(), message))

    start = time.monotonic()
    await app(scope, receive, send)
    assert sent[0][1]["type"] == "http.response.start"
    return start, [(t, m["body"]) for t, m in sent[1:] if m["body"]]


async def test_stream_events_are_sent_separately_over_time() -> None:
    """Each token is its own body message, sent after a delay."""
    app = create_app(MockSettings(ttft_ms=40, tpot_ms=15))
    start, bodies = await timed_stream(app, {"model": "m", "messages": USER_HI, "stream": True})
    assert len(bodies) == len(DEFAULT_ANSWER_TOKENS)
    assert all(b.startswith(b"data: {") and b.count(b"data: ") in (1, 2) for _, b in bodies)
    assert bodies[-1][1].endswith(b"data: [DONE]\n\n")
    times = [t for t, _ in bodies]
    assert times[0] - start >= 0.035  # ttft
    assert times == sorted(times)
    assert times[-1] - times[0] >= 0.015 * (len(times) - 1) * 0.9  # tpot between tokens


# ---- echo -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        ("  Echo me,\n  exactly!  ", "  Echo me,\n  exactly!  "),
        (
            [
                {"type": "text", "text": "part one "},
                {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                {"type": "text", "text": "part two"},
            ],
            "part one part two",
        ),
    ],
)
async def test_echo_returns_last_user_message(
    client: httpx.AsyncClient, content: Any, expected: str
) -> None:
    messages = [
        {"role": "system", "content": "system prompt"},
        {"role": "user", "content": "an older question"},
        {"role": "assistant", "content": "an older answer"},
        {"role": "user", "content": content},
    ]
    headers = {"X-Mock-Behavior": "ECHO"}
    r = await client.post(CHAT, json={"model": "m", "messages": messages}, headers=headers)
    body = r.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["message"]["content"] == expected
    assert body["usage"]["completion_tokens"] == len(expected.split())

    stream = {"model": "m", "messages": messages, "stream": True}
    chunks = sse_chunks(await client.post(CHAT, json=stream, headers=headers))
    deltas = [c["choices"][0]["delta"]["content"] for c in chunks]
    assert "".join(deltas) == expected
    assert len(deltas) == len(expected.split())


async def test_echo_ignores_tools_and_call_words(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "call get_weather"}]}
    body["tools"] = TOOLS
    r = await client.post(CHAT, json=body, headers={"x-mock-behavior": "echo"})
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "call get_weather"
    assert "tool_calls" not in message


# ---- tool calls -----------------------------------------------------------------------


def assert_tool_call(body: dict[str, Any], name: str) -> dict[str, Any]:
    validate_openapi(body, "CreateChatCompletionResponse")
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == name
    arguments = orjson.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, TOOL_PARAMS[name])
    return dict(arguments)


@pytest.mark.parametrize(
    "prompt, extra, headers, expected",
    [
        ("Hello", {}, {"X-Mock-Behavior": "Tool_Call"}, "lookup_order"),
        ("Hello", {"tool_choice": "required"}, {}, "lookup_order"),
        (
            "Hello",
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {},
            "get_weather",
        ),
        ("Please call a tool for me", {}, {}, "lookup_order"),
        ("Could you use the tool?", {}, {}, "lookup_order"),
        ("What does get_weather say about Paris?", {}, {}, "get_weather"),
        ("Hello", {"tool_choice": "required"}, {"X-Mock-Behavior": ""}, "lookup_order"),
    ],
)
async def test_tool_call_triggers(
    client: httpx.AsyncClient,
    prompt: str,
    extra: dict[str, Any],
    headers: dict[str, str],
    expected: str,
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "tools": TOOLS}
    r = await client.post(CHAT, json=body | extra, headers=headers)
    assert r.status_code == 200, r.text
    assert_tool_call(r.json(), expected)


async def test_tool_call_arguments_follow_the_schema(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "get_weather"}], "tools": TOOLS}
    arguments = assert_tool_call((await client.post(CHAT, json=body)).json(), "get_weather")
    assert arguments["unit"] == "fahrenheit"  # first enum value
    assert 3 <= arguments["days"] <= 10
    assert arguments["detailed"] is True
    assert arguments["threshold"] > 100
    assert len(arguments["tags"]) >= 2
    assert isinstance(arguments["location"], str) and arguments["location"]
    assert len(arguments["station"]["code"]) >= 12
    assert "optional_thing" not in arguments


@pytest.mark.parametrize(
    "messages, extra",
    [
        ([{"role": "user", "content": "Hello, how are you?"}], {}),
        ([{"role": "user", "content": "Please call get_weather"}], {"tool_choice": "none"}),
        (
            [
                {"role": "user", "content": "Please call get_weather"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            {},
        ),
    ],
)
async def test_no_tool_call_when_not_asked(
    client: httpx.AsyncClient, messages: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    body = {"model": "m", "messages": messages, "tools": TOOLS} | extra
    r = await client.post(CHAT, json=body)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == DEFAULT_ANSWER
    assert "tool_calls" not in choice["message"]


async def test_no_tool_call_without_tools_even_if_asked(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "call the tool"}]}
    r = await client.post(CHAT, json=body)
    assert r.json()["choices"][0]["message"]["content"] == DEFAULT_ANSWER


async def test_allowed_tools_restricts_the_choice(client: httpx.AsyncClient) -> None:
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
    }
    body = {"model": "m", "messages": USER_HI, "tools": TOOLS, "tool_choice": choice}
    assert_tool_call((await client.post(CHAT, json=body)).json(), "get_weather")


async def test_streamed_tool_call(client: httpx.AsyncClient) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "call get_weather please"}],
        "tools": TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse_chunks(await client.post(CHAT, json=body))
    *call_chunks, usage_chunk = chunks
    first = call_chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    [head] = first["tool_calls"]
    assert head["index"] == 0
    assert head["id"].startswith("call_")
    assert head["type"] == "function"
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    fragments = []
    for chunk in call_chunks[1:]:
        [call] = chunk["choices"][0]["delta"]["tool_calls"]
        assert call["index"] == 0
        assert "id" not in call and "name" not in call["function"]
        fragments.append(call["function"]["arguments"])
    assert len(fragments) >= 3
    jsonschema.validate(orjson.loads("".join(fragments)), WEATHER_PARAMS)
    finish = [c["choices"][0]["finish_reason"] for c in call_chunks]
    assert finish == [None] * (len(call_chunks) - 1) + ["tool_calls"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(call_chunks)


@pytest.mark.parametrize("behavior", ["tool_call", "text_then_tool_call", "parallel_tool_calls"])
@pytest.mark.parametrize("tools", [None, [{"type": "custom", "custom": {"name": "grammar"}}]])
async def test_tool_behaviors_without_function_tools_are_400(
    client: httpx.AsyncClient, behavior: str, tools: Any
) -> None:
    for stream in (False, True):
        body = {"model": "m", "messages": USER_HI, "stream": stream, "tools": tools}
        r = await client.post(CHAT, json=body, headers={"X-Mock-Behavior": behavior})
        error = assert_error(
            r, 400, type="invalid_request_error", param="tools", code="no_tools_offered"
        )
        assert "no tools" in error["message"]
        assert behavior in error["message"]


# ---- text then a tool call, parallel tool calls ---------------------------------------


def generated_arguments(name: str) -> Any:
    """The arguments the mock makes up for the tool ``name`` of ``TOOLS``."""
    return orjson.loads(generate_arguments(TOOL_PARAMS[name]))


def call_tokens(names: list[str]) -> int:
    """The completion tokens counted for calls to ``names``: one per streamed chunk."""
    return sum(1 + len(split_arguments(generate_arguments(TOOL_PARAMS[n]))) for n in names)


def assert_tool_calls(message: dict[str, Any], names: list[str]) -> list[str]:
    """Check the calls of a non-streamed message (names, arguments); their ids."""
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == names
    for call in calls:
        assert call["id"].startswith("call_")
        assert call["type"] == "function"
        arguments = orjson.loads(call["function"]["arguments"])
        assert arguments == generated_arguments(call["function"]["name"])
        jsonschema.validate(arguments, TOOL_PARAMS[call["function"]["name"]])
    return [c["id"] for c in calls]


def streamed_message(choice_chunks: list[dict[str, Any]]) -> tuple[str | None, list[Any]]:
    """The content and the calls ``(id, name, arguments, n_chunks)`` of one streamed choice.

    Checks the order of the deltas: the role in the first only; content deltas before any
    tool-call delta; then each call in turn, its head first (index, id, type, name, empty
    arguments), then its argument fragments (index and arguments only); the finish reason
    ``tool_calls`` on the last chunk only.
    """
    content: list[str] = []
    calls: list[Any] = []
    for n, choice in enumerate(choice_chunks):
        delta = choice["delta"]
        assert ("role" in delta) == (n == 0), delta
        last = n == len(choice_chunks) - 1
        assert choice["finish_reason"] == ("tool_calls" if last else None)
        if "tool_calls" not in delta:
            assert not calls, "content after a tool call"
            content.append(delta["content"])
            continue
        assert delta.get("content") is None
        [call] = delta["tool_calls"]
        if "id" in call:
            assert call["index"] == len(calls)
            assert call["id"].startswith("call_")
            assert call["type"] == "function"
            assert call["function"]["arguments"] == ""
            calls.append([call["id"], call["function"]["name"], [], 1])
        else:
            assert call["index"] == len(calls) - 1, "a call's fragments follow its head"
            assert set(call) == {"index", "function"}
            assert set(call["function"]) == {"arguments"}
            calls[-1][2].append(call["function"]["arguments"])
            calls[-1][3] += 1
    parsed = [(i, name, orjson.loads("".join(f)), k) for i, name, f, k in calls]
    return ("".join(content) if content else None), parsed


def choice_chunks(chunks: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The choice ``index`` of each chunk that carries it."""
    return [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]


TEXT_THEN_CALL = {"X-Mock-Behavior": "text_then_tool_call"}
PARALLEL = {"X-Mock-Behavior": "Parallel_Tool_Calls"}
GET_WEATHER_ONLY: dict[str, Any] = {
    "type": "allowed_tools",
    "allowed_tools": {
        "mode": "auto",
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    },
}


@pytest.mark.parametrize(
    "prompt, extra, expected",
    [
        ("Hello", {}, "lookup_order"),
        ("What does get_weather say?", {}, "get_weather"),
        (
            "Hello",
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            "get_weather",
        ),
        ("Hello", {"tool_choice": GET_WEATHER_ONLY}, "get_weather"),
        ("Hello", {"tool_choice": "none", "parallel_tool_calls": False}, "lookup_order"),
    ],
)
async def test_text_then_tool_call(
    client: httpx.AsyncClient, prompt: str, extra: dict[str, Any], expected: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "tools": TOOLS}
    r = await client.post(CHAT, json=body | extra, headers=TEXT_THEN_CALL)
    assert r.status_code == 200, r.text
    body = r.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"] == TOOL_PREAMBLE
    assert message["refusal"] is None
    assert_tool_calls(message, [expected])
    usage = body["usage"]
    assert usage["completion_tokens"] == len(TOOL_PREAMBLE_TOKENS) + call_tokens([expected])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_text_then_tool_call_streamed(client: httpx.AsyncClient) -> None:
    body = {
        "model": "m",
        "messages": USER_HI,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse_chunks(await client.post(CHAT, json=body, headers=TEXT_THEN_CALL))
    *choice_chunks_, usage_chunk = chunks
    mine = [c["choices"][0] for c in choice_chunks_]
    assert [m["delta"].get("content") for m in mine[: len(TOOL_PREAMBLE_TOKENS)]] == list(
        TOOL_PREAMBLE_TOKENS
    )
    assert mine[0]["delta"] == {"role": "assistant", "content": "Let ", "refusal": None}
    assert set(mine[len(TOOL_PREAMBLE_TOKENS)]["delta"]) == {"tool_calls"}
    content, calls = streamed_message(mine)
    assert content == TOOL_PREAMBLE
    [(_, name, arguments, n_chunks)] = calls
    assert name == "get_weather"
    assert arguments == generated_arguments("get_weather")
    assert n_chunks > 2
    assert len(mine) == len(TOOL_PREAMBLE_TOKENS) + n_chunks
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(mine)
    assert usage_chunk["usage"]["completion_tokens"] == (
        len(TOOL_PREAMBLE_TOKENS) + call_tokens(["get_weather"])
    )


async def test_text_then_tool_call_stream_respects_latency() -> None:
    app = create_app(MockSettings(ttft_ms=40, tpot_ms=10))
    body = {"model": "m", "messages": USER_HI, "tools": TOOLS, "stream": True}
    start, bodies = await timed_stream(app, body, TEXT_THEN_CALL)
    assert len(bodies) == len(TOOL_PREAMBLE_TOKENS) + call_tokens(["lookup_order"])
    assert bodies[-1][1].endswith(b"data: [DONE]\n\n")
    times = [t for t, _ in bodies]
    assert times[0] - start >= 0.035
    assert times[-1] - times[0] >= 0.010 * (len(times) - 1) * 0.9


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({}, ["lookup_order", "get_weather"]),
        ({"parallel_tool_calls": True}, ["lookup_order", "get_weather"]),
        ({"parallel_tool_calls": False}, ["lookup_order"]),
        ({"tools": TOOLS[::-1]}, ["get_weather", "lookup_order"]),
        ({"tool_choice": "none"}, ["lookup_order", "get_weather"]),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            ["get_weather"],
        ),
        ({"tool_choice": GET_WEATHER_ONLY}, ["get_weather"]),
        (
            {"tools": [{"type": "custom", "custom": {"name": "grammar"}}, *TOOLS]},
            ["lookup_order", "get_weather"],
        ),
    ],
)
async def test_parallel_tool_calls(
    client: httpx.AsyncClient, extra: dict[str, Any], expected: list[str]
) -> None:
    request = {"model": "m", "messages": USER_HI, "tools": TOOLS} | extra
    r = await client.post(CHAT, json=request, headers=PARALLEL)
    assert r.status_code == 200, r.text
    body = r.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    ids = assert_tool_calls(message, expected)
    assert len(set(ids)) == len(ids)
    assert body["usage"]["completion_tokens"] == call_tokens(expected)

    stream = request | {"stream": True, "stream_options": {"include_usage": True}}
    *chunks, usage_chunk = sse_chunks(await client.post(CHAT, json=stream, headers=PARALLEL))
    mine = choice_chunks(chunks, 0)
    assert len(mine) == len(chunks)
    assert mine[0]["delta"]["content"] is None
    content, calls = streamed_message(mine)
    assert content is None
    assert [name for _, name, _, _ in calls] == expected
    assert [arguments for _, _, arguments, _ in calls] == [generated_arguments(n) for n in expected]
    assert len({call_id for call_id, _, _, _ in calls}) == len(expected)
    assert usage_chunk["usage"]["completion_tokens"] == len(chunks) == call_tokens(expected)


@pytest.mark.parametrize("headers", [TEXT_THEN_CALL, PARALLEL])
async def test_tool_behaviors_with_n_choices(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    parallel = headers is PARALLEL
    expected = ["lookup_order", "get_weather"] if parallel else ["lookup_order"]
    content = None if parallel else TOOL_PREAMBLE
    request = {"model": "m", "messages": USER_HI, "tools": TOOLS, "n": 2}
    body = (await client.post(CHAT, json=request, headers=headers)).json()
    validate_openapi(body, "CreateChatCompletionResponse")
    ids = []
    for choice in body["choices"]:
        assert choice["message"]["content"] == content
        ids += assert_tool_calls(choice["message"], expected)
    assert len(set(ids)) == 2 * len(expected)

    chunks = sse_chunks(await client.post(CHAT, json=request | {"stream": True}, headers=headers))
    streamed_ids = []
    for index in (0, 1):
        streamed_content, calls = streamed_message(choice_chunks(chunks, index))
        assert streamed_content == content
        assert [name for _, name, _, _ in calls] == expected
        streamed_ids += [call_id for call_id, _, _, _ in calls]
    assert len(set(streamed_ids)) == 2 * len(expected)


# ---- error behaviours -----------------------------------------------------------------


async def test_error_429(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT,
        json={"model": "m", "messages": USER_HI},
        headers={"X-Mock-Behavior": "Error-429"},
    )
    assert_error(r, 429, type="requests", code="rate_limit_exceeded")
    assert r.headers["retry-after"] == "7"
    assert r.headers["x-mock-received-model"] == "m"


async def test_error_500(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT,
        json={"model": "m", "messages": USER_HI, "stream": True},
        headers={"X-Mock-Behavior": "error-500"},
    )
    assert_error(r, 500, type="server_error")
    assert r.headers["content-type"] == "application/json"


async def test_unknown_behavior_is_400_naming_the_header(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT,
        json={"model": "m", "messages": USER_HI},
        headers={"X-Mock-Behavior": "explode"},
    )
    error = assert_error(r, 400, type="invalid_request_error")
    assert "X-Mock-Behavior" in error["message"]
    assert "explode" in error["message"]


async def test_hang_never_answers_and_does_not_block(client: httpx.AsyncClient) -> None:
    stats_before = (await client.get("/mock/stats")).json()
    assert stats_before["hanging"] == 0
    hanging = asyncio.create_task(
        client.post(
            CHAT, json={"model": "m", "messages": USER_HI}, headers={"X-Mock-Behavior": "hang"}
        )
    )
    await asyncio.sleep(0.05)
    assert (await client.get("/mock/stats")).json()["hanging"] == 1
    r = await asyncio.wait_for(client.post(CHAT, json={"model": "m", "messages": USER_HI}), 5)
    assert r.status_code == 200
    assert not hanging.done()
    hanging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hanging
    assert (await client.get("/mock/stats")).json()["hanging"] == 0


# ---- latency overrides ----------------------------------------------------------------


async def test_latency_headers_override_settings(client: httpx.AsyncClient) -> None:
    start = time.monotonic()
    r = await client.post(
        CHAT, json={"model": "m", "messages": USER_HI}, headers={"X-Mock-TTFT-Ms": "120"}
    )
    assert r.status_code == 200
    assert time.monotonic() - start >= 0.11
    start = time.monotonic()
    r = await client.post(
        CHAT,
        json={"model": "m", "messages": USER_HI, "max_tokens": 4},
        headers={"X-Mock-TPOT-Ms": "30"},
    )
    assert r.status_code == 200
    assert time.monotonic() - start >= 4 * 0.03 * 0.9


async def test_settings_latency_is_used() -> None:
    app = create_app(MockSettings(ttft_ms=100))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
        start = time.monotonic()
        r = await c.post(CHAT, json={"model": "m", "messages": USER_HI})
        assert r.status_code == 200
        assert time.monotonic() - start >= 0.09


async def test_zero_latency_header_overrides_a_slow_setting() -> None:
    app = create_app(MockSettings(ttft_ms=3000, tpot_ms=3000))
    headers = {"X-Mock-TTFT-Ms": "0", "X-Mock-TPOT-Ms": "0"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
        body = {"model": "m", "messages": USER_HI}
        r = await asyncio.wait_for(c.post(CHAT, json=body, headers=headers), 2.5)
        assert r.status_code == 200
        r = await asyncio.wait_for(c.post(CHAT, json=body | {"stream": True}, headers=headers), 2.5)
        deltas = [chunk["choices"][0]["delta"]["content"] for chunk in sse_chunks(r)]
        assert "".join(deltas) == DEFAULT_ANSWER


@pytest.mark.parametrize("header", ["X-Mock-TTFT-Ms", "X-Mock-TPOT-Ms"])
@pytest.mark.parametrize("value", ["fast", "-5", "nan", "inf"])
async def test_bad_latency_header_is_400(
    client: httpx.AsyncClient, header: str, value: str
) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": USER_HI}, headers={header: value})
    error = assert_error(r, 400, type="invalid_request_error")
    assert header in error["message"]


# ---- request validation ---------------------------------------------------------------


async def test_invalid_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, content=b'{"model": "m", "messages": [', headers={})
    error = assert_error(r, 400, type="invalid_request_error", param=None)
    assert "JSON" in error["message"]
    assert r.headers["x-mock-received-model"] == ""


@pytest.mark.parametrize(
    "body, param, code",
    [
        ({"messages": USER_HI}, "model", "missing_required_parameter"),
        ({"model": 3, "messages": USER_HI}, "model", "invalid_type"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "empty_array"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", None),
        ({"model": "m", "messages": [{"role": "robot"}]}, "messages[0].role", "invalid_value"),
        ({"model": "m", "messages": USER_HI, "stream": "yes"}, "stream", "invalid_type"),
        ({"model": "m", "messages": USER_HI, "n": 0}, "n", "integer_below_min_value"),
        ({"model": "m", "messages": USER_HI, "n": 1000}, "n", "integer_above_max_value"),
        ({"model": "m", "messages": USER_HI, "max_tokens": "5"}, "max_tokens", "invalid_type"),
        (
            {"model": "m", "messages": USER_HI, "stream_options": {"include_usage": True}},
            "stream_options",
            None,
        ),
        ({"model": "m", "messages": USER_HI, "tools": {}}, "tools", "invalid_type"),
        (
            {"model": "m", "messages": USER_HI, "parallel_tool_calls": "no"},
            "parallel_tool_calls",
            "invalid_type",
        ),
        ({"model": "m", "messages": USER_HI, "tool_choice": "required"}, "tool_choice", None),
        (
            {"model": "m", "messages": USER_HI, "tools": TOOLS, "tool_choice": "always"},
            "tool_choice",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": USER_HI,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
            "invalid_value",
        ),
    ],
)
async def test_invalid_requests_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, code: str | None
) -> None:
    r = await client.post(CHAT, json=body)
    error = assert_error(r, 400, type="invalid_request_error", param=param)
    if code is not None:
        assert error["code"] == code
    assert param in error["message"] or param.split(".")[-1] in error["message"]


async def test_non_object_body_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(CHAT, json=[1, 2]), 400, type="invalid_request_error")


# ---- what the upstream received -------------------------------------------------------


async def test_received_headers(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini", "messages": USER_HI}
    r = await client.post(CHAT, json=body, headers={"Authorization": "Bearer sk-secret"})
    assert r.headers["x-mock-received-model"] == "gpt-4o-mini"
    assert r.headers["x-mock-received-authorization-present"] == "true"
    expected = hashlib.sha256(b"Bearer sk-secret").hexdigest()
    assert r.headers["x-mock-received-authorization-sha256"] == expected
    assert all("sk-secret" not in v for v in r.headers.values())

    r = await client.post(CHAT, json=body | {"stream": True})
    assert r.headers["x-mock-received-model"] == "gpt-4o-mini"
    assert r.headers["x-mock-received-authorization-present"] == "false"
    assert "x-mock-received-authorization-sha256" not in r.headers

    r = await client.post(CHAT, json={"model": "modèle\r\nX-Evil: 1", "messages": USER_HI})
    assert r.status_code == 200
    assert "x-evil" not in r.headers
    assert r.json()["model"] == "modèle\r\nX-Evil: 1"


async def test_stats_and_reset(client: httpx.AsyncClient) -> None:
    empty = {
        "requests": 0,
        "streamed": 0,
        "hanging": 0,
        "by_behavior": {},
        "last_request": None,
        "authorizations": [],
    }
    assert (await client.get("/mock/stats")).json() == empty
    await client.post(CHAT, json={"model": "a", "messages": USER_HI})
    await client.post(CHAT, json={"model": "b", "messages": USER_HI, "stream": True})
    await client.post(CHAT, json={"model": "c"})  # invalid: counted too
    await client.post(
        CHAT, json={"model": "d", "messages": USER_HI}, headers={"x-mock-behavior": "error-429"}
    )
    last = {"model": "e", "messages": USER_HI, "stream": True}
    await client.post(CHAT, json=last, headers={"x-mock-behavior": "echo"})
    await client.get("/v1/models")  # not a chat request
    stats = (await client.get("/mock/stats")).json()
    assert stats["requests"] == 5
    assert stats["streamed"] == 2
    assert stats["by_behavior"] == {"default": 3, "error-429": 1, "echo": 1}
    assert stats["last_request"] == last
    assert stats["authorizations"] == [""]  # no Authorization header was sent
    r = await client.post("/mock/reset")
    assert r.status_code == 200
    assert (await client.get("/mock/stats")).json() == empty


# ---- models, health, unknown routes ---------------------------------------------------


async def test_list_models() -> None:
    app = create_app(MockSettings(model_ids=("alpha", "beta", "org/gamma")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
        r = await c.get("/v1/models")
        body = r.json()
        validate_openapi(body, "ListModelsResponse")
        assert [m["id"] for m in body["data"]] == ["alpha", "beta", "org/gamma"]
        assert all(m["owned_by"] == "weir-mock" and m["object"] == "model" for m in body["data"])
        for model_id in ("beta", "org/gamma"):
            r = await c.get(f"/v1/models/{model_id}")
            assert r.status_code == 200
            validate_openapi(r.json(), "Model")
            assert r.json()["id"] == model_id
        r = await c.get("/v1/models/mock-gpt")
        assert_error(r, 404, code="model_not_found", type="invalid_request_error")


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_unknown_path_is_404_envelope(client: httpx.AsyncClient) -> None:
    r = await client.get("/x")
    error = assert_error(r, 404, type="invalid_request_error", code="unknown_url")
    assert error["message"] == "Invalid URL (GET /x)"
    r = await client.post("/v1/completions", json={})
    assert assert_error(r, 404)["message"] == "Invalid URL (POST /v1/completions)"


async def test_wrong_method_is_405_envelope(client: httpx.AsyncClient) -> None:
    r = await client.get(CHAT)
    assert_error(r, 405, type="invalid_request_error")
    assert "POST" in r.headers["allow"]
    r = await client.delete("/v1/models")
    assert_error(r, 405)
