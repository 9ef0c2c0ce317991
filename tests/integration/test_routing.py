"""`model: "auto"` through the real stack: the quickstart's demo/chat picks among its
models by the request's hints (a `weir` body field or headers), their quality tiers and
prices, and the latency each has shown lately (a second mock LLM, slower, makes the
difference); the decision is in a header and the record; pinning a backend needs the
routing scope."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.integration.harness import (
    WeirUp,
    copy_quickstart,
    create_key,
    record_of,
    start_mock_llm,
    weir_up,
)

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Say hello."}]

SLOW_BACKEND = """
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: slow}
spec:
  baseURL: ${SLOW_URL}
  models: [{name: slow-gpt, tier: frontier, pricing: {input: 5, output: 15}}]
---
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: demo-smart}
spec:
  project: demo
  slug: smart
  auto: {mode: quality}
  models:
    - name: quick
      targets: [{backend: mock, model: mock-gpt}]
    - name: deep
      targets: [{backend: slow, model: slow-gpt}]
    - name: both
      targets: [{backend: slow, model: slow-gpt}, {backend: mock, model: mock-gpt}]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("routing")
    slow, url = start_mock_llm("slow", "--ttft-ms", "300")
    try:
        config = copy_quickstart(root / "config")
        (config / "smart.yaml").write_text(SLOW_BACKEND)
        with weir_up(config, root / "state", env={**os.environ, "SLOW_URL": url}) as up:
            yield up
    finally:
        slow.stop()


def client(stack: WeirUp, slug: str = "chat", key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.endpoint("demo", slug), api_key=key or stack.key, max_retries=0
    )


def fresh_key(stack: WeirUp, scopes: str = "inference") -> str:
    """A key with these scopes, once ext_proc has it."""
    key: str = create_key(stack.state_dir, "demo", "--scopes", scopes)["key"]
    deadline = time.monotonic() + 5
    while (
        httpx.get(
            f"{stack.endpoint('demo', 'smart')}/models", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        != 200
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return key


def auto(stack: WeirUp, slug: str = "chat", **options: Any) -> Any:
    return client(stack, slug).chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, **options
    )


def test_auto_is_listed_and_follows_the_mode(stack: WeirUp) -> None:
    assert "auto" in [m.id for m in client(stack).models.list().data]
    cheap = auto(stack, extra_headers={"X-Weir-Routing-Mode": "cost"})
    assert cheap.headers["x-weir-routing"].startswith("gpt-4o-mini; mode=cost; reason=")
    assert cheap.headers["x-mock-received-model"] == "mock-gpt-mini"  # basic, cheaper
    best = auto(stack, extra_body={"weir": {"routing": {"mode": "quality"}}})
    assert best.headers["x-weir-routing"].startswith("gpt-4o; mode=quality")
    assert best.headers["x-mock-received-model"] == "mock-gpt"  # premium
    # Weir's own field never reaches the provider.
    sent = httpx.get(f"{stack.mock_url}/mock/stats").json()["last_request"]
    assert "weir" not in sent and sent["model"] == "mock-gpt"
    record = record_of(stack, best.headers["x-request-id"])
    assert record["requested_model"] == "auto"
    assert record["routing"]["chosen"] == "gpt-4o"
    assert record["routing"]["mode"] == "quality"
    assert record["routing"]["hints"]["mode"] == "quality"


def test_quality_bounds_narrow_the_choice(stack: WeirUp) -> None:
    capped = auto(
        stack,
        extra_headers={
            "X-Weir-Routing-Mode": "quality",
            "X-Weir-Routing-Max-Quality-Tier": "standard",
        },
    )
    assert capped.headers["x-weir-routing"].startswith("gpt-4o-mini;")
    hard = auto(stack, extra_body={"weir": {"routing": {"mode": "cost", "complexity": "high"}}})
    assert hard.headers["x-weir-routing"].startswith("gpt-4o;")


def test_slos_follow_the_latency_each_model_has_shown(stack: WeirUp) -> None:
    """demo/smart prefers quality: `deep` (frontier) until it has been seen to take
    300 ms to its first token, which an SLO of 150 ms rules out."""
    headers = {"X-SLO-TTFT-Ms": "150"}
    first = auto(stack, "smart", extra_headers=headers)
    assert first.headers["x-weir-routing"].startswith("deep;")  # not measured yet: tried
    for _ in range(3):
        client(stack, "smart").chat.completions.create(model="quick", messages=HELLO)
    later = auto(stack, "smart", extra_headers=headers)
    assert later.headers["x-weir-routing"].startswith("quick;")
    assert auto(stack, "smart").headers["x-weir-routing"].startswith("deep;")  # no SLO
    impossible = auto(stack, "smart", extra_headers={"X-SLO-TTFT-Ms": "0.001"})
    assert "no model meets the latency hints" in impossible.headers["x-weir-routing"]


def test_bad_hints_are_400s(stack: WeirUp) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        auto(stack, extra_headers={"X-Weir-Routing-Mode": "cheapest"})
    error = raised.value.response.json()["error"]
    assert error["param"] == "x-weir-routing-mode"
    assert "fast, balanced, quality, cost" in error["message"]


def test_pinning_a_backend_needs_the_routing_scope(stack: WeirUp) -> None:
    pin = {"X-Weir-Route-To": "mock"}
    plain = fresh_key(stack)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client(stack, "smart", plain).chat.completions.create(
            model="both", messages=HELLO, extra_headers=pin
        )
    assert "'routing' scope" in raised.value.response.json()["error"]["message"]
    router = fresh_key(stack, "inference,routing")
    raw = client(stack, "smart", router).chat.completions.with_raw_response.create(
        model="both", messages=HELLO, extra_headers=pin
    )
    # The second target, straight away: no attempt at the first.
    assert raw.headers["x-weir-backend"] == "mock"
    assert raw.headers["x-envoy-attempt-count"] == "1"
    with pytest.raises(openai.BadRequestError) as bad:
        client(stack, "smart", router).chat.completions.create(
            model="both", messages=HELLO, extra_headers={"X-Weir-Route-To": "nowhere"}
        )
    assert "slow/slow-gpt, mock/mock-gpt" in bad.value.response.json()["error"]["message"]
