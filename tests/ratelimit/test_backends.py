"""Both bucket backends behave alike, and stay exact under concurrency; the Redis
one also across separate backend instances (replicas) sharing one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from parley.ratelimit.backends import BucketBackend, MemoryBackend, RedisBackend
from parley.ratelimit.buckets import Demand
from tests.clock import T0, FakeClock
from tests.pg import fresh_redis_prefix

MakeBackend = Callable[[], BucketBackend]


@pytest.fixture(params=["memory", "redis"])
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    """Makes backends that share state, as replicas do: for Redis each call is a
    separate client on the same prefix; in memory there is one process, so one
    backend."""
    made: list[BucketBackend] = []
    if request.param == "memory":
        shared = MemoryBackend()
        made.append(shared)

        def make() -> BucketBackend:
            return shared

    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")

        def make() -> BucketBackend:
            backend = RedisBackend(url, prefix)
            made.append(backend)
            return backend

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture
def backend(make_backend: MakeBackend) -> BucketBackend:
    return make_backend()


async def level(backend: BucketBackend, key: str, capacity: int, now: float) -> float:
    return (await backend.take([Demand(key, capacity, 0)], now)).readings[0].level


async def test_a_new_bucket_is_full(backend: BucketBackend) -> None:
    decision = await backend.take([Demand("k", 10, 3)], T0)
    assert decision.allowed
    assert decision.readings[0].level == 7.0
    assert decision.readings[0].remaining == 7
    assert decision.readings[0].capacity == 10


async def test_refill_is_continuous_and_exact(backend: BucketBackend) -> None:
    assert (await backend.take([Demand("k", 60, 60)], T0)).allowed
    assert await level(backend, "k", 60, T0 + 0.25) == pytest.approx(0.25)
    assert await level(backend, "k", 60, T0 + 1.5) == pytest.approx(1.5)
    refused = await backend.take([Demand("k", 60, 2)], T0 + 1.5)
    assert not refused.allowed
    assert refused.wait == pytest.approx(0.5)
    assert (await backend.take([Demand("k", 60, 2)], T0 + 2.0)).allowed
    assert await level(backend, "k", 60, T0 + 2.0) == pytest.approx(0.0)
    assert await level(backend, "k", 60, T0 + 600) == 60.0


async def test_burst_then_steady_rate_across_a_minute_boundary(backend: BucketBackend) -> None:
    clock = FakeClock(T0 + 58)
    burst = [(await backend.take([Demand("k", 30, 1)], clock())).allowed for _ in range(31)]
    assert burst.count(True) == 30
    admitted = 0
    for _ in range(32):  # 4 s at 8 tries a second, across 08:01:00
        clock.advance(0.125)
        admitted += (await backend.take([Demand("k", 30, 1)], clock())).allowed
    assert admitted == 2  # half a token a second, not a fresh 30 at the boundary


async def test_all_or_nothing(backend: BucketBackend) -> None:
    assert (await backend.take([Demand("b", 10, 8)], T0)).allowed
    refused = await backend.take([Demand("a", 10, 5), Demand("b", 10, 5)], T0)
    assert not refused.allowed
    assert refused.blocking == 1
    assert refused.wait == pytest.approx(18.0)  # 3 short at 1/6 per second
    assert [r.level for r in refused.readings] == [10.0, 2.0]
    assert await level(backend, "a", 10, T0) == 10.0
    assert await level(backend, "b", 10, T0) == 2.0


async def test_demand_larger_than_capacity_has_no_wait(backend: BucketBackend) -> None:
    refused = await backend.take([Demand("r", 100, 1), Demand("o", 100, 101)], T0)
    assert not refused.allowed
    assert refused.blocking == 1
    assert refused.wait is None
    assert await level(backend, "r", 100, T0) == 100.0


async def test_give_is_capped_at_capacity(backend: BucketBackend) -> None:
    assert (await backend.take([Demand("k", 10, 7)], T0)).allowed
    await backend.give(Demand("k", 10, 4), T0)
    assert await level(backend, "k", 10, T0) == pytest.approx(7.0)
    await backend.give(Demand("k", 10, 100), T0 + 1)
    assert await level(backend, "k", 10, T0 + 1) == 10.0
    await backend.give(Demand("fresh", 10, 5), T0)
    assert await level(backend, "fresh", 10, T0) == 10.0


async def test_give_counts_the_refill_since_the_last_update(backend: BucketBackend) -> None:
    assert (await backend.take([Demand("k", 60, 60)], T0)).allowed
    await backend.give(Demand("k", 60, 10), T0 + 5)  # 5 refilled + 10 given back
    assert await level(backend, "k", 60, T0 + 5) == pytest.approx(15.0)


async def test_buckets_are_independent(backend: BucketBackend) -> None:
    assert (await backend.take([Demand("x", 5, 5)], T0)).allowed
    assert not (await backend.take([Demand("x", 5, 1)], T0)).allowed
    assert (await backend.take([Demand("y", 5, 5)], T0)).allowed


async def test_concurrent_takes_are_exact(make_backend: MakeBackend) -> None:
    """200 concurrent takes of 1 from a bucket of 50 at a frozen instant (from two
    clients for Redis, as from two replicas): exactly 50 succeed."""
    first, second = make_backend(), make_backend()
    decisions = await asyncio.gather(
        *[(first if i % 2 else second).take([Demand("hot", 50, 1)], T0) for i in range(200)]
    )
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 50
    # Every success saw a distinct level: no two took the same token.
    assert sorted(d.readings[0].remaining for d in allowed) == list(range(50))
    assert all(d.wait == pytest.approx(1.2) for d in decisions if not d.allowed)
    assert await level(first, "hot", 50, T0) == 0.0


async def test_concurrent_multi_bucket_takes_are_exact(make_backend: MakeBackend) -> None:
    """Each take needs 1 request (of 50) and 3 tokens (of 100): the token bucket binds at
    33, and the request bucket loses exactly those 33, not one more."""
    first, second = make_backend(), make_backend()
    demands = [Demand("req", 50, 1), Demand("tok", 100, 3)]
    decisions = await asyncio.gather(
        *[(first if i % 2 else second).take(demands, T0) for i in range(120)]
    )
    assert sum(d.allowed for d in decisions) == 33
    assert await level(second, "req", 50, T0) == 17.0
    assert await level(second, "tok", 100, T0) == 1.0


async def test_concurrent_takes_and_gives_balance(make_backend: MakeBackend) -> None:
    first, second = make_backend(), make_backend()
    assert (await first.take([Demand("k", 1000, 1000)], T0)).allowed

    async def give_then_take(backend: BucketBackend) -> bool:
        await backend.give(Demand("k", 1000, 5), T0)
        return (await backend.take([Demand("k", 1000, 3)], T0)).allowed

    results = await asyncio.gather(*[give_then_take((first, second)[i % 2]) for i in range(100)])
    assert all(results)
    assert await level(first, "k", 1000, T0) == pytest.approx(200.0)


async def test_redis_prefixes_keep_deployments_apart(redis_url: str, redis_prefix: str) -> None:
    with fresh_redis_prefix() as other_prefix:
        one = RedisBackend(redis_url, redis_prefix)
        other = RedisBackend(redis_url, other_prefix)
        try:
            assert (await one.take([Demand("k", 3, 3)], T0)).allowed
            assert (await other.take([Demand("k", 3, 3)], T0)).allowed
            assert not (await one.take([Demand("k", 3, 1)], T0)).allowed
        finally:
            await one.aclose()
            await other.aclose()


async def test_redis_state_expires_once_it_would_be_full(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as redis

    backend = RedisBackend(redis_url, redis_prefix)
    client = redis.from_url(redis_url)
    try:
        assert (await backend.take([Demand("k", 60, 10)], T0)).allowed
        ttl = await client.ttl(f"{redis_prefix}:rl:k")
        # Any bucket refills completely within 60 s, so a key left alone may go.
        assert 60 <= ttl <= 120
    finally:
        await client.aclose()
        await backend.aclose()


async def test_redis_connections_dropped_by_the_server_are_replaced_without_an_outage(
    redis_url: str, redis_prefix: str
) -> None:
    # A Redis restart (or a proxy's idle timeout) leaves the pool's connections dead;
    # the next command is tried once more on a fresh one instead of failing.
    import redis.asyncio as redis

    backend = RedisBackend(redis_url, redis_prefix)
    admin = redis.from_url(redis_url)
    try:
        assert (await backend.take([Demand("k", 60, 1)], T0)).allowed
        await admin.client_setname("parley-test-admin")
        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert (await backend.take([Demand("k", 60, 1)], T0)).allowed
        assert backend.outage.failures == 0
    finally:
        await admin.aclose()
        await backend.aclose()
