"""Rate limits of a service tier: admission, reservation and settlement, windows, headers
and the 429 envelope."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from extproc.limit_store import Counter, MemoryStore, Taken
from extproc.limits import (
    Limiter,
    Limits,
    RateLimited,
    Tier,
    rate_limit_headers,
    refusal_headers,
)
from tests.openapi_schema import validate_openapi


class Clock:
    def __init__(self, now: float = 1_000_040.0) -> None:  # 20 s into a minute
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> Limiter:
    return Limiter(MemoryStore(clock), clock)


TIER = Tier(
    "trial",
    Limits(requests_per_minute=2, tokens_per_minute=100, concurrent_requests=5),
    Limits(requests_per_minute=3),
)


async def test_requests_per_minute_per_key_and_per_project() -> None:
    clock = Clock()
    limits = limiter(clock)
    first = await limits.admit(TIER, "k1", "demo")
    assert first.requests is not None and first.requests.remaining == 1
    await limits.admit(TIER, "k1", "demo")
    with pytest.raises(RateLimited) as refused:
        await limits.admit(TIER, "k1", "demo")
    assert "requests per minute of this key" in refused.value.message
    assert refused.value.retry_after == 40  # the minute ends in 40 s
    await limits.admit(TIER, "k2", "demo")  # the project's third
    with pytest.raises(RateLimited) as refused:
        await limits.admit(TIER, "k3", "demo")
    assert "of this project" in refused.value.message
    clock.now += 40  # a new minute
    await limits.admit(TIER, "k1", "demo")


async def test_a_refused_request_takes_nothing() -> None:
    limits = limiter(Clock())
    tier = Tier("t", Limits(requests_per_minute=1), Limits(requests_per_minute=5))
    await limits.admit(tier, "k1", "p")
    for _ in range(3):
        with pytest.raises(RateLimited):
            await limits.admit(tier, "k1", "p")
    # the project counted one request, not four
    for key in ("k2", "k3", "k4", "k5"):
        await limits.admit(tier, key, "p")


async def test_tokens_are_reserved_then_settled_with_the_real_usage() -> None:
    limits = limiter(Clock())
    tier = Tier("t", Limits(tokens_per_minute=100), Limits())
    held = await limits.admit(tier, "k", "p")
    await limits.reserve(tier, "k", "p", held, 90)
    assert held.token_reading is not None and held.token_reading.remaining == 10
    second = await limits.admit(tier, "k", "p")
    await limits.reserve(tier, "k", "p", second, 90)  # 90 < 100: admitted, now 180
    third = await limits.admit(tier, "k", "p")
    with pytest.raises(RateLimited) as refused:
        await limits.reserve(tier, "k", "p", third, 5)
    assert refused.value.error_type == "tokens"
    assert "used 180" in refused.value.message
    await limits.finish(held, 20)  # used 20 of its 90
    await limits.finish(second, 10)
    await limits.reserve(tier, "k", "p", third, 5)  # 30 used now
    assert third.token_reading is not None and third.token_reading.used == 35


async def test_unknown_usage_keeps_the_reservation_and_finish_is_once() -> None:
    limits = limiter(Clock())
    tier = Tier("t", Limits(tokens_per_minute=100, concurrent_requests=1), Limits())
    held = await limits.admit(tier, "k", "p")
    await limits.reserve(tier, "k", "p", held, 100)
    await limits.finish(held, None)
    await limits.finish(held, 0)  # a second finish changes nothing
    other = await limits.admit(tier, "k", "p")  # the concurrency slot is free
    with pytest.raises(RateLimited):
        await limits.reserve(tier, "k", "p", other, 1)


async def test_concurrency_is_exact_under_concurrent_admissions() -> None:
    limits = limiter(Clock())
    tier = Tier("t", Limits(concurrent_requests=3), Limits())

    async def one() -> bool:
        try:
            await limits.admit(tier, "k", "p")
        except RateLimited as error:
            assert error.retry_after == 1
            return False
        return True

    admitted = await asyncio.gather(*(one() for _ in range(20)))
    assert sum(admitted) == 3


async def test_expired_windows_are_forgotten() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    counter = Counter("a", 1, 1, clock.now + 10)
    assert (await store.take([counter])).admitted
    assert not (await store.take([counter])).admitted
    clock.now += 10
    assert (await store.take([Counter("a", 1, 1, clock.now + 10)])).admitted
    clock.now += 120
    await store.take([Counter("b", 1, 1, None)])  # sweeps
    assert "a" not in store._values


def test_headers_name_the_tightest_scope_and_warn_above_80_percent() -> None:
    async def run() -> tuple[dict[str, bytes], dict[str, bytes]]:
        limits = limiter(Clock())
        tier = Tier("t", Limits(requests_per_minute=10), Limits(requests_per_minute=5))
        for _ in range(3):
            await limits.admit(tier, "k", "p")
        fourth = dict(rate_limit_headers(await limits.admit(tier, "k", "p")))
        fifth = dict(rate_limit_headers(await limits.admit(tier, "k", "p")))
        return fourth, fifth

    fourth, fifth = asyncio.run(run())
    assert fourth["x-ratelimit-limit-requests"] == b"5"  # the project's: 1 left of 5
    assert fourth["x-ratelimit-remaining-requests"] == b"1"
    assert fourth["x-ratelimit-remaining"] == b"1"
    assert fourth["x-ratelimit-reset-requests"] == b"40"
    assert "x-ratelimit-warning" not in fourth  # 80 % used, not above
    assert "x-ratelimit-limit-tokens" not in fourth
    assert fifth["x-ratelimit-remaining-requests"] == b"0"
    assert fifth["x-ratelimit-warning"] == b"requests 100% used"


def test_the_429_envelope_is_openai_shaped_with_retry_after() -> None:
    error = RateLimited("Rate limit reached.", 12, "tokens")
    envelope = error.envelope()
    assert envelope["error"]["retry_after"] == 12
    assert envelope["error"]["code"] == "rate_limit_exceeded"
    validate_openapi(envelope, "ErrorResponse")
    assert dict(refusal_headers(error)) == {"retry-after": b"12"}


async def test_a_concurrency_slot_is_leased_no_longer_than_the_tiers_request_timeout() -> None:
    """A shared store frees a slot whose holder died when its lease ends: the tier's
    request timeout (plus a margin) when it has one, else the default."""
    leases: list[float] = []

    class Recording(MemoryStore):
        async def take(self, counters: Sequence[Counter]) -> Taken:
            leases.extend(c.lease_s for c in counters if c.holder)
            return await super().take(counters)

    limiter = Limiter(Recording(), lease_s=900.0)
    timed = Tier("timed", Limits(concurrent_requests=2), Limits(), request_timeout_s=120.0)
    await limiter.admit(timed, "k", "p")
    await limiter.admit(Tier("open", Limits(concurrent_requests=2), Limits()), "k", "p")
    assert leases == [150.0, 900.0]


def test_the_request_timeout_reaches_ext_proc() -> None:
    from controlplane.model import ConfigSet, ServiceTier
    from controlplane.translate_runtime import translate

    config = ConfigSet(service_tiers=(ServiceTier("timed", request_timeout_seconds=120.0),))
    (tier,) = translate(config, {}).service_tiers
    assert Tier.compile(tier).request_timeout_s == 120.0
