"""Where bucket levels live: this process (default) or Redis (shared by replicas)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from parley.core.outages import Outage
from parley.ratelimit.buckets import Decision, Demand, decide, refill


class BucketsUnavailable(Exception):
    """The backend holding the buckets could not be reached in time."""


class BucketBackend(ABC):
    @abstractmethod
    async def take(self, demands: list[Demand], now: float) -> Decision:
        """Take every demand's amount, or none when any bucket is short."""

    @abstractmethod
    async def give(self, demand: Demand, now: float) -> None:
        """Return `demand.amount` (an unused reservation), capped at capacity."""

    def give_now(self, demand: Demand, now: float) -> bool:
        """`give` without waiting, where the buckets allow it; False where only
        `give` can (nothing was given)."""
        return False

    async def ping(self) -> None:  # noqa: B027 (optional hook)
        """Raise when the buckets cannot be reached (readiness probes)."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        pass


class MemoryBackend(BucketBackend):
    """Buckets in this process. Each call runs without awaiting, so it is atomic on
    the event loop."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}

    def _level(self, demand: Demand, now: float) -> float:
        level, updated = self._state.get(demand.key, (float(demand.capacity), now))
        return refill(level, updated, demand.capacity, now)

    async def take(self, demands: list[Demand], now: float) -> Decision:
        decision = decide([self._level(d, now) for d in demands], demands, now)
        if decision.allowed:
            for demand, reading in zip(demands, decision.readings, strict=True):
                self._state[demand.key] = (reading.level, now)
        return decision

    async def give(self, demand: Demand, now: float) -> None:
        self.give_now(demand, now)

    def give_now(self, demand: Demand, now: float) -> bool:
        level = min(float(demand.capacity), self._level(demand, now) + demand.amount)
        self._state[demand.key] = (level, now)
        return True


# KEYS: bucket keys. ARGV: now, then capacity and amount per key. Refills each bucket,
# takes from all when all suffice, and returns the levels as exact strings (%.17g;
# Lua numbers would be truncated to integers in the reply). The decision itself is re-derived in
# Python from the levels read, with the same `decide`, so both backends agree.
_TAKE = """
local function exact(x) return string.format('%.17g', x) end
local now = tonumber(ARGV[1])
local levels = {}
local ok = 1
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i])
  local amount = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'level', 'ts')
  local level = cap
  if state[1] then
    local elapsed = math.max(0, now - tonumber(state[2]))
    level = math.min(cap, tonumber(state[1]) + elapsed * cap / 60)
  end
  levels[i] = level
  if amount > level then ok = 0 end
end
local reply = {tostring(ok)}
for i = 1, #KEYS do
  local level = levels[i]
  if ok == 1 then
    level = level - tonumber(ARGV[2 * i + 1])
    redis.call('HSET', KEYS[i], 'level', exact(level), 'ts', ARGV[1])
    redis.call('EXPIRE', KEYS[i], 120)
  end
  reply[i + 1] = exact(levels[i])
end
return reply
"""

_GIVE = """
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
if not state[1] then return 0 end
local elapsed = math.max(0, now - tonumber(state[2]))
local level = math.min(cap, tonumber(state[1]) + elapsed * cap / 60 + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'ts', ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""


class RedisBackend(BucketBackend):
    """Buckets in Redis, updated by Lua scripts so that N replicas enforce one limit.
    A bucket untouched for two minutes is full again, so its key may expire.

    Every command has `timeout` seconds (to connect, and to answer); a Redis that is
    down or does not answer raises BucketsUnavailable, and the outage is logged once
    each way. Nothing here retries for long: a pooled connection that a restart
    dropped is tried once more on a fresh one, and that is all."""

    def __init__(self, url: str, prefix: str, *, timeout: float = 2.0) -> None:
        import redis.asyncio as redis  # only the Redis backend needs it
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self._redis: Any = redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        # RuntimeError: uvloop refuses to write on a connection the peer has already
        # reset, where asyncio's loop drops the bytes and the read then fails.
        self._errors = (RedisError, OSError, RuntimeError)
        self._prefix = prefix
        self._take = self._redis.register_script(_TAKE)
        self._give = self._redis.register_script(_GIVE)
        self.outage = Outage("Redis (rate limits)")

    def _key(self, demand: Demand) -> str:
        return f"{self._prefix}:rl:{demand.key}"

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            reply = await script(keys=keys, args=args)
        except self._errors as exc:
            self.outage.failed(exc)
            raise BucketsUnavailable(str(exc)) from exc
        self.outage.recovered()
        return reply

    async def take(self, demands: list[Demand], now: float) -> Decision:
        args: list[Any] = [repr(now)]
        for demand in demands:
            args += [demand.capacity, demand.amount]
        reply = await self._script(self._take, [self._key(d) for d in demands], args)
        levels = [float(v) for v in reply[1:]]  # exact, so `decide` agrees with Lua
        decision = decide(levels, demands, now)
        if decision.allowed != (reply[0] in (b"1", "1")):
            raise RuntimeError("Redis and local bucket decisions disagree")
        return decision

    async def give(self, demand: Demand, now: float) -> None:
        args = [repr(now), demand.capacity, demand.amount]
        await self._script(self._give, [self._key(demand)], args)

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
