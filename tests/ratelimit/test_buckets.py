"""Token-bucket maths with an injected clock: continuous refill (never fixed
windows), burst then steady rate, all-or-nothing, retry waits (api-spec §15)."""

from __future__ import annotations

import math

import pytest

from parley.ratelimit.backends import MemoryBackend
from parley.ratelimit.buckets import Demand, Reading, decide, refill
from tests.clock import T0, FakeClock


def one(capacity: int, amount: int = 1, key: str = "k") -> list[Demand]:
    return [Demand(key, capacity, amount)]


# --- refill ---------------------------------------------------------------------


def test_refill_is_continuous_at_capacity_per_minute() -> None:
    # 60 per minute is one per second, and every fraction of a second counts.
    assert refill(0.0, T0, 60, T0 + 1) == pytest.approx(1.0)
    assert refill(0.0, T0, 60, T0 + 0.25) == pytest.approx(0.25)
    assert refill(0.0, T0, 60, T0 + 30) == pytest.approx(30.0)
    assert refill(0.0, T0, 6, T0 + 5) == pytest.approx(0.5)
    assert refill(2.5, T0, 600, T0 + 0.1) == pytest.approx(3.5)


def test_refill_never_passes_capacity_nor_runs_backwards() -> None:
    assert refill(0.0, T0, 60, T0 + 3600) == 60.0
    assert refill(59.5, T0, 60, T0 + 1) == 60.0
    # A clock that steps back (another replica's clock a little behind) adds nothing.
    assert refill(10.0, T0, 60, T0 - 5) == 10.0


# --- decide ---------------------------------------------------------------------


def test_decide_takes_from_every_bucket_when_all_suffice() -> None:
    demands = [Demand("r", 10, 1), Demand("i", 1000, 200), Demand("o", 500, 500)]
    decision = decide([10.0, 250.0, 500.0], demands, T0)
    assert decision.allowed
    assert decision.blocking is None
    assert decision.wait is None
    assert [r.level for r in decision.readings] == [9.0, 50.0, 0.0]
    assert [r.capacity for r in decision.readings] == [10, 1000, 500]


def test_decide_is_all_or_nothing() -> None:
    demands = [Demand("r", 10, 1), Demand("i", 1000, 200), Demand("o", 600, 100)]
    decision = decide([10.0, 1000.0, 40.0], demands, T0)
    assert not decision.allowed
    assert decision.blocking == 2
    # Nothing is taken from the buckets that had enough.
    assert [r.level for r in decision.readings] == [10.0, 1000.0, 40.0]
    # 60 tokens short at 10 per second.
    assert decision.wait == pytest.approx(6.0)


def test_decide_reports_the_longest_wait() -> None:
    demands = [Demand("a", 60, 2), Demand("b", 60, 10), Demand("c", 60, 5)]
    decision = decide([1.0, 0.0, 4.0], demands, T0)
    assert not decision.allowed
    assert decision.blocking == 1
    assert decision.wait == pytest.approx(10.0)


@pytest.mark.parametrize("order", ["short-first", "too-big-first"])
def test_demand_larger_than_capacity_never_fits(order: str) -> None:
    short = Demand("short", 60, 5)  # would fit after 5 s
    too_big = Demand("big", 100, 101)  # never fits, however long one waits
    demands = [short, too_big] if order == "short-first" else [too_big, short]
    decision = decide([0.0, 100.0] if order == "short-first" else [100.0, 0.0], demands, T0)
    assert not decision.allowed
    assert decision.blocking == demands.index(too_big)
    assert decision.wait is None


def test_demand_equal_to_capacity_fits_a_full_bucket() -> None:
    decision = decide([100.0], one(100, 100), T0)
    assert decision.allowed
    assert decision.readings[0].level == 0.0


def test_zero_demand_always_fits_and_only_reads() -> None:
    decision = decide([0.0], one(100, 0), T0)
    assert decision.allowed
    assert decision.readings[0].level == 0.0


# --- readings -------------------------------------------------------------------


def test_reading_remaining_is_whole_and_reset_is_when_full() -> None:
    reading = Reading(capacity=60, level=12.7, now=T0)
    assert reading.remaining == 12
    # 47.3 tokens missing at one per second.
    assert reading.reset_at == pytest.approx(T0 + 47.3)
    full = Reading(capacity=60, level=60.0, now=T0)
    assert full.remaining == 60
    assert full.reset_at == T0
    assert Reading(capacity=60, level=-0.0, now=T0).remaining == 0


# --- a bucket over time (the in-process backend, clock injected) -------------------


async def take(backend: MemoryBackend, clock: FakeClock, capacity: int, amount: int = 1) -> bool:
    return (await backend.take(one(capacity, amount), clock())).allowed


async def test_burst_of_capacity_then_a_steady_rate() -> None:
    backend, clock = MemoryBackend(), FakeClock()
    # A full bucket allows a burst of its whole capacity at once...
    burst = [await take(backend, clock, 60) for _ in range(61)]
    assert burst.count(True) == 60
    assert burst[-1] is False
    # ...then exactly one more per second (60 per minute), never two.
    for _ in range(10):
        clock.advance(0.5)
        assert not await take(backend, clock, 60)
        clock.advance(0.5)
        assert await take(backend, clock, 60)
        assert not await take(backend, clock, 60)


async def test_no_fresh_allowance_at_a_minute_boundary() -> None:
    """A fixed window would hand out a new 60 at 08:01:00; a bucket drained at
    08:00:59 holds just one token a second later."""
    backend = MemoryBackend()
    clock = FakeClock(T0 + 59)
    assert all([await take(backend, clock, 60) for _ in range(60)])
    clock.advance(1.0)  # T0 + 60: the next calendar minute
    results = [await take(backend, clock, 60) for _ in range(60)]
    assert results.count(True) == 1


async def test_over_several_minutes_admits_capacity_plus_rate_times_time() -> None:
    backend, clock = MemoryBackend(), FakeClock()
    admitted = 0
    # Someone trying 10 times a second for 3 minutes against 30 per minute.
    for _ in range(1800):
        admitted += await take(backend, clock, 30)
        clock.advance(0.1)
    # The initial burst of 30, then 30 per minute for 3 minutes (give or take one).
    assert 30 + 90 - 1 <= admitted <= 30 + 90


async def test_waiting_the_reported_time_is_enough_and_never_too_much() -> None:
    backend, clock = MemoryBackend(), FakeClock()
    for capacity, amount in [(60, 1), (7, 3), (1000, 250), (3, 3)]:
        key = f"k{capacity}"
        demand = [Demand(key, capacity, capacity)]
        assert (await backend.take(demand, clock())).allowed  # drain it
        refused = await backend.take([Demand(key, capacity, amount)], clock())
        assert not refused.allowed
        assert refused.wait is not None
        assert refused.wait == pytest.approx(amount * 60 / capacity)
        clock.advance(refused.wait * 0.99)
        assert not (await backend.take([Demand(key, capacity, amount)], clock())).allowed
        clock.advance(refused.wait * 0.01 + 1e-6)
        assert (await backend.take([Demand(key, capacity, amount)], clock())).allowed


async def test_a_refusal_takes_nothing_from_any_bucket() -> None:
    backend, clock = MemoryBackend(), FakeClock()
    assert (await backend.take([Demand("b", 10, 8)], clock())).allowed
    refused = await backend.take([Demand("a", 10, 5), Demand("b", 10, 5)], clock())
    assert not refused.allowed
    assert refused.blocking == 1
    # `a` is still full: all 10 can be taken.
    assert (await backend.take([Demand("a", 10, 10)], clock())).allowed


async def test_give_returns_tokens_but_never_past_capacity() -> None:
    backend, clock = MemoryBackend(), FakeClock()
    assert (await backend.take(one(10, 7), clock())).allowed
    await backend.give(Demand("k", 10, 4), clock())
    reading = (await backend.take(one(10, 0), clock())).readings[0]
    assert reading.level == pytest.approx(7.0)
    await backend.give(Demand("k", 10, 100), clock())
    assert (await backend.take(one(10, 0), clock())).readings[0].level == 10.0
    # Giving to a bucket never used leaves it full, not over-full.
    await backend.give(Demand("fresh", 10, 5), clock())
    assert (await backend.take(one(10, 10, key="fresh"), clock())).allowed
    assert not (await backend.take(one(10, 1, key="fresh"), clock())).allowed


def test_rate_is_capacity_per_sixty_seconds() -> None:
    assert Demand("k", 60, 1).rate == 1.0
    assert math.isclose(Demand("k", 4000, 1).rate, 4000 / 60)
