"""Service tiers through the real stack: X-RateLimit-* headers on every answer, streams
included; 429 rate_limit_exceeded with Retry-After over a limit (the SDK raises
RateLimitError); token limits that hold under 64 concurrent requests; limits per key,
per project and on concurrency; usage asked of streams without the client seeing it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.integration.harness import REPO, WeirUp, copy_quickstart, create_key, weir_up

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("limits")
    config = copy_quickstart(root / "config")
    shutil.copy(REPO / "tests" / "fixtures" / "limits" / "tiers.yaml", config / "limit-tests.yaml")
    with weir_up(config, root / "state") as up:
        yield up


def fresh_key(stack: WeirUp, project: str = "demo") -> str:
    """A key of its own, so that no other test has used its counters; usable once the
    control plane has pushed it."""
    key: str = create_key(stack.state_dir, project)["key"]
    deadline = time.monotonic() + 5
    while True:
        status = httpx.get(
            f"{stack.endpoint()}/models", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        if status == 200:
            return key
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def early_in_a_minute(margin_s: float = 15.0) -> None:
    """Windows are fixed minutes: start a test that fills one with time to spare."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.05)


def sdk(stack: WeirUp, key: str, slug: str = "trial") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint("demo", slug), api_key=key, max_retries=0)


def mock_requests(stack: WeirUp) -> int:
    count: int = httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"]
    return count


def test_answers_carry_the_limits_and_the_sixth_request_of_a_minute_is_429(
    stack: WeirUp,
) -> None:
    early_in_a_minute()
    client = sdk(stack, fresh_key(stack))
    for n in range(5):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=20
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-ratelimit-limit-requests"] == "5"
        assert raw.headers["x-ratelimit-limit"] == "5"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(4 - n)
        assert raw.headers["x-ratelimit-remaining"] == str(4 - n)
        assert 1 <= int(raw.headers["x-ratelimit-reset-requests"]) <= 60
        assert raw.headers["x-ratelimit-limit-tokens"] == "2000"
        assert 0 <= int(raw.headers["x-ratelimit-remaining-tokens"]) < 2000
        # over 80 % of the requests used from the 5th on
        assert ("x-ratelimit-warning" in raw.headers) == (n == 4)
    assert "requests 100% used" in raw.headers["x-ratelimit-warning"]
    before = mock_requests(stack)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=20)
    response = raised.value.response
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    assert error["retry_after"] == retry_after
    assert "requests per minute of this key" in error["message"] and "'trial'" in error["message"]
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-request-id"]
    assert mock_requests(stack) == before  # never forwarded


def test_a_stream_carries_the_headers_and_weir_asks_for_usage_the_client_never_sees(
    stack: WeirUp,
) -> None:
    early_in_a_minute()
    key = fresh_key(stack)
    with httpx.stream(
        "POST",
        f"{stack.endpoint('demo', 'trial')}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True, "max_tokens": 20},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining-requests"] == "4"
        assert response.headers["x-ratelimit-limit-tokens"] == "2000"
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert chunks and all(chunk["choices"] for chunk in chunks)  # no usage-only chunk
    sent = httpx.get(f"{stack.mock_url}/mock/stats").json()["last_request"]
    assert sent["stream_options"] == {"include_usage": True}
    # A client that asks for usage gets it, as it would from the provider.
    stream = sdk(stack, key).chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        max_tokens=20,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(usage) == 1 and usage[0].total_tokens > 0


def at_once(client: openai.OpenAI, count: int) -> list[tuple[int, int]]:
    """`count` requests at once (max_tokens 40): (status, total tokens) of each."""

    def one(_: int) -> tuple[int, int]:
        try:
            completion = client.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, max_tokens=40
            )
        except openai.RateLimitError as error:
            assert error.response.json()["error"]["type"] == "tokens"
            return 429, 0
        assert completion.usage is not None
        return 200, completion.usage.total_tokens

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_the_tokens_admitted_under_64_concurrent_requests_stay_within_the_limit(
    stack: WeirUp,
) -> None:
    """1,000 tokens a minute: each request reserves its prompt estimate plus max_tokens,
    and is admitted only while the key is under its limit. Whatever the interleaving,
    the tokens of the admitted requests exceed 1,000 by at most one request's worth."""
    early_in_a_minute(30)
    outcomes = at_once(sdk(stack, fresh_key(stack), "tpm"), 64)
    admitted = [tokens for status, tokens in outcomes if status == 200]
    refused = [status for status, _ in outcomes if status == 429]
    assert admitted and refused
    one_request = max(admitted)
    assert sum(admitted) <= 1000 + one_request, (len(admitted), sum(admitted))
    # Settled with the real usage: what was reserved and not used is free again, so
    # more requests got through than reservations alone would allow.
    reservation = 40 + len(json.dumps(HELLO)) // 4
    assert len(admitted) > 1000 // (reservation + 40)


def test_a_project_limit_is_shared_by_its_keys(stack: WeirUp) -> None:
    early_in_a_minute()
    first, second = fresh_key(stack), fresh_key(stack)
    for key in (first, first, second):
        sdk(stack, key, "project3").chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(stack, second, "project3").chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "requests per minute of this project" in raised.value.response.json()["error"]["message"]


def test_concurrent_requests_over_the_limit_are_refused_until_one_ends(stack: WeirUp) -> None:
    key = fresh_key(stack)
    slow = {"X-Mock-TTFT-Ms": "800"}

    def call(headers: dict[str, str]) -> Any:
        return httpx.post(
            f"{stack.endpoint('demo', 'serial')}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": HELLO},
            headers={"Authorization": f"Bearer {key}", **headers},
            timeout=30,
        )

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(call, slow)
        time.sleep(0.3)
        second = call({})
        assert first.result().status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert "concurrent requests of this key" in second.json()["error"]["message"]
    assert call({}).status_code == 200  # the slot was given back
