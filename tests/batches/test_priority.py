"""SlotPool priorities: batch work (inside `background()`) yields to interactive requests."""

from __future__ import annotations

import asyncio

import pytest

from parley.core.slots import SlotPool, background
from parley.errors import OverloadedError


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def acquire_in_background(pool: SlotPool[str]) -> str:
    with background():
        return await pool.acquire()


async def test_background_work_never_takes_the_last_slot() -> None:
    pool = SlotPool(["a", "b", "c"], max_waiting=0)
    assert pool.max_background == 2
    first = await acquire_in_background(pool)
    second = await acquire_in_background(pool)
    third = asyncio.create_task(acquire_in_background(pool))
    await settle()
    assert not third.done()
    assert pool.busy_background == 2
    assert pool.waiting_background == 1
    # The slot left is an interactive request's, at once.
    assert await pool.acquire() == "c"
    pool.release(first)
    assert await third == first
    pool.release(second)
    pool.release(third.result())
    pool.release("c")
    assert pool.busy == 0


async def test_a_pool_of_one_slot_still_runs_background_work() -> None:
    pool = SlotPool(["only"], max_waiting=1)
    assert await acquire_in_background(pool) == "only"
    assert pool.busy_background == 1
    pool.release("only")
    assert pool.busy == 0


async def test_interactive_waiters_are_served_before_background_waiters() -> None:
    pool = SlotPool(["only"], max_waiting=5)
    held = await pool.acquire()
    order: list[str] = []

    async def take(name: str, in_background: bool) -> None:
        slot = await (acquire_in_background(pool) if in_background else pool.acquire())
        order.append(name)
        await asyncio.sleep(0)
        pool.release(slot)

    # Batch work queued first, interactive requests after it: they still go first.
    tasks = [asyncio.create_task(take("batch-1", True))]
    await settle()
    tasks.append(asyncio.create_task(take("batch-2", True)))
    tasks.append(asyncio.create_task(take("chat-1", False)))
    await settle()
    tasks.append(asyncio.create_task(take("chat-2", False)))
    await settle()
    assert pool.waiting == 2
    assert pool.waiting_background == 2
    pool.release(held)
    await asyncio.gather(*tasks)
    assert order == ["chat-1", "chat-2", "batch-1", "batch-2"]


async def test_a_free_slot_goes_to_an_interactive_newcomer_past_background_waiters() -> None:
    pool = SlotPool(["a", "b"], max_waiting=0)
    await acquire_in_background(pool)
    waiting = asyncio.create_task(acquire_in_background(pool))
    await settle()
    assert not waiting.done()  # "b" is kept for interactive work
    assert await pool.acquire() == "b"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.waiting_background == 0


async def test_background_work_is_never_refused_as_overloaded() -> None:
    pool = SlotPool(["only"], max_waiting=0)
    await pool.acquire()
    with pytest.raises(OverloadedError):
        pool.admit()
    with background():
        pool.admit()  # the batch worker bounds its own concurrency instead


async def test_releasing_interactive_slots_feeds_background_waiters() -> None:
    pool = SlotPool(["a", "b"], max_waiting=2)
    a = await pool.acquire()
    b = await pool.acquire()
    waiting = asyncio.create_task(acquire_in_background(pool))
    await settle()
    pool.release(a)
    assert await waiting == a
    assert pool.busy_background == 1
    pool.release(b)
    assert pool.busy == 1  # b went back to the free list: batch work has its one slot
    pool.release(a)
    assert pool.busy == 0
    assert pool.busy_background == 0
