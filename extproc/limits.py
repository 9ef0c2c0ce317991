"""Rate limits of a service tier: requests, tokens and concurrency, per key and project.

Requests per minute and concurrency are taken when the request headers arrive; tokens
when the body is known: the request reserves its prompt estimate plus the most it may
generate, and is settled with the real usage when the answer ends. A request is
admitted while every counter is below its limit, so under any concurrency the tokens
admitted in a window never exceed the limit by more than one request's reservation.
Windows are fixed minutes. Every answer then carries the X-RateLimit-* headers of the
most constrained scope.

When the shared store cannot be reached, the limiter fails open by default: it goes on
enforcing every limit with this replica's own counters (so with N replicas a client may
get up to N times its limit until the store is back). Failing closed instead answers
503 rate_limits_unavailable, and nothing is forwarded while the store is down.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from extproc.errors import GatewayError
from extproc.limit_store import Counter, LimitStore, MemoryStore, StoreUnavailable, Taken
from extproc.metrics import rate_limit_checked
from weir.config.v1 import runtime_pb2

log = logging.getLogger("weir.extproc.limits")

WINDOW_S: Final = 60
WARNING_AT: Final = 0.8  # X-RateLimit-Warning once a scope has used more than this
# A concurrency slot whose holder vanished (a replica killed mid-request) is freed by a
# shared store after this long.
DEFAULT_LEASE_S: Final = 900.0
MAX_UNSETTLED: Final = 10_000  # releases kept for a store that is down
LEASE_MARGIN_S: Final = 30.0

FailureMode = Literal["open", "closed"]


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
    request_timeout_s: float = 0.0  # 0: not set

    @classmethod
    def compile(cls, tier: runtime_pb2.ServiceTier) -> Tier:
        return cls(
            tier.name,
            Limits.compile(tier.per_key),
            Limits.compile(tier.per_project),
            tier.request_timeout_ms / 1000,
        )

    def lease_s(self, default: float) -> float:
        """How long a concurrency slot is held at most: no request outlives the tier's
        request timeout (a margin for the answer's last bytes)."""
        if self.request_timeout_s <= 0:
            return default
        return min(default, self.request_timeout_s + LEASE_MARGIN_S)

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


class LimitsUnavailable(GatewayError):
    """503: the shared rate-limit store is unreachable and the gateway fails closed."""

    status = 503
    error_type = "server_error"
    code = "rate_limits_unavailable"
    retry_after = 1


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
    holder: str = field(default_factory=lambda: secrets.token_hex(8))  # names its slots
    # The store each was taken from (the local one while the shared one is down).
    concurrency_store: LimitStore | None = None
    tokens_store: LimitStore | None = None
    reserved: int = 0
    requests: Reading | None = None  # the most constrained scope, for the headers
    token_reading: Reading | None = None
    done: bool = False


def _tightest(readings: list[Reading]) -> Reading | None:
    return min(readings, key=lambda r: (r.remaining / r.limit, r.remaining), default=None)


class Limiter:
    """Applies a tier's limits through a store; see the module's note on failures."""

    def __init__(
        self,
        store: LimitStore,
        clock: Callable[[], float] = time.time,
        on_store_failure: FailureMode = "open",
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_store_failure = on_store_failure
        self.lease_s = lease_s
        self._local: MemoryStore | None = None
        # Releases and settlements the store could not take: tried again once it is back,
        # so a short outage does not leave slots held until their leases end.
        self._unsettled: list[list[Counter]] = []

    async def _take(self, tier: Tier, counters: list[Counter]) -> tuple[LimitStore, Taken]:
        store = self.store
        try:
            if self._unsettled:
                await self._settle_backlog()  # slots released meanwhile are free again
            taken = await store.take(counters)
        except StoreUnavailable as error:
            if self.on_store_failure == "closed":
                rate_limit_checked(tier.name, "unavailable")
                raise LimitsUnavailable(
                    "Rate limits cannot be checked right now (the shared rate-limit store is "
                    "unreachable), so the request was not forwarded. Retry in 1 s."
                ) from error
            if self._local is None:
                self._local = MemoryStore(self.clock)
            store = self._local
            taken = await store.take(counters)
        if not taken.admitted:
            rate_limit_checked(tier.name, "refused")
        else:
            rate_limit_checked(tier.name, "admitted" if store is self.store else "local")
        return store, taken

    async def _settle_backlog(self) -> None:
        """Apply the held-back releases; raises StoreUnavailable (keeping the rest)."""
        backlog, self._unsettled = self._unsettled, []
        for index, counters in enumerate(backlog):
            try:
                await self.store.add(counters)
            except StoreUnavailable:
                self._unsettled = backlog[index:] + self._unsettled
                raise
        log.warning("rate-limit releases held back during the outage were applied")

    def _window(self) -> tuple[int, float, int]:
        now = self.clock()
        window = int(now // WINDOW_S)
        end = (window + 1) * WINDOW_S
        return window, float(end), max(1, math.ceil(end - now))

    async def admit(self, tier: Tier, key_id: str, project: str) -> Usage:
        """Take a request and a concurrency slot in every scope. Raises RateLimited (or
        LimitsUnavailable when failing closed)."""
        window, end, reset_s = self._window()
        usage = Usage()
        counters: list[Counter] = []
        kinds: list[tuple[str, str, int]] = []  # (scope, what, limit) per counter
        for scope, prefix, limits in tier.scopes(key_id, project):
            if limits.requests_per_minute:
                counters.append(
                    Counter(f"{prefix}:rpm:{window}", limits.requests_per_minute, 1, end + 5)
                )
                kinds.append((scope, "requests per minute", limits.requests_per_minute))
            if limits.concurrent_requests:
                counters.append(
                    Counter(
                        f"{prefix}:inflight",
                        limits.concurrent_requests,
                        1,
                        None,
                        usage.holder,
                        tier.lease_s(self.lease_s),
                    )
                )
                kinds.append((scope, "concurrent requests", limits.concurrent_requests))
        if not counters:
            return usage
        store, taken = await self._take(tier, counters)
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
            Counter(c.key, c.limit, -1, None, c.holder) for c in counters if c.holder
        ]
        usage.concurrency_store = store
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
        store, taken = await self._take(tier, counters)
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
        usage.tokens_store = store
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
        settle = []
        if used_tokens is not None and usage.tokens and used_tokens != usage.reserved:
            delta = used_tokens - usage.reserved
            settle = [Counter(c.key, c.limit, delta, c.expires_at) for c in usage.tokens]
        if usage.concurrency_store is usage.tokens_store:
            changes = [(usage.concurrency_store, usage.concurrency + settle)]
        else:
            changes = [(usage.concurrency_store, usage.concurrency), (usage.tokens_store, settle)]
        for store, counters in changes:
            if store is None or not counters:
                continue
            try:
                await store.add(counters)
            except StoreUnavailable:
                # Tried again once the store answers (the slots' leases are the last
                # resort); the oldest are given up past MAX_UNSETTLED.
                if not self._unsettled:
                    log.warning("rate-limit store unreachable: releases held back until it is")
                self._unsettled.append(counters)
                del self._unsettled[:-MAX_UNSETTLED]


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
    """Retry-After for a retryable error, and for a 429 the X-RateLimit-* headers of the
    limit that refused."""
    if error.retry_after is None:
        return []
    headers = [("retry-after", str(error.retry_after).encode())]
    if isinstance(error, RateLimited) and error.reading is not None:
        usage = Usage()
        if error.error_type == "tokens":
            usage.token_reading = error.reading
        else:
            usage.requests = error.reading
        headers += rate_limit_headers(usage)
    return headers
