"""Rate limits shared by 3 ext_proc replicas through a real redis-server: exact under
concurrency whichever replica a request meets; failing open on the replicas' own
counters while Redis is down, or closed with 503; the Redis password in no log."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.harness import REPO, WeirUp, copy_quickstart, weir_up
from tests.integration.test_limits import (
    HELLO,
    at_once,
    early_in_a_minute,
    fresh_key,
    mock_requests,
    sdk,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

PASSWORD = "redis-pass-7f3e9a1c"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("shared-limits")
    config = copy_quickstart(root / "config")
    shutil.copy(REPO / "tests" / "fixtures" / "limits" / "tiers.yaml", config / "limit-tests.yaml")
    with weir_up(
        config,
        root / "state",
        "--extproc-replicas",
        "3",
        env={"WEIR_REDIS_URL": redis_server.url},
    ) as up:
        yield up


def checks_per_replica(stack: WeirUp, tier: str, result: str) -> list[float]:
    """weir_rate_limit_checks_total{tier, result} of each replica."""
    urls = re.findall(r"Metrics:\s+(\S+)", stack.process.output)
    assert len(urls) == 3, stack.process.output
    counts = []
    for url in urls:
        pattern = rf'^weir_rate_limit_checks_total\{{result="{result}",tier="{tier}"\}} (\S+)$'
        found = re.search(pattern, httpx.get(url).text, re.MULTILINE)
        counts.append(float(found.group(1)) if found else 0.0)
    return counts


def test_the_ready_message_says_where_limits_are_counted(stack: WeirUp) -> None:
    assert "Rate limits: counted in Redis, shared by 3 ext_proc replica(s)" in (
        stack.process.output
    )


def test_requests_per_minute_hold_whichever_replica_a_request_meets(stack: WeirUp) -> None:
    """5 a minute per key, on trial: counted per replica, 3 replicas would admit up to 15."""
    early_in_a_minute()
    client = sdk(stack, fresh_key(stack))
    before = checks_per_replica(stack, "trial", "admitted")
    remaining = []
    for _ in range(5):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=5
        )
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["4", "3", "2", "1", "0"]
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5)
    after = checks_per_replica(stack, "trial", "admitted")
    assert sum(after) - sum(before) >= 5
    assert sum(1 for b, a in zip(before, after, strict=True) if a > b) >= 2, (before, after)


def test_the_tokens_of_64_concurrent_requests_over_3_replicas_stay_within_the_limit(
    stack: WeirUp,
) -> None:
    early_in_a_minute(30)
    outcomes = at_once(sdk(stack, fresh_key(stack), "tpm"), 64)
    admitted = [tokens for status, tokens in outcomes if status == 200]
    assert admitted and len(admitted) < 64
    assert sum(admitted) <= 1000 + max(admitted), (len(admitted), sum(admitted))
    checked = checks_per_replica(stack, "tpm-1000", "admitted")
    assert all(count > 0 for count in checked), checked  # every replica took a share


def test_with_redis_down_replicas_fail_open_on_their_own_counters(
    stack: WeirUp, redis_server: RedisServer
) -> None:
    key = fresh_key(stack)
    client = sdk(stack, key)
    redis_server.stop()
    try:
        local_before = sum(checks_per_replica(stack, "trial", "local"))
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, max_tokens=5
        )
        assert completion.choices[0].message.content
        # Admitted (requests) and reserved (tokens) on the replica's own counters.
        assert sum(checks_per_replica(stack, "trial", "local")) == local_before + 2
    finally:
        redis_server.start()
    # Back in Redis within a second or so (each replica waits 1 s before trying again).
    deadline = time.monotonic() + 10
    shared_before = sum(checks_per_replica(stack, "trial", "admitted"))
    while sum(checks_per_replica(stack, "trial", "admitted")) == shared_before:
        assert time.monotonic() < deadline
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5)
        time.sleep(0.2)


def test_the_redis_password_is_in_no_log(stack: WeirUp) -> None:
    logs = "".join(p.read_text() for p in (stack.state_dir / "logs").glob("*.log"))
    assert "unreachable" in logs  # the outage above was logged ...
    assert PASSWORD not in logs  # ... without the password
    assert PASSWORD not in stack.process.output


def test_failing_closed_answers_503_and_forwards_nothing(tmp_path: Path) -> None:
    config = copy_quickstart(tmp_path / "config")
    nowhere = RedisServer(tmp_path)  # never started: nothing listens on its port
    with weir_up(
        config,
        tmp_path / "state",
        "--limit-store-failure",
        "closed",
        env={"WEIR_REDIS_URL": nowhere.url},
    ) as up:
        forwarded = mock_requests(up)
        client = sdk(up, up.key)
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        response = raised.value.response
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == "rate_limits_unavailable"
        assert error["retry_after"] == 1
        assert mock_requests(up) == forwarded
        # An endpoint with no service tier checks no limits, so it still answers.
        chat = sdk(up, up.key, "chat").chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert chat.choices[0].message.content
