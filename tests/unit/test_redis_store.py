"""The Redis rate-limit store against a real redis-server: atomic take across clients,
window expiry, concurrency slots released by holder and freed when their lease ends,
and what the limiter does while Redis is unreachable (fail open or closed)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from extproc.limit_store import Counter, StoreUnavailable
from extproc.limits import Limiter, Limits, LimitsUnavailable, RateLimited, Tier, refusal_headers
from extproc.metrics import RATE_LIMIT_CHECKS
from extproc.redis_store import RedisStore
from tests.openapi_schema import validate_openapi
from tests.redis_server import RedisServer

PASSWORD = "s3cret-redis-pass"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis"), PASSWORD).start()
    yield running
    running.stop()


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    redis.Redis.from_url(server.url).flushdb()
    opened = RedisStore(server.url)
    yield opened
    await opened.close()


def window(limit: int, amount: int = 1, key: str = "w") -> Counter:
    return Counter(key, limit, amount, time.time() + 60)


def slot(limit: int, holder: str, lease_s: float = 60.0, key: str = "slots") -> Counter:
    return Counter(key, limit, 1, None, holder, lease_s)


async def test_take_admits_below_every_limit_and_refusal_takes_nothing(
    store: RedisStore, server: RedisServer
) -> None:
    assert (await store.take([window(2, key="a"), window(5, 3, key="b")])).values == (1, 3)
    assert (await store.take([window(2, key="a"), window(5, 3, key="b")])).values == (2, 6)
    refused = await store.take([window(10, key="c"), window(2, key="a")])
    assert not refused.admitted and refused.refused == 1 and refused.values == (0, 2)
    assert redis.Redis.from_url(server.url).get("c") is None  # nothing taken
    ttl = redis.Redis.from_url(server.url).pttl("a")
    assert 0 < ttl <= 60_000  # the window's counter goes when the window does


async def test_takes_from_three_clients_at_once_never_pass_the_same_check(
    store: RedisStore, server: RedisServer
) -> None:
    """As three ext_proc replicas would: 90 reservations of 30 tokens against 1,000.
    Admitted while below the limit, so at most the limit plus one reservation."""
    clients = [RedisStore(server.url, timeout_s=5) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(clients[i % 3].take([window(1000, 30, key="tpm")]) for i in range(90))
        )
    finally:
        for client in clients:
            await client.close()
    admitted = sum(1 for r in results if r.admitted)
    assert admitted == 34  # 33 x 30 = 990 < 1000, so the 34th is admitted and no more
    assert int(redis.Redis.from_url(server.url).get("tpm") or 0) == 1020


async def test_add_settles_a_window_and_never_revives_an_ended_one(
    store: RedisStore, server: RedisServer
) -> None:
    await store.take([window(1000, 500, key="t")])
    await store.add([Counter("t", 1000, -420, time.time() + 60)])
    assert int(redis.Redis.from_url(server.url).get("t") or 0) == 80
    await store.add([Counter("gone", 1000, -420, time.time() - 1)])
    assert redis.Redis.from_url(server.url).exists("gone") == 0


async def test_a_slot_is_released_by_its_holder_and_freed_when_its_lease_ends(
    store: RedisStore,
) -> None:
    assert (await store.take([slot(2, "r1")])).admitted
    assert (await store.take([slot(2, "r2")])).admitted
    full = await store.take([slot(2, "r3")])
    assert not full.admitted and full.values == (2,)
    await store.add([Counter("slots", 2, -1, None, "r1")])
    assert (await store.take([slot(2, "r3")])).values == (2,)
    # r2's replica dies without releasing: the slot is held only until its lease ends.
    await store.take([slot(3, "r4", lease_s=0.2)])
    assert not (await store.take([slot(3, "r5")])).admitted
    await asyncio.sleep(0.3)
    assert (await store.take([slot(3, "r5")])).admitted


async def test_unreachable_redis_raises_at_once_and_is_tried_again_later(
    tmp_path: Path,
) -> None:
    down = RedisServer(tmp_path, PASSWORD)  # not started yet
    store = RedisStore(down.url, retry_s=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            await store.take([window(5)])
        assert time.monotonic() - started < 1.0
        assert PASSWORD not in str(raised.value)
        assert f"127.0.0.1:{down.port}/0" in str(raised.value)
        down.start()
        # Within retry_s the store does not even try: no request waits on a dead server.
        with pytest.raises(StoreUnavailable):
            await store.take([window(5)])
        await asyncio.sleep(0.35)
        assert (await store.take([window(5)])).admitted
    finally:
        await store.close()
        down.stop()


TIER = Tier("shared", Limits(requests_per_minute=2, concurrent_requests=1), Limits())


def checks(result: str) -> float:
    value = RATE_LIMIT_CHECKS.labels("shared", result)._value.get()
    return float(value)


async def test_failing_open_limits_with_local_counters_while_redis_is_down(
    tmp_path: Path,
) -> None:
    down = RedisServer(tmp_path)
    store = RedisStore(down.url)
    limiter = Limiter(store, on_store_failure="open")
    before = checks("local")
    try:
        first = await limiter.admit(TIER, "k", "p")
        with pytest.raises(RateLimited):  # the local counters still hold the limit
            await limiter.admit(TIER, "k", "p")
        await limiter.finish(first, None)  # released where it was taken
        await limiter.admit(TIER, "k", "p")
        assert checks("local") == before + 2
    finally:
        await store.close()


async def test_failing_closed_answers_503_with_retry_after(tmp_path: Path) -> None:
    down = RedisServer(tmp_path)
    store = RedisStore(down.url)
    limiter = Limiter(store, on_store_failure="closed")
    try:
        with pytest.raises(LimitsUnavailable) as raised:
            await limiter.admit(TIER, "k", "p")
    finally:
        await store.close()
    error = raised.value
    assert error.status == 503
    envelope = error.envelope()
    assert envelope["error"]["code"] == "rate_limits_unavailable"
    assert envelope["error"]["retry_after"] == 1
    validate_openapi(envelope, "ErrorResponse")
    assert ("retry-after", b"1") in refusal_headers(error)


async def test_the_limiter_on_redis_releases_slots_and_settles_tokens(
    store: RedisStore, server: RedisServer
) -> None:
    tier = Tier("tokens", Limits(tokens_per_minute=1000, concurrent_requests=1), Limits())
    limiter = Limiter(store)
    usage = await limiter.admit(tier, "k", "p")
    with pytest.raises(RateLimited):
        await limiter.admit(tier, "k", "p")
    await limiter.reserve(tier, "k", "p", usage, 600)
    await limiter.finish(usage, 150)
    second = await limiter.admit(tier, "k", "p")
    await limiter.reserve(tier, "k", "p", second, 800)  # 150 + 800 < 1000: settled
    assert second.token_reading is not None and second.token_reading.used == 950


async def test_slots_released_while_redis_is_down_are_released_once_it_is_back(
    store: RedisStore, server: RedisServer
) -> None:
    """Redis stops answering (the process is paused, its data kept) while a request ends:
    its slot is released as soon as Redis answers again, not when its lease ends."""
    quick = RedisStore(server.url, retry_s=0.1)
    limiter = Limiter(quick, on_store_failure="closed")
    tier = Tier("serial", Limits(concurrent_requests=1), Limits())
    assert server.process is not None
    try:
        held = await limiter.admit(tier, "k", "p")
        server.process.send_signal(signal.SIGSTOP)
        try:
            await limiter.finish(held, None)  # times out: the release is held back
        finally:
            server.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.15)
        again = await limiter.admit(tier, "k", "p")  # the held-back release went first
        with pytest.raises(RateLimited):
            await limiter.admit(tier, "k", "p")  # and the slot is really counted
        await limiter.finish(again, None)
    finally:
        await quick.close()
