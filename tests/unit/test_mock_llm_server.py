"""The mock LLM served by uvicorn (``serve``) in a subprocess, driven by the openai SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.openapi_schema import validate_openapi
from weir.mock_llm.tokens import DEFAULT_ANSWER, DEFAULT_ANSWER_TOKENS, TOOL_PREAMBLE

FAST = {"X-Mock-TPOT-Ms": "0"}  # the server's default is tpot_ms=30
MESSAGES: Any = [{"role": "user", "content": "Say something"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    }
]
LOOKUP_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}

GENERATED_ARGUMENTS = {
    "get_weather": {"city": "Paris", "unit": "celsius"},
    "lookup_order": {"order_id": "example order_id"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(settings: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    code = (
        "from weir.mock_llm import MockSettings, serve\n"
        f"serve('127.0.0.1', {port}, MockSettings({settings}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, "the mock LLM exited at startup"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the mock LLM did not start"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, base = _start_server("tpot_ms=30.0, retry_after_s=2")
    try:
        yield base
    finally:
        assert _stop(proc) == 0, "the mock LLM must exit cleanly on SIGTERM"


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0, timeout=10)


def test_non_streamed(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=MESSAGES, extra_headers=FAST
    )
    assert raw.headers["x-mock-received-model"] == "mock-gpt"
    assert raw.headers["x-mock-received-authorization-present"] == "true"
    completion = raw.parse()
    validate_openapi(
        completion.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionResponse"
    )
    assert completion.model == "mock-gpt"
    assert completion.choices[0].message.content == DEFAULT_ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(DEFAULT_ANSWER_TOKENS)


def test_streamed_tokens_arrive_over_time(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="mock-gpt-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals: list[float] = []
    pieces: list[str] = []
    usage_chunks = []
    for chunk in stream:
        arrived = time.monotonic()  # before validating: the first validation is slow
        validate_openapi(
            chunk.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionStreamResponse"
        )
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(arrived)
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            assert chunk.choices == []
            usage_chunks.append(chunk.usage)
    assert "".join(pieces) == DEFAULT_ANSWER
    assert len(pieces) == len(DEFAULT_ANSWER_TOKENS) == 20
    # 19 gaps of 30 ms: the last token comes ~0.57 s after the first (not all at once).
    assert arrivals[-1] - arrivals[0] > 0.3
    assert arrivals[len(arrivals) // 2] - arrivals[0] > 0.1
    [usage] = usage_chunks
    assert usage.completion_tokens == 20
    assert usage.total_tokens == usage.prompt_tokens + 20


def test_tool_calls(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "What's the weather? Use the tool."}],
        tools=TOOLS,
        extra_headers=FAST,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit"}
    assert arguments["unit"] == "celsius"

    stream = client.chat.completions.create(
        model="mock-gpt",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice="required",
        stream=True,
        extra_headers=FAST,
    )
    fragments = []
    names = []
    finish = None
    for chunk in stream:
        choice_chunk = chunk.choices[0]
        for delta_call in choice_chunk.delta.tool_calls or []:
            assert delta_call.index == 0
            if delta_call.function and delta_call.function.name:
                names.append(delta_call.function.name)
            if delta_call.function and delta_call.function.arguments:
                fragments.append(delta_call.function.arguments)
        finish = choice_chunk.finish_reason or finish
    assert names == ["get_weather"]
    assert len(fragments) > 1
    assert json.loads("".join(fragments)) == arguments
    assert finish == "tool_calls"


@pytest.mark.parametrize(
    "behavior, content, names",
    [
        ("text_then_tool_call", TOOL_PREAMBLE, ["get_weather"]),
        ("parallel_tool_calls", None, ["get_weather", "lookup_order"]),
    ],
)
def test_text_then_tool_call_and_parallel_calls(
    client: openai.OpenAI, behavior: str, content: str | None, names: list[str]
) -> None:
    """The SDK's stream helper rebuilds from the deltas the message sent whole."""
    tools = [*TOOLS, LOOKUP_TOOL]
    headers = FAST | {"X-Mock-Behavior": behavior}
    completion = client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, tools=tools, extra_headers=headers
    )
    with client.chat.completions.stream(
        model="mock-gpt",
        messages=MESSAGES,
        tools=tools,
        stream_options={"include_usage": True},
        extra_headers=headers,
    ) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_completion()
    deltas = [k for k in kinds if k in ("content.delta", "tool_calls.function.arguments.delta")]
    assert deltas == sorted(deltas, key=lambda kind: kind != "content.delta")  # content first
    assert ("content.delta" in deltas) == (content is not None)
    for final in (completion, streamed):
        [choice] = final.choices
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == content
        calls = choice.message.tool_calls or []
        functions = [call.function for call in calls if call.type == "function"]
        assert [function.name for function in functions] == names
        arguments = {f.name: json.loads(f.arguments) for f in functions}
        assert arguments == {name: GENERATED_ARGUMENTS[name] for name in names}
        assert len({call.id for call in calls}) == len(names)
    assert streamed.usage is not None and completion.usage is not None
    assert streamed.usage.completion_tokens == completion.usage.completion_tokens


def test_error_behaviors_raise_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as rate_limited:
        client.chat.completions.create(
            model="mock-gpt", messages=MESSAGES, extra_headers={"X-Mock-Behavior": "error-429"}
        )
    assert rate_limited.value.status_code == 429
    assert rate_limited.value.response.headers["retry-after"] == "2"
    assert rate_limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model="mock-gpt", messages=MESSAGES, extra_headers={"X-Mock-Behavior": "error-500"}
        )
    assert failed.value.status_code == 500
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="mock-gpt", messages=[])
    assert bad.value.param == "messages"


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["mock-gpt", "mock-gpt-mini"]
    assert client.models.retrieve("mock-gpt-mini").owned_by == "weir-mock"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


async def test_hang_does_not_block_other_requests(server: str) -> None:
    async with (
        openai.AsyncOpenAI(
            base_url=f"{server}/v1", api_key="x", max_retries=0, timeout=10
        ) as client,
        httpx.AsyncClient(base_url=server) as http,
    ):
        hanging = asyncio.create_task(
            client.chat.completions.create(
                model="mock-gpt",
                messages=MESSAGES,
                extra_headers={"X-Mock-Behavior": "hang"},
                timeout=5,
            )
        )
        for _ in range(100):
            if (await http.get("/mock/stats")).json()["hanging"] == 1:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the hang request never reached the mock")
        completion = await client.chat.completions.create(
            model="mock-gpt", messages=MESSAGES, extra_headers=FAST
        )
        assert completion.choices[0].message.content == DEFAULT_ANSWER
        assert not hanging.done()
        hanging.cancel()  # the client goes away: the mock must notice the disconnect
        with pytest.raises(asyncio.CancelledError):
            await hanging
        for _ in range(100):
            if (await http.get("/mock/stats")).json()["hanging"] == 0:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the mock did not notice that the hanging client disconnected")


def test_sigterm_is_graceful() -> None:
    """On SIGTERM a stream in flight finishes, a hanging request gets a 503, exit code 0."""
    proc, base = _start_server("tpot_ms=20.0")
    try:
        hang_result: list[httpx.Response] = []
        hanging = threading.Thread(
            target=lambda: hang_result.append(
                httpx.post(
                    f"{base}/v1/chat/completions",
                    json={"model": "m", "messages": MESSAGES},
                    headers={"X-Mock-Behavior": "hang"},
                    timeout=10,
                )
            )
        )
        hanging.start()
        deadline = time.monotonic() + 5
        while httpx.get(f"{base}/mock/stats").json()["hanging"] != 1:
            assert time.monotonic() < deadline, "the hang request never reached the mock"
            time.sleep(0.02)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=10)
        stream = client.chat.completions.create(model="mock-gpt", messages=MESSAGES, stream=True)
        iterator = iter(stream)
        pieces = [next(iterator).choices[0].delta.content or ""]
        proc.send_signal(signal.SIGTERM)
        pieces += [chunk.choices[0].delta.content or "" for chunk in iterator]
        assert "".join(pieces) == DEFAULT_ANSWER
        hanging.join(timeout=10)
        [response] = hang_result
        assert response.status_code == 503
        validate_openapi(response.json(), "ErrorResponse")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
