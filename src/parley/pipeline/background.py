"""Work that outlives the request that started it, tracked so shutdown waits for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from parley.store import database

log = logging.getLogger(__name__)


class BackgroundWork:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background. Used from `finally` blocks of cancelled
        requests too, where awaiting is not safe."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if database.unavailable(exc):
            database.OUTAGE.failed(exc)  # one line per outage, not one per write
        else:
            log.error("background write failed: %r", exc)

    async def drain(self) -> None:
        """Wait until nothing is running, including work spawned meanwhile."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
