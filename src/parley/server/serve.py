"""Run the server: load models, bind, say "ready" once, serve until stopped.

One process by default; with `workers` > 1, `server/workers.py` binds the socket
and runs `serve()` in each worker process on it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

from parley.config import Settings
from parley.server.app import create_app
from parley.services import Services, start_services
from parley.store.database import open_database
from parley.store.keys import CreatedKey, KeyStore
from parley.telemetry.logs import configure_logging

log = logging.getLogger("parley")


def setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every upstream request at INFO; the engines log upstream failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    """uvicorn's Server, with an event set once its sockets are bound."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


async def run(settings: Settings) -> None:
    """One process: create a key if there is none, then serve."""
    bootstrap = await bootstrap_key(settings)

    def announce(url: str, svc: Services) -> None:
        if bootstrap is not None:
            print_bootstrap_key(url, bootstrap)
        models = ", ".join(m.id for m in svc.registry.listing())
        log.info("Parley ready on %s (models: %s)", url, models)

    await serve(settings, announce)


async def serve(
    settings: Settings,
    announce: Callable[[str, Services], None],
    sock: socket.socket | None = None,
) -> None:
    """Start the services, serve on `sock` (or bind the configured address), call
    `announce` once requests are accepted, and stop everything when the server does."""
    svc = await start_services(settings)
    try:
        config = uvicorn.Config(
            create_app(svc),
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level=settings.log_level,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
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
