"""Rate limits of a service tier: requests, tokens and concurrency, per key and project.

Requests per minute and concurrency are taken when the request headers arrive; tokens
when the body is known: the request reserves its prompt estimate plus the most it may
generate, and is settled with the real usage when the answer ends. A request is
admitted while every counter is below its limit, so under any concurrency the tokens
admitted in a window never exceed the limit by more than one request's reservation.
Windows are fixed minutes. Every answer then carries the X-RateLimit-* headers of the
most constrained scope.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from extproc.errors import GatewayError
from extproc.limit_store import Counter, LimitStore
from weir.config.v1 import runtime_pb2

WINDOW_S: Final = 60
WARNING_AT: Final = 0.8  # X-RateLimit-Warning once a scope has used more than this


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int = 0  # 0: not enforced
    tokens_per_minute: int = 0
    concurrent_requests: int = 0

    @classmethod
    def compile(cls, limits: runtime_pb2.RateLimits) -> Limits:
        return cls(limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent_requests)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    per_key: Limits
    per_project: Limits

    @classmethod
    def compile(cls, tier: runtime_pb2.ServiceTier) -> Tier:
        return cls(tier.name, Limits.compile(tier.per_key), Limits.compile(tier.per_project))

    @property
    def limits_tokens(self) -> bool:
        return bool(self.per_key.tokens_per_minute or self.per_project.tokens_per_minute)

    def scopes(self, key_id: str, project: str) -> list[tuple[str, str, Limits]]:
        """(kind, counter key prefix, limits) of each scope, the key's first."""
        return [
            ("key", f"weir:{self.name}:key:{key_id}", self.per_key),
            ("project", f"weir:{self.name}:project:{project}", self.per_project),
        ]


class RateLimited(GatewayError):
    """429: over a limit of the tier. The SDK raises RateLimitError (and may retry after
    `retry_after`, which the Retry-After header carries too)."""

    status = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, retry_after: int, kind: str, reading: Reading | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.error_type = kind  # "requests" or "tokens", as the OpenAI API says
        self.reading = reading  # the limit that refused, for the X-RateLimit-* headers

    def envelope(self) -> dict[str, Any]:
        envelope = super().envelope()
        envelope["error"]["retry_after"] = self.retry_after
        return envelope


@dataclass(slots=True)
class Reading:
    """One limit of one scope as it stands after this request: for the headers."""

    limit: int
    used: int
    reset_s: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(slots=True)
class Usage:
    """What one request holds in the store, to release and settle when it ends."""

    concurrency: list[Counter] = field(default_factory=list)  # to give back
    tokens: list[Counter] = field(default_factory=list)  # as reserved
    reserved: int = 0
    requests: Reading | None = None  # the most constrained scope, for the headers
    token_reading: Reading | None = None
    done: bool = False


def _tightest(readings: list[Reading]) -> Reading | None:
    return min(readings, key=lambda r: (r.remaining / r.limit, r.remaining), default=None)


class Limiter:
    """Applies a tier's limits through a store."""

    def __init__(self, store: LimitStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def _window(self) -> tuple[int, float, int]:
        now = self.clock()
        window = int(now // WINDOW_S)
        end = (window + 1) * WINDOW_S
        return window, float(end), max(1, math.ceil(end - now))

    async def admit(self, tier: Tier, key_id: str, project: str) -> Usage:
        """Take a request and a concurrency slot in every scope. Raises RateLimited."""
        window, end, reset_s = self._window()
        counters: list[Counter] = []
        kinds: list[tuple[str, str, int]] = []  # (scope, what, limit) per counter
        for scope, prefix, limits in tier.scopes(key_id, project):
            if limits.requests_per_minute:
                counters.append(
                    Counter(f"{prefix}:rpm:{window}", limits.requests_per_minute, 1, end + 5)
                )
                kinds.append((scope, "requests per minute", limits.requests_per_minute))
            if limits.concurrent_requests:
                counters.append(Counter(f"{prefix}:inflight", limits.concurrent_requests, 1, None))
                kinds.append((scope, "concurrent requests", limits.concurrent_requests))
        usage = Usage()
        if not counters:
            return usage
        taken = await self.store.take(counters)
        if not taken.admitted:
            scope, what, limit = kinds[taken.refused]
            used = taken.values[taken.refused]
            per_minute = what == "requests per minute"
            retry = reset_s if per_minute else 1
            raise RateLimited(
                f"Rate limit reached for {what} of this {scope} in service tier "
                f"'{tier.name}': limit {limit}, in use {used}. Retry in {retry} s.",
                retry,
                "requests",
                Reading(limit, used, reset_s) if per_minute else None,
            )
        usage.concurrency = [
            Counter(c.key, c.limit, -1, None) for c in counters if c.expires_at is None
        ]
        readings = [
            Reading(limit, value, reset_s)
            for (_, what, limit), value in zip(kinds, taken.values, strict=True)
            if what == "requests per minute"
        ]
        usage.requests = _tightest(readings)
        return usage

    async def reserve(
        self, tier: Tier, key_id: str, project: str, usage: Usage, tokens: int
    ) -> None:
        """Reserve `tokens` in every scope with a token limit. Raises RateLimited."""
        window, end, reset_s = self._window()
        counters: list[Counter] = []
        kinds: list[tuple[str, int]] = []
        for scope, prefix, limits in tier.scopes(key_id, project):
            if limits.tokens_per_minute:
                key = f"{prefix}:tpm:{window}"
                counters.append(Counter(key, limits.tokens_per_minute, tokens, end + 5))
                kinds.append((scope, limits.tokens_per_minute))
        if not counters:
            return
        taken = await self.store.take(counters)
        if not taken.admitted:
            scope, limit = kinds[taken.refused]
            used = taken.values[taken.refused]
            raise RateLimited(
                f"Rate limit reached for tokens per minute of this {scope} in service tier "
                f"'{tier.name}': limit {limit}, used {used}, this request needs up to "
                f"{tokens}. Retry in {reset_s} s.",
                reset_s,
                "tokens",
                Reading(limit, used, reset_s),
            )
        usage.tokens = counters
        usage.reserved = tokens
        usage.token_reading = _tightest(
            [
                Reading(limit, value, reset_s)
                for (_, limit), value in zip(kinds, taken.values, strict=True)
            ]
        )

    async def finish(self, usage: Usage, used_tokens: int | None) -> None:
        """Give the concurrency slots back and settle the reservation with the tokens
        really used (None: unknown, the reservation stands)."""
        if usage.done:
            return
        usage.done = True
        adjust = list(usage.concurrency)
        if used_tokens is not None and usage.tokens:
            delta = used_tokens - usage.reserved
            adjust += [Counter(c.key, c.limit, delta, c.expires_at) for c in usage.tokens]
        if adjust:
            await self.store.add(adjust)


def rate_limit_headers(usage: Usage | None) -> list[tuple[str, bytes]]:
    """X-RateLimit-{Limit,Remaining,Reset} for requests (also as -Requests) and tokens
    (-Tokens), and X-RateLimit-Warning above 80 % use."""
    if usage is None:
        return []
    headers: list[tuple[str, bytes]] = []
    warnings: list[str] = []
    for suffix, reading in (("requests", usage.requests), ("tokens", usage.token_reading)):
        if reading is None:
            continue
        values = (
            ("limit", str(reading.limit)),
            ("remaining", str(reading.remaining)),
            ("reset", str(reading.reset_s)),
        )
        for name, value in values:
            headers.append((f"x-ratelimit-{name}-{suffix}", value.encode()))
            if suffix == "requests":
                headers.append((f"x-ratelimit-{name}", value.encode()))
        if reading.used > WARNING_AT * reading.limit:
            warnings.append(f"{suffix} {min(100, round(100 * reading.used / reading.limit))}% used")
    if warnings:
        headers.append(("x-ratelimit-warning", "; ".join(warnings).encode()))
    return headers


def refusal_headers(error: GatewayError) -> list[tuple[str, bytes]]:
    """Retry-After, and the X-RateLimit-* headers of the limit that refused, for a 429."""
    if not isinstance(error, RateLimited):
        return []
    headers = [("retry-after", str(error.retry_after).encode())]
    if error.reading is not None:
        usage = Usage()
        if error.error_type == "tokens":
            usage.token_reading = error.reading
        else:
            usage.requests = error.reading
        headers += rate_limit_headers(usage)
    return headers
