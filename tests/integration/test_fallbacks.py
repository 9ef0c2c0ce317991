"""Fallbacks through the real stack, with a mock LLM per backend: one answering 500, one
429, one too slow to send its first byte, one healthy. A request goes to the next
candidate (its body, path and key rewritten for that backend) within the tier's retry
budget; failing candidates are ejected by outlier detection; a stream is never retried
once its first byte reached the client."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.integration.harness import (
    REPO,
    WeirUp,
    copy_quickstart,
    record_of,
    start_mock_llm,
    weir_up,
)

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Say hello."}]
HEALTHY_KEY = "sk-healthy-provider-5d1c"
FAILING_KEY = "sk-failing-provider-9a7e"


@dataclass
class Mocks:
    urls: dict[str, str]

    def requests(self, name: str) -> int:
        stats = httpx.get(self.urls[name].removesuffix("/v1") + "/mock/stats").json()
        count: int = stats["requests"]
        return count

    def last_model(self, name: str) -> str:
        stats = httpx.get(self.urls[name].removesuffix("/v1") + "/mock/stats").json()
        model: str = stats["last_request"]["model"]
        return model


@pytest.fixture(scope="module")
def mocks() -> Iterator[Mocks]:
    behaviors = {
        "failing": ["--behavior", "error-500"],
        "limited": ["--behavior", "error-429"],
        "slow": ["--ttft-ms", "3000"],
        "healthy": ["--tpot-ms", "5"],
    }
    processes, urls = [], {}
    try:
        for name, options in behaviors.items():
            process, urls[name] = start_mock_llm(name, *options)
            processes.append(process)
        yield Mocks(urls)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mocks: Mocks) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("fallbacks")
    config = copy_quickstart(root / "config")
    shutil.copy(REPO / "tests" / "fixtures" / "fallbacks" / "fallbacks.yaml", config)
    env = {f"{name.upper()}_URL": url for name, url in mocks.urls.items()}
    env |= {"HEALTHY_KEY": HEALTHY_KEY, "FAILING_KEY": FAILING_KEY}
    with weir_up(config, root / "state", env={**os.environ, **env}) as up:
        yield up


def client(stack: WeirUp, slug: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint("demo", slug), api_key=stack.key, max_retries=0)


def test_a_request_falls_through_every_failure_to_the_healthy_candidate(
    stack: WeirUp, mocks: Mocks
) -> None:
    before = {name: mocks.requests(name) for name in mocks.urls}
    raw = client(stack, "resilient").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    after = {name: mocks.requests(name) for name in mocks.urls}
    # 500, then 429, then no answer within firstByte (1 s), then the answer.
    assert {name: after[name] - before[name] for name in after} == {
        "failing": 1,
        "limited": 1,
        "slow": 1,
        "healthy": 1,
    }
    assert raw.headers["x-envoy-attempt-count"] == "4"
    assert raw.headers["x-weir-backend"] == "healthy"
    assert "x-weir-candidate" not in raw.headers  # Weir's own, consumed
    # Each attempt was rewritten for its backend: its model name, its key.
    assert mocks.last_model("slow") == "slow-gpt"
    assert raw.headers["x-mock-received-model"] == "healthy-gpt"
    expected = hashlib.sha256(f"Bearer {HEALTHY_KEY}".encode()).hexdigest()
    assert raw.headers["x-mock-received-authorization-sha256"] == expected
    # Usage and cost are the candidate's that answered.
    weir = raw.http_response.json()["weir"]
    assert (weir["backend"], weir["model"]) == ("healthy", "healthy-gpt")
    usage = completion.usage
    assert usage is not None
    cost = (usage.prompt_tokens * 1 + usage.completion_tokens * 2) / 1e6
    assert weir["cost_usd"] == pytest.approx(cost, rel=1e-6)
    record = record_of(stack, raw.headers["x-request-id"])
    assert (record["backend"], record["served_model"], record["attempts"]) == (
        "healthy",
        "healthy-gpt",
        4,
    )


def test_a_stream_falls_back_before_its_first_byte(stack: WeirUp, mocks: Mocks) -> None:
    healthy = mocks.requests("healthy")
    raw = client(stack, "streams").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, stream=True
    )
    assert raw.headers["x-envoy-attempt-count"] == "3"  # 500, 429, then the stream
    assert raw.headers["x-weir-backend"] == "healthy"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text.startswith("This is a mock response")
    assert mocks.requests("healthy") == healthy + 1


def test_the_retry_budget_bounds_the_attempts(stack: WeirUp, mocks: Mocks) -> None:
    """One retry: the 500 then the 429, which the client gets; the healthy candidate is
    never reached."""
    healthy = mocks.requests("healthy")
    with pytest.raises(openai.RateLimitError) as raised:
        client(stack, "budget").chat.completions.create(model="gpt-4o", messages=HELLO)
    assert raised.value.response.headers["x-envoy-attempt-count"] == "2"
    assert mocks.requests("healthy") == healthy


def test_a_failing_candidate_is_ejected_and_skipped(stack: WeirUp, mocks: Mocks) -> None:
    """After 3 answers in a row that are 5xx, outlier detection ejects the failing
    provider: later requests go straight to the next candidate."""
    attempts = []
    for _ in range(5):
        raw = client(stack, "ejection").chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HELLO
        )
        attempts.append(raw.headers["x-envoy-attempt-count"])
    assert attempts[:3] == ["2", "2", "2"]
    assert attempts[3:] == ["1", "1"]
    failing = mocks.requests("failing")
    client(stack, "ejection").chat.completions.create(model="gpt-4o", messages=HELLO)
    assert mocks.requests("failing") == failing


def test_a_stream_that_stalls_after_its_first_byte_is_cut_not_retried(
    stack: WeirUp, mocks: Mocks
) -> None:
    limited = mocks.requests("limited")
    started = time.monotonic()
    received = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):  # the stream ends unfinished
        stream = client(stack, "stall").chat.completions.create(
            model="gpt-4o",
            messages=HELLO,
            stream=True,
            extra_headers={"X-Mock-TPOT-Ms": "3000"},  # 3 s between tokens: over streamIdle
        )
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 1  # the first token arrived, then nothing for 1 s
    assert time.monotonic() - started < 3
    assert mocks.requests("limited") == limited  # no second attempt


def test_the_envoy_side_of_the_tiers(stack: WeirUp) -> None:
    """Route timeouts, retry policy and priority from the tier; outlier detection and
    circuit breakers with the retry budget on the candidates' cluster."""
    dump = httpx.get(f"http://127.0.0.1:{stack.admin_port}/config_dump").json()
    text = str(dump)
    assert "fallback-demo-resilient-0" in text
    routes = [
        route
        for config in dump["configs"]
        if "dynamic_route_configs" in config
        for route_config in config["dynamic_route_configs"]
        for host in route_config["route_config"]["virtual_hosts"]
        for route in host["routes"]
    ]
    by_name = {route["name"]: route["route"] for route in routes if "route" in route}
    resilient = by_name["endpoint-demo-resilient-fallback"]
    assert resilient["timeout"] == "30s"
    assert resilient["priority"] == "HIGH"
    policy = resilient["retry_policy"]
    assert policy["num_retries"] == 3
    assert policy["per_try_timeout"] == "1s"
    assert policy["retriable_status_codes"] == [429]
    streams = by_name["endpoint-demo-resilient-fallback-stream"]["retry_policy"]
    assert streams["per_try_idle_timeout"] == "1s"
    assert by_name["endpoint-demo-budget-stream"]["idle_timeout"] == "1s"
    clusters = {
        c["cluster"]["name"]: c["cluster"]
        for config in dump["configs"]
        if "dynamic_active_clusters" in config
        for c in config["dynamic_active_clusters"]
    }
    candidates = clusters["fallback-demo-resilient-0"]
    assert candidates["outlier_detection"]["consecutive_5xx"] == 3
    thresholds = candidates["circuit_breakers"]["thresholds"]
    assert {t.get("priority", "DEFAULT") for t in thresholds} == {"DEFAULT", "HIGH"}
    assert all(t["retry_budget"]["budget_percent"]["value"] == 20 for t in thresholds)


def test_a_long_non_streamed_answer_is_not_cut_by_the_stream_idle_timeout(
    stack: WeirUp, mocks: Mocks
) -> None:
    """demo/stall's tier has streamIdle 1 s and no firstByte: a non-streamed answer that
    takes 1.5 s is waited for, not cut or sent to the next candidate."""
    limited = mocks.requests("limited")
    raw = client(stack, "stall").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, extra_headers={"X-Mock-TTFT-Ms": "1500"}
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-envoy-attempt-count"] == "1"
    assert mocks.requests("limited") == limited


def test_retries_that_come_back_to_the_first_candidate_carry_its_own_key(
    stack: WeirUp, mocks: Mocks
) -> None:
    limited, failing = mocks.requests("limited"), mocks.requests("failing")
    with pytest.raises(openai.APIStatusError) as raised:
        client(stack, "resilient").chat.completions.create(model="pair", messages=HELLO)
    assert raised.value.response.headers["x-envoy-attempt-count"] == "4"
    assert mocks.requests("limited") - limited == 2
    assert mocks.requests("failing") - failing == 2
    assert mocks.last_model("limited") == "limited-gpt"


def test_every_provider_only_ever_saw_its_own_key(stack: WeirUp, mocks: Mocks) -> None:
    """After every test above (retries through all candidates, back to the first on
    demo/ejection): each mock received its own key or none, never another's."""
    own = {
        "failing": hashlib.sha256(f"Bearer {FAILING_KEY}".encode()).hexdigest(),
        "healthy": hashlib.sha256(f"Bearer {HEALTHY_KEY}".encode()).hexdigest(),
        "limited": "",
        "slow": "",
    }
    for name, key_hash in own.items():
        seen = httpx.get(mocks.urls[name].removesuffix("/v1") + "/mock/stats").json()
        assert seen["authorizations"] == [key_hash], name
