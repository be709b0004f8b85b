"""Run the server: load models, bind, say "ready" once, serve until stopped."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from parley.config import Settings
from parley.server.app import create_app
from parley.services import start_services

log = logging.getLogger("parley")


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
    svc = await start_services(settings)
    try:
        bootstrap = None
        if await svc.keys.store.count() == 0:
            bootstrap = await svc.keys.store.create("default")
        config = uvicorn.Config(
            create_app(svc),
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level=settings.log_level,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
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
