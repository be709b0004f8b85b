"""Run the server: load models, bind, say "ready" once, serve until stopped, drain.

SIGTERM (or SIGINT) starts a drain rather than uvicorn's own shutdown, whose fixed
grace cuts streams and whose re-raised signal ends the process before held usage is
written:
1. the listener stays open, and every new API request is answered with a retryable
   529 and `connection: close` (load balancers move on; `Services.draining` is set
   for readiness probes); responses still running get `connection: close` too;
2. the batch worker claims nothing new; requests in flight, streams and batch
   requests alike, may finish for `drain_timeout` seconds;
3. at the deadline, streams end with an `overloaded_error` event, plain requests get
   the 529, and batch requests still running are handed back for a re-run; each is
   settled (usage recorded) on the way out;
4. uvicorn closes the listener and the connections, the services stop (held usage is
   written), and the process exits with status 0.
A second signal skips what is left of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from types import FrameType

import uvicorn

from parley.config import Settings
from parley.server.app import create_app
from parley.server.connections import ConnectionLimits, protocol_class
from parley.server.logs import install_redaction
from parley.services import Services, start_services

log = logging.getLogger("parley")

# After the drain deadline: time for the cut responses to be written.
_CUT_GRACE = 5.0


class _Server(uvicorn.Server):
    """uvicorn's Server, with an event set once its sockets are bound, and a drain
    in place of its shutdown on a signal."""

    def __init__(self, config: uvicorn.Config, svc: Services) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._svc = svc
        self._loop = asyncio.get_running_loop()
        self._drain: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's own re-raises the signal at the end, which would kill the process
        # before the services are closed; signals here only start and hurry the drain.
        with contextlib.ExitStack() as stack:
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.signal(sig, self.handle_exit)
                stack.callback(signal.signal, sig, previous)
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started:
            self.should_exit = True
        else:
            self._loop.call_soon_threadsafe(self._on_signal)

    def _on_signal(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_task(self.drain(), name="drain")
            return
        log.warning("second signal: ending what is still running now")
        self._svc.lifecycle.cut_now()
        self.should_exit = True

    async def drain(self) -> None:
        settings, lifecycle = self._svc.settings, self._svc.lifecycle
        lifecycle.start_draining()
        self._svc.batch_worker.stop_claiming()
        log.info(
            "draining: %d requests in flight, %d batch requests running; up to %gs",
            lifecycle.in_flight,
            self._svc.batch_worker.running,
            settings.drain_timeout,
        )
        try:
            await asyncio.wait_for(self._idle(), settings.drain_timeout)
        except TimeoutError:
            log.warning(
                "drain deadline: ending %d requests and %d batch requests",
                lifecycle.in_flight,
                self._svc.batch_worker.running,
            )
            lifecycle.cut_now()
            await self._svc.batch_worker.hand_back()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lifecycle.wait_idle(), _CUT_GRACE)
        self.should_exit = True

    async def _idle(self) -> None:
        await self._svc.batch_worker.wait_idle()
        await self._svc.lifecycle.wait_idle()


def connection_limits(settings: Settings, organization_id: str) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        write_timeout=settings.write_timeout,
        max_connections=settings.max_connections,
        organization_id=organization_id,
    )


async def run(settings: Settings) -> None:
    install_redaction()
    svc = await start_services(settings)
    try:
        bootstrap = None
        if await svc.keys.store.count() == 0:
            bootstrap = await svc.keys.store.create("default")
        config = uvicorn.Config(
            create_app(svc),
            host=settings.host,
            port=settings.port,
            http=protocol_class(connection_limits(settings, svc.organization_id)),
            log_config=None,
            log_level=settings.log_level,
            timeout_keep_alive=int(settings.keep_alive_timeout),
            # The drain has already waited; what is left is cut responses being written.
            timeout_graceful_shutdown=int(_CUT_GRACE),
        )
        server = _Server(config, svc)
        serving = asyncio.create_task(server.serve())
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            actual = settings.model_copy(update={"port": port})
            if bootstrap is not None:
                # The one time a secret is printed: the key was created just now,
                # for the person starting the server, and is not stored in clear.
                print(
                    "No API keys existed, so Parley created one. It is shown only this once:\n"
                    f"export ANTHROPIC_BASE_URL={actual.base_url}\n"
                    f"export ANTHROPIC_API_KEY={bootstrap.secret}",
                    flush=True,
                )
            models = ", ".join(m.id for m in svc.registry.listing())
            log.info("Parley ready on %s (models: %s)", actual.base_url, models)
        await serving
    finally:
        await svc.aclose()
        log.info("Parley stopped")
