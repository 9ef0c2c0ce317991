"""Usage and cost through the real stack: non-streamed answers carry usage and cost in
headers and a `weir` object; streams are asked for usage the client never sees; what a
provider does not report is estimated and marked; every record holds usage and cost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.integration.harness import WeirUp, copy_quickstart, record_of, weir_up
from tests.openapi_schema import validate_openapi

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Say hello."}]
# examples/quickstart/backends.yaml: mock-gpt, USD per 1M tokens
INPUT, CACHED_INPUT, OUTPUT = 0.15, 0.075, 0.60


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("usage")
    with weir_up(copy_quickstart(root / "config"), root / "state") as up:
        yield up


def client(stack: WeirUp, slug: str = "chat") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint("demo", slug), api_key=stack.key, max_retries=0)


def cost_of(prompt: int, completion: int, cached: int = 0) -> float:
    return ((prompt - cached) * INPUT + cached * CACHED_INPUT + completion * OUTPUT) / 1e6


def test_a_completion_carries_usage_and_cost_in_headers_and_its_weir_object(
    stack: WeirUp,
) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, extra_headers={"X-Mock-Cached-Tokens": "4"}
    )
    completion = raw.parse()
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 4
    headers = raw.headers
    assert headers["x-weir-usage-prompt-tokens"] == str(usage.prompt_tokens)
    assert headers["x-weir-usage-completion-tokens"] == str(usage.completion_tokens)
    assert headers["x-weir-usage-total-tokens"] == str(usage.total_tokens)
    assert headers["x-weir-usage-cached-tokens"] == "4"
    assert "x-weir-usage-estimated" not in headers
    expected = cost_of(usage.prompt_tokens, usage.completion_tokens, 4)
    assert float(headers["x-weir-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    body: dict[str, Any] = raw.http_response.json()
    validate_openapi(body, "CreateChatCompletionResponse")
    weir = body["weir"]
    assert weir == completion.model_extra["weir"]  # the SDK keeps it too
    assert weir["request_id"] == headers["x-request-id"]
    assert (weir["backend"], weir["model"], weir["service_tier"]) == ("mock", "mock-gpt", None)
    assert weir["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert 0 < weir["latency_ms"] < 10_000
    assert weir["usage"]["cached_tokens"] == 4 and weir["usage"]["estimated"] is False
    record = record_of(stack, headers["x-request-id"])
    assert (record["prompt_tokens"], record["completion_tokens"], record["cached_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        4,
    )
    assert record["usage_estimated"] == 0
    assert record["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert record["tier"] is None


def test_on_a_tier_the_answer_and_record_name_it(stack: WeirUp) -> None:
    raw = client(stack, "trial").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, max_tokens=20
    )
    assert raw.headers["x-weir-service-tier"] == "trial"
    assert raw.http_response.json()["weir"]["service_tier"] == "trial"
    assert raw.parse().service_tier == "default"  # the provider's, as the OpenAPI enum allows
    assert record_of(stack, raw.headers["x-request-id"])["tier"] == "trial"


def test_a_stream_is_asked_for_usage_the_client_never_sees_and_its_record_has_it(
    stack: WeirUp,
) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, stream=True
    )
    chunks = list(raw.parse())
    assert chunks and all(chunk.choices and chunk.usage is None for chunk in chunks)
    record = record_of(stack, raw.headers["x-request-id"])
    assert record["completion_tokens"] == 20  # the mock's answer, as its usage chunk said
    assert record["usage_estimated"] == 0
    assert record["cost_usd"] == pytest.approx(
        cost_of(record["prompt_tokens"], record["completion_tokens"]), rel=1e-6
    )


def test_a_stream_whose_client_asked_for_usage_still_gets_it(stack: WeirUp) -> None:
    stream = client(stack).chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 20


@pytest.mark.parametrize("stream", [False, True])
def test_usage_a_provider_does_not_report_is_estimated_and_marked(
    stack: WeirUp, stream: bool
) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, stream=stream, extra_headers={"X-Mock-Usage": "none"}
    )
    if stream:
        assert all(chunk.usage is None for chunk in raw.parse())
    else:
        assert raw.headers["x-weir-usage-estimated"] == "true"
        weir = raw.http_response.json()["weir"]
        assert weir["usage"]["estimated"] is True and weir["usage"]["completion_tokens"] > 0
    record = record_of(stack, raw.headers["x-request-id"])
    assert record["usage_estimated"] == 1
    assert record["prompt_tokens"] > 0
    # The mock's answer is 20 tokens: a chunk each when streamed; about 4 characters each.
    assert 10 <= record["completion_tokens"] <= 30
    assert record["cost_usd"] > 0


def test_a_restored_answer_also_carries_its_weir_object(stack: WeirUp) -> None:
    """demo/chat anonymises: the answer is rebuilt with the values restored, and the
    usage and cost are added to that one."""
    raw = client(stack).chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "My name is Anna Kowalska."}],
        extra_headers={"X-Mock-Behavior": "echo"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "My name is Anna Kowalska."
    assert raw.http_response.json()["weir"]["usage"]["total_tokens"] > 0
    assert float(raw.headers["x-weir-cost-usd"]) > 0


def test_a_provider_error_carries_no_usage(stack: WeirUp) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        client(stack).chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers={"X-Mock-Behavior": "error-500"}
        )
    response = raised.value.response
    assert "x-weir-cost-usd" not in response.headers
    record = record_of(stack, response.headers["x-request-id"])
    assert record["prompt_tokens"] is None and record["cost_usd"] is None
