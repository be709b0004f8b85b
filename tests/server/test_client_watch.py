"""ClientWatch ends a request's work when its client leaves, told either by the
connection (a `Signal` in the scope's extensions, as `parley serve` gives) or by
the ASGI `http.disconnect` (any other server), and only while the work runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from parley.core.lifecycle import Signal
from parley.server.client_watch import DEPARTURE, ClientWatch


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError


async def test_a_departure_cancels_the_work_without_a_task_reading_receive() -> None:
    departure = Signal()
    scope = {"extensions": {DEPARTURE: {"departure": departure}}}
    asyncio.get_running_loop().call_later(0.01, departure.fire)
    tasks = len(asyncio.all_tasks())
    during: list[int] = []

    async def work() -> None:
        async with ClientWatch(scope, never):
            during.append(len(asyncio.all_tasks()))
            await asyncio.sleep(10)

    with pytest.raises(ClientDisconnect):
        await work()
    assert during == [tasks]  # nothing waited on receive()


async def test_the_disconnect_message_cancels_the_work_elsewhere() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def work() -> None:
        async with ClientWatch({}, receive):
            await asyncio.sleep(10)

    with pytest.raises(ClientDisconnect):
        await work()


async def test_a_departure_after_the_work_cancels_nothing() -> None:
    departure = Signal()
    scope = {"extensions": {DEPARTURE: {"departure": departure}}}
    async with ClientWatch(scope, never, quiet=True) as watch:
        await asyncio.sleep(0)
    departure.fire()
    await asyncio.sleep(0.01)  # still running: the task was not cancelled
    assert watch.reason is None


async def test_a_client_already_gone_ends_the_work_at_its_first_wait() -> None:
    departure = Signal()
    departure.fire()
    scope = {"extensions": {DEPARTURE: {"departure": departure}}}
    async with ClientWatch(scope, never, quiet=True) as watch:
        await asyncio.sleep(10)
    assert watch.reason == "gone"
