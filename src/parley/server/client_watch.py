"""Stopping a request's work when its client goes away, or at a drain's deadline.

The work runs in the request's own task, and the watch cancels that task. Under
`parley serve` the connection says that its client went away by a callback
(a `Signal` in the scope's extensions; server/connections.py); under any other
ASGI server one small task reads the ASGI disconnect. The drain deadline is a
callback too. Starlette's way (an anyio task group around every streamed response,
and for plain requests one task for the work, one for the disconnect and one for the
deadline) cost about a fifth of a millisecond per request on the gateway path, which
has one millisecond in all (bench/gateway.py); the task for the disconnect alone,
about a hundredth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from parley.core.lifecycle import Lifecycle, Signal
from parley.errors import OverloadedError

Reason = Literal["gone", "cut"]

# The scope's extension a connection puts the `Signal` of its request's client leaving
# in (as `{"departure": ...}`): fired once the connection is lost (or given up on)
# before the response is complete.
DEPARTURE = "parley.departure"


class ClientWatch:
    """`async with ClientWatch(scope, receive, lifecycle):` cancels the block's task
    when the client disconnects, or (with a `lifecycle`) when the drain deadline passes;
    the cancellation it caused ends the block as `ClientDisconnect` or, at the deadline,
    `OverloadedError` (a retryable 529), so that the work's own clean-up (closing the
    generation, settling usage) has run before the answer is chosen.

    `quiet=True` ends the block without an exception instead: a stream that has
    started has nobody to tell.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        lifecycle: Lifecycle | None = None,
        *,
        quiet: bool = False,
    ) -> None:
        extension = (scope.get("extensions") or {}).get(DEPARTURE) or {}
        self._departure: Signal | None = extension.get("departure")
        self._receive = receive
        self._lifecycle = lifecycle
        self._quiet = quiet
        self.reason: Reason | None = None
        self._active = False

    async def __aenter__(self) -> ClientWatch:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._active = True
        self._forget_gone: Callable[[], object] | None = None
        if self._departure is not None:
            self._forget_gone = self._departure.on(self._gone)
        else:
            watcher = asyncio.ensure_future(_disconnected(self._receive))
            watcher.add_done_callback(self._client_gone)
        self._forget_cut = (
            self._lifecycle.on_cut(self._cut) if self._lifecycle is not None else None
        )
        return self

    def _gone(self) -> None:
        self._stop("gone")

    def _client_gone(self, watcher: asyncio.Future[bool]) -> None:
        if not watcher.cancelled() and watcher.result():
            self._stop("gone")

    def _cut(self) -> None:
        self._stop("cut")

    def _stop(self, reason: Reason) -> None:
        # Only while the block runs: uvicorn's receive also answers `http.disconnect`
        # once the response is complete, which must not cancel what follows it.
        if self._active and self.reason is None:
            self.reason = reason
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # No await before this: a cancellation asked for from here on is not the block's.
        # The watcher is left to end by itself: the server's `receive` answers
        # `http.disconnect` once the response is complete (or the connection gone).
        # Cancelling it cost a task step, and a block that never waited (a reply read
        # whole from an instant upstream) ends before the watcher has started, which
        # leaves its cancellation's traceback in a cycle with the task.
        self._active = False
        if self._forget_gone is not None:
            self._forget_gone()
        if self._forget_cut is not None:
            self._forget_cut()
        if self.reason is None:
            return False
        # The cancellation was this watch's own (it reached the block, which is the
        # only place the task could have been waiting): it goes no further.
        self._task.uncancel()
        if self._quiet:
            return exc_type is None or issubclass(exc_type, asyncio.CancelledError)
        if self.reason == "cut":
            raise OverloadedError()
        raise ClientDisconnect()


async def _disconnected(receive: Receive) -> bool:
    """True once the client has gone; False when the watch ends first. The watch's end
    is taken, not raised: a cancelled task keeps its exception, whose traceback holds
    the task, a cycle per request left for the garbage collector."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    except asyncio.CancelledError:
        return False
