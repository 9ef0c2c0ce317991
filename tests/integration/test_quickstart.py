"""The quickstart through the real stack (`weir up`), called with the official OpenAI SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.integration.harness import WeirUp, copy_quickstart, weir_up
from tests.openapi_schema import validate_openapi

pytestmark = pytest.mark.integration


# A provider nobody listens on (port 9 is discard; nothing serves it here).
UNREACHABLE = """
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: unreachable}
spec:
  baseURL: http://127.0.0.1:9/v1
  models: [{name: ghost-model}]
---
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: unreachable}
spec:
  project: demo
  slug: unreachable
  models: [{name: ghost, targets: [{backend: unreachable, model: ghost-model}]}]
---
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: impatient}
spec:
  baseURL: ${WEIR_MOCK_LLM_URL}
  timeout: 1s
  models: [{name: mock-gpt}]
---
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: impatient}
spec:
  project: demo
  slug: impatient
  models: [{name: mock-gpt, targets: [{backend: impatient, model: mock-gpt}]}]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("quickstart")
    config = copy_quickstart(root / "config")
    (config / "unreachable.yaml").write_text(UNREACHABLE)
    with weir_up(config, root / "state", "--max-request-bytes", str(1024 * 1024)) as up:
        yield up


@pytest.fixture
def client(stack: WeirUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint(), api_key=stack.key, max_retries=0)


def mock_stats(stack: WeirUp) -> dict[str, object]:
    stats: dict[str, object] = httpx.get(f"{stack.mock_url}/mock/stats").json()
    return stats


def test_healthz_is_ok(stack: WeirUp) -> None:
    response = httpx.get(f"{stack.base}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_chat_completion(client: openai.OpenAI, stack: WeirUp) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    validate_openapi(orjson.loads(raw.content), "CreateChatCompletionResponse")
    # The alias was rewritten to the backend's model name, and the client's key stayed home.
    assert raw.headers["x-mock-received-model"] == "mock-gpt-mini"
    assert raw.headers["x-mock-received-authorization-present"] == "false"
    assert raw.headers["x-request-id"]


def test_upstream_receives_the_request_unchanged_apart_from_model(
    client: openai.OpenAI, stack: WeirUp
) -> None:
    text = 'Repeat exactly: ünïcode, quotes " and newlines\nare kept.'
    completion = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": text}],
        temperature=0.3,
        extra_headers={"X-Mock-Behavior": "echo"},
    )
    assert completion.choices[0].message.content == text
    received = mock_stats(stack)["last_request"]
    assert isinstance(received, dict)
    assert received["temperature"] == 0.3
    assert received["model"] == "mock-gpt"


def test_streamed_chat_completion_arrives_token_by_token(
    client: openai.OpenAI, stack: WeirUp
) -> None:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello!"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Mock-TPOT-Ms": "40"},
    )
    arrivals: list[float] = []
    content = ""
    usage = None
    for chunk in stream:
        validate_openapi(
            chunk.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionStreamResponse"
        )
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)
            content += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(arrivals) >= 10
    # Not buffered: the first token arrives long before the last (>= 9 token gaps of 40 ms).
    assert arrivals[-1] - arrivals[0] > 0.3
    assert arrivals[0] < arrivals[-1] / 2
    assert usage is not None and usage.completion_tokens == len(arrivals)
    whole = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )
    assert content == whole.choices[0].message.content


def extproc_messages_sent(stack: WeirUp) -> int:
    stats = httpx.get(f"http://127.0.0.1:{stack.admin_port}/stats?filter=ext_proc").text
    for line in stats.splitlines():
        if line.startswith("http.weir.ext_proc.stream_msgs_sent:"):
            return int(line.split(":")[1])
    raise AssertionError(f"no ext_proc stats in:\n{stats}")


def test_sse_bodies_pass_through_extproc_streamed_and_json_bodies_once_whole(
    client: openai.OpenAI, stack: WeirUp
) -> None:
    # Envoy's own counters: what it sent ext_proc for one request of each kind.
    before = extproc_messages_sent(stack)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    unary = extproc_messages_sent(stack) - before
    # Request headers, request body, response headers, and the answer once, whole
    # (BUFFERED: its usage and cost go in its headers and `weir` object).
    assert unary == 4
    before = extproc_messages_sent(stack)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers={"X-Mock-TPOT-Ms": "5"},
        )
    )
    streamed = extproc_messages_sent(stack) - before
    # The SSE body went to ext_proc chunk by chunk (STREAMED via mode_override).
    assert streamed >= 3 + len(chunks) // 2, (streamed, len(chunks))


def test_stream_response_headers_carry_the_request_id(stack: WeirUp) -> None:
    with httpx.stream(
        "POST",
        f"{stack.endpoint()}/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers=stack.auth,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers
        assert response.headers["x-request-id"]
        body = b"".join(response.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]")


def test_tool_call(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "What is the weather in Warsaw? Call get_weather."}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
    )
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert "city" in orjson.loads(call.function.arguments)  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_models_are_listed(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o", "mock-gpt", "auto"]
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"


def test_unknown_model_endpoint_and_project_are_404_envelopes(
    client: openai.OpenAI, stack: WeirUp
) -> None:
    before = mock_stats(stack)["requests"]
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "model_not_found"
    for path in ("/demo/nope/v1/chat/completions", "/nope/chat/v1/chat/completions"):
        response = httpx.post(
            f"{stack.base}{path}",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            headers=stack.auth,
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"]
        validate_openapi(response.json(), "ErrorResponse")
        assert response.json()["error"]["code"] == "endpoint_not_found"
    # None of these reached the upstream.
    assert mock_stats(stack)["requests"] == before


def test_malformed_json_is_a_400_envelope(stack: WeirUp) -> None:
    response = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        content=b"{oops",
        headers={"content-type": "application/json", **stack.auth},
    )
    assert response.status_code == 400
    validate_openapi(response.json(), "ErrorResponse")
    assert response.json()["error"]["code"] == "invalid_json"


def test_upstream_errors_reach_the_client_as_the_sdk_expects(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Mock-Behavior": "error-429"},
        )
    assert limited.value.response.headers["retry-after"]
    # The provider's own envelope passes unchanged (Envoy's local-reply mapping is only
    # for Envoy's own errors).
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.type == "requests"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Mock-Behavior": "error-500"},
        )


def test_a_client_cannot_pick_the_upstream_cluster_or_route(stack: WeirUp) -> None:
    # x-weir-cluster and x-weir-endpoint are ext_proc's to set; a client's are replaced.
    response = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        headers={
            "x-weir-cluster": "backend-unreachable",
            "x-weir-endpoint": "unreachable",
            **stack.auth,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "mock-gpt"
    unknown = httpx.get(
        f"{stack.endpoint()}/nothing-here",
        headers={"x-weir-cluster": "backend-mock", **stack.auth},
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"


def test_state_dir_holds_the_logs(stack: WeirUp) -> None:
    logs = Path(stack.state_dir) / "logs"
    assert {p.name for p in logs.iterdir()} >= {"controlplane.log", "extproc.log", "envoy.log"}


def test_envoy_own_errors_are_openai_envelopes_too(stack: WeirUp) -> None:
    unreachable = openai.OpenAI(
        base_url=stack.endpoint("demo", "unreachable"), api_key=stack.key, max_retries=0
    )
    with pytest.raises(openai.InternalServerError) as raised:
        unreachable.chat.completions.create(
            model="ghost", messages=[{"role": "user", "content": "x"}]
        )
    assert raised.value.status_code == 503
    for header in ("x-request-id", "x-weir-trace-id", "x-weir-session-id"):
        assert raised.value.response.headers.get(header), header
    assert raised.value.response.headers["x-weir-backend"] == "unreachable"
    envelope = raised.value.response.json()
    validate_openapi(envelope, "ErrorResponse")
    assert envelope["error"]["type"] == "server_error"
    assert "upstream connect error" in envelope["error"]["message"]


def test_a_body_over_the_limit_is_a_413_envelope(stack: WeirUp) -> None:
    before = mock_stats(stack)["requests"]
    huge = "x" * (1024 * 1024 + 1)
    response = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": huge}]},
        headers=stack.auth,
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    validate_openapi(response.json(), "ErrorResponse")
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["x-request-id"]
    # Without a Content-Length (chunked), Envoy's buffer limit answers, as an envelope too.
    chunks = [b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "', huge.encode()]
    chunked = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        content=iter([*chunks, b'"}]}']),
        headers={**stack.auth, "content-type": "application/json"},
    )
    assert chunked.status_code == 413
    validate_openapi(chunked.json(), "ErrorResponse")
    assert chunked.headers["x-request-id"]
    assert chunked.headers.get("x-weir-trace-id"), chunked.headers
    assert mock_stats(stack)["requests"] == before


def test_a_provider_that_hangs_times_out_with_a_504_envelope(stack: WeirUp) -> None:
    started = time.monotonic()
    response = httpx.post(
        f"{stack.endpoint('demo', 'impatient')}/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-Mock-Behavior": "hang", **stack.auth},
        timeout=30,
    )
    assert response.status_code == 504
    assert time.monotonic() - started < 10  # the Backend's 1 s timeout, not the client's
    assert response.headers.get("x-weir-trace-id") and response.headers.get("x-weir-backend")
    validate_openapi(response.json(), "ErrorResponse")
    assert response.json()["error"]["type"] == "server_error"
