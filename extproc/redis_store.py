"""Rate-limit counters in Redis, shared by every ext_proc replica.

The two store operations are Lua scripts, so each runs atomically on the server: `take`
reads every counter, refuses if one is at its limit, and otherwise adds to all of them,
with no other client in between. Window counters are plain integers that expire after
their window. A concurrency slot is a member of a sorted set scored by its lease's end
(the server's clock): it is released by name, and a slot whose holder died (a replica
killed mid-request) drops out when its lease ends instead of being held forever.

When Redis cannot be reached, or does not answer within the socket timeout, the store
raises StoreUnavailable at once and does not try again for `retry_s`, so that an outage
costs each request nothing more than a check of the clock. One Redis primary holds all
the counters (keys of one request span several hash slots, so Redis Cluster is not
supported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from extproc.limit_store import Counter, StoreUnavailable, Taken

log = logging.getLogger("weir.extproc.limits")

# ARGV holds 4 values per counter: limit, amount, ttl in ms (0: none; for a slot, its
# lease), holder ('' for a plain counter). Returns {admitted, refused index, values...}.
_TAKE = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local values = {}
for i, key in ipairs(KEYS) do
  if ARGV[i * 4] ~= '' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    values[i] = redis.call('ZCARD', key)
  else
    values[i] = tonumber(redis.call('GET', key) or '0')
  end
end
for i = 1, #KEYS do
  if values[i] >= tonumber(ARGV[i * 4 - 3]) then
    return {0, i - 1, unpack(values)}
  end
end
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[i * 4 - 1])
  if ARGV[i * 4] ~= '' then
    redis.call('ZADD', key, now_ms + ttl, ARGV[i * 4])
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
    values[i] = values[i] + 1
  else
    values[i] = redis.call('INCRBY', key, tonumber(ARGV[i * 4 - 2]))
    if ttl > 0 and redis.call('PTTL', key) < 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
return {1, -1, unpack(values)}
"""

# ARGV holds 2 values per counter: amount, holder. A slot is released by its holder;
# a window counter is adjusted only while its window lasts (an ended one has expired).
_ADD = """
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[i * 2 - 1])
  if ARGV[i * 2] ~= '' then
    if amount < 0 then
      redis.call('ZREM', key, ARGV[i * 2])
    end
  elseif redis.call('EXISTS', key) == 1 then
    redis.call('INCRBY', key, amount)
  end
end
return 0
"""


def _ttl_ms(counter: Counter, now: float) -> int:
    if counter.holder:
        return max(1, round(counter.lease_s * 1000))
    if counter.expires_at is None:
        return 0
    return max(1, round((counter.expires_at - now) * 1000))


class RedisStore:
    """A LimitStore on one Redis server, given by a redis:// or rediss:// URL."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 0.25,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._take = self._redis.register_script(_TAKE)
        self._add = self._redis.register_script(_ADD)
        self._retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self.where = f"Redis at {_describe(url)}"

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        now = time.monotonic()
        if now < self._down_until:
            raise StoreUnavailable(f"{self.where} is unreachable or failing")
        try:
            result = await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            if self._down_until == 0.0:
                # Not only "unreachable": a wrong password or a full server fails alike.
                log.warning(
                    "rate-limit store %s is unreachable or failing (%s: %s)",
                    self.where,
                    type(error).__name__,
                    error,
                )
            self._down_until = now + self._retry_s
            raise StoreUnavailable(f"{self.where} is unreachable or failing") from error
        if self._down_until:
            log.warning("rate-limit store %s is reachable again", self.where)
            self._down_until = 0.0
        return result

    async def take(self, counters: Sequence[Counter]) -> Taken:
        now = self._clock()
        args: list[Any] = []
        for counter in counters:
            args += [counter.limit, counter.amount, _ttl_ms(counter, now), counter.holder]
        result = await self._run(self._take, [c.key for c in counters], args)
        admitted, refused, *values = (int(v) for v in result)
        return Taken(bool(admitted), tuple(values), refused)

    async def add(self, counters: Sequence[Counter]) -> None:
        args: list[Any] = []
        for counter in counters:
            args += [counter.amount, counter.holder]
        await self._run(self._add, [c.key for c in counters], args)

    async def close(self) -> None:
        await self._redis.aclose()


def _describe(url: str) -> str:
    """host:port/db of a Redis URL, never its password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    db = parts.path.lstrip("/") or "0"
    return f"{host}:{port}/{db}"
