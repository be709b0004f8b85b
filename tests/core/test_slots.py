"""SlotPool: a fixed set of engine slots with a bounded wait queue."""

from __future__ import annotations

import asyncio

import pytest

from parley.core.slots import Occupancy, SlotPool, background
from parley.errors import OverloadedError


async def settle() -> None:
    """Let waiting tasks run up to their next suspension."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_free_slots_are_handed_out_in_order() -> None:
    pool = SlotPool(["a", "b"], max_waiting=1)
    assert pool.size == 2
    assert pool.busy == 0
    assert await pool.acquire() == "a"
    assert await pool.acquire() == "b"
    assert pool.busy == 2
    assert pool.waiting == 0


async def test_admit_passes_while_a_slot_is_free() -> None:
    pool = SlotPool([0], max_waiting=0)
    pool.admit()
    slot = await pool.acquire()
    with pytest.raises(OverloadedError) as caught:
        pool.admit()
    assert caught.value.message == "Overloaded"
    assert caught.value.status == 529
    pool.release(slot)
    pool.admit()


async def test_admit_raises_when_slots_and_queue_are_full() -> None:
    pool = SlotPool([0], max_waiting=2)
    slot = await pool.acquire()
    first = asyncio.create_task(pool.acquire())
    await settle()
    pool.admit()  # one place left in the queue
    second = asyncio.create_task(pool.acquire())
    await settle()
    assert pool.waiting == 2
    with pytest.raises(OverloadedError):
        pool.admit()
    pool.release(slot)
    assert await first == 0
    pool.admit()  # the queue has room again
    pool.release(0)
    assert await second == 0
    pool.release(0)
    assert pool.busy == 0


async def test_release_hands_the_slot_to_the_oldest_waiter() -> None:
    pool = SlotPool(["only"], max_waiting=3)
    slot = await pool.acquire()
    order: list[str] = []

    async def wait(name: str) -> str:
        got = await pool.acquire()
        order.append(name)
        return got

    waiters = [asyncio.create_task(wait(n)) for n in ("first", "second", "third")]
    await settle()
    assert pool.waiting == 3
    pool.release(slot)
    await settle()
    assert order == ["first"]
    assert pool.busy == 1  # handed over, never put back on the free list
    assert pool.waiting == 2
    pool.release("only")
    pool.release("only")
    assert await asyncio.gather(*waiters) == ["only"] * 3
    assert order == ["first", "second", "third"]
    pool.release("only")
    assert pool.busy == 0


async def test_release_without_waiters_frees_the_slot() -> None:
    pool = SlotPool([1, 2], max_waiting=0)
    one = await pool.acquire()
    pool.release(one)
    assert pool.busy == 0
    assert {await pool.acquire(), await pool.acquire()} == {1, 2}


async def test_a_free_slot_does_not_jump_the_queue() -> None:
    pool = SlotPool([0], max_waiting=2)
    slot = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await settle()
    pool.release(slot)
    # The slot went to the waiter, so a newcomer has to wait behind it.
    newcomer = asyncio.create_task(pool.acquire())
    await settle()
    assert await waiter == 0
    assert not newcomer.done()
    pool.release(0)
    assert await newcomer == 0


async def test_cancelled_waiter_is_removed() -> None:
    pool = SlotPool([0], max_waiting=1)
    slot = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await settle()
    assert pool.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.waiting == 0
    pool.admit()  # its place in the queue is free again
    pool.release(slot)
    assert pool.busy == 0  # nobody left to hand it to


async def test_waiter_cancelled_as_the_slot_is_released() -> None:
    # Cancelled, then (before it runs) the slot is released: release() skips the
    # cancelled waiter, and the waiter still just reports its cancellation.
    pool = SlotPool([0], max_waiting=1)
    slot = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await settle()
    waiter.cancel()
    pool.release(slot)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.waiting == 0
    assert pool.busy == 0


async def test_waiter_cancelled_after_being_handed_a_slot() -> None:
    # Handed the slot, then cancelled before it could use it: the slot moves on.
    pool = SlotPool([0], max_waiting=2)
    slot = await pool.acquire()
    unlucky = asyncio.create_task(pool.acquire())
    next_in_line = asyncio.create_task(pool.acquire())
    await settle()
    pool.release(slot)
    unlucky.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unlucky
    assert await next_in_line == 0
    pool.release(0)
    assert pool.busy == 0
    assert pool.waiting == 0


async def test_admitted_requests_are_not_refused_when_they_queue() -> None:
    # Two requests admitted together (room for one more waiter at that moment) both
    # queue: refusing one after its response has started is too late (api-spec §6.4).
    pool = SlotPool([0], max_waiting=1)
    slot = await pool.acquire()
    pool.admit()
    pool.admit()
    first = asyncio.create_task(pool.acquire())
    second = asyncio.create_task(pool.acquire())
    await settle()
    assert pool.waiting == 2
    with pytest.raises(OverloadedError):
        pool.admit()
    pool.release(slot)
    assert await first == 0
    pool.release(0)
    assert await second == 0
    pool.release(0)
    assert pool.busy == 0


async def test_occupancy_counts_batch_work_apart() -> None:
    pool = SlotPool(["a", "b"], max_waiting=4)
    assert pool.occupancy() == Occupancy(2, 0, 0, 0, 0)

    async def batch_slot() -> str:
        with background():
            return await pool.acquire()

    interactive = await pool.acquire()
    batch = await batch_slot()
    waiting_batch = asyncio.create_task(batch_slot())  # one batch slot at most of two
    await settle()
    assert pool.occupancy() == Occupancy(2, 2, 0, 1, 1)
    waiting = asyncio.create_task(pool.acquire())
    await settle()
    assert pool.occupancy() == Occupancy(2, 2, 1, 1, 1)
    pool.release(interactive)  # to the interactive request waiting, before the batch one
    assert await waiting == interactive
    assert pool.occupancy() == Occupancy(2, 2, 0, 1, 1)
    pool.release(batch)
    assert await waiting_batch == batch
    assert pool.occupancy() == Occupancy(2, 2, 0, 1, 0)
