"""SSE framing (api-spec §6.1, §6.4) and idle pings (§6.2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from parley.errors import APIError
from parley.protocol.stream import MessageStartEvent, PingEvent, StreamEvent


def frame(name: str, data: dict[str, Any]) -> bytes:
    # Every event is named: both SDKs drop events without an `event:` line (§6.1).
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def event_frame(event: BaseModel) -> bytes:
    data = event.model_dump(mode="json")
    if isinstance(event, MessageStartEvent):
        # api-version §19.7: stop_details travels only in message_delta.
        data["message"].pop("stop_details", None)
    return frame(data["type"], data)


def error_frame(error: APIError) -> bytes:
    return frame("error", {"type": "error", "error": error.to_error_object()})


async def with_pings(
    events: AsyncIterator[StreamEvent], interval: float
) -> AsyncIterator[StreamEvent]:
    """Yield `events`, adding a ping whenever none arrived for `interval` seconds.

    The source is read by a separate task so that waiting for it can time out
    without cancelling it; closing this iterator cancels that task, which closes
    the source (and with it the engine's generation).
    """
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(("event", event))
            await queue.put(("end", None))
        except Exception as exc:
            await queue.put(("error", exc))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), timeout=interval)
            except TimeoutError:
                yield PingEvent()
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
