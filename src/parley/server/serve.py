"""Run the server: load models, bind, say "ready" once, serve until stopped, drain.

One process by default; with `workers` > 1, `server/workers.py` binds the socket
and runs `serve()` in each worker process on it.

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
import contextvars
import gc
import logging
import signal
import socket
from collections.abc import Callable, Coroutine, Generator
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from parley.config import Settings
from parley.server.app import create_app
from parley.server.connections import ConnectionLimits, protocol_class
from parley.server.logs import install_redaction
from parley.services import Services, start_services
from parley.store.database import open_database
from parley.store.keys import CreatedKey, KeyStore
from parley.telemetry.logs import configure_logging

log = logging.getLogger("parley")

# After the drain deadline: time for the cut responses to be written.
CUT_GRACE = 5.0

Announce = Callable[[str, Services], None]


def setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every upstream request at INFO; the engines log upstream failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # No key a client put in a URL or a header reaches a log line.
    install_redaction()


class _Server(uvicorn.Server):
    """uvicorn's Server, with an event set once its sockets are bound, and a drain
    in place of its shutdown on a signal."""

    def __init__(
        self, config: uvicorn.Config, svc: Services, signals: tuple[signal.Signals, ...]
    ) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._svc = svc
        self._signals = signals
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
            for sig in self._signals:
                previous = signal.signal(sig, self.handle_exit)
                stack.callback(signal.signal, sig, previous)
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started:
            self.should_exit = True
        else:
            # A fresh context: a handler runs inside whatever code the signal
            # interrupted, often a request's task, whose id the drain's log lines
            # would otherwise carry.
            self._loop.call_soon_threadsafe(self._on_signal, context=contextvars.Context())

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
                await asyncio.wait_for(lifecycle.wait_idle(), CUT_GRACE)
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


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run` for a serving process, on uvloop: an event loop in C, with uvicorn's
    protocol on its transports in place of asyncio's Python ones."""
    uvloop.run(main)


async def run(settings: Settings) -> None:
    """One process: create a key if there is none, then serve."""
    bootstrap = await bootstrap_key(settings)

    def announce(url: str, svc: Services) -> None:
        if bootstrap is not None:
            print_bootstrap_key(url, bootstrap)
        models = ", ".join(m.id for m in svc.registry.listing())
        log.info("Parley ready on %s (models: %s)", url, models)

    await serve(settings, announce)
    log.info("Parley stopped")


async def serve(
    settings: Settings,
    announce: Announce,
    sock: socket.socket | None = None,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """Start the services, serve on `sock` (or bind the configured address), call
    `announce` once requests are accepted, drain on one of `signals`, and stop
    everything when the server does."""
    svc = await start_services(settings)
    try:
        app = create_app(svc)
        settle_heap()
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            http=protocol_class(connection_limits(settings, svc.organization_id)),
            # No route speaks WebSocket; were a connection handed over to one (uvicorn
            # does when the library is installed), its HTTP deadlines would follow it.
            ws="none",
            log_config=None,
            log_level=settings.log_level,
            timeout_keep_alive=int(settings.keep_alive_timeout),
            # The drain has already waited; what is left is cut responses being written.
            timeout_graceful_shutdown=int(CUT_GRACE),
        )
        server = _Server(config, svc, signals)
        serving = asyncio.create_task(server.serve([sock] if sock is not None else None))
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            announce(settings.model_copy(update={"port": port}).base_url, svc)
        await serving
    finally:
        await svc.aclose()


def settle_heap() -> None:
    """What was built to start (modules, schemas, the services) lives as long as the
    process: frozen, the garbage collector no longer walks it. A full collection of
    that heap took about 90 ms, a pause for every request in flight, and came every
    few thousand requests; what requests leave behind is still collected."""
    gc.collect()
    gc.freeze()


async def bootstrap_key(settings: Settings) -> CreatedKey | None:
    """With no keys at all, one for the person starting the server."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = await open_database(settings.database)
    try:
        store = KeyStore(database)
        return await store.create("default") if await store.count() == 0 else None
    finally:
        await database.dispose()


def print_bootstrap_key(url: str, created: CreatedKey) -> None:
    # The one time a secret is printed: the key was created just now, for the person
    # starting the server, and is not stored in clear.
    print(
        "No API keys existed, so Parley created one. It is shown only this once:\n"
        f"export ANTHROPIC_BASE_URL={url}\n"
        f"export ANTHROPIC_API_KEY={created.secret}",
        flush=True,
    )
