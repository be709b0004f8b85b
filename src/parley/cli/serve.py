"""`parley serve`: the API server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from parley.cli.shared import config_option, data_dir_option, read_settings
from parley.config import Settings

log = logging.getLogger("parley")


def _setup_logging(settings: Settings) -> None:
    from parley.telemetry.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every upstream request at INFO; the engines log upstream failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@click.command()
@click.option("--host", help="Interface to bind (default 127.0.0.1; env PARLEY_HOST).")
@click.option("--port", type=int, help="Port (default 8000, 0 picks a free one; env PARLEY_PORT).")
@data_dir_option
@config_option
def serve(host: str | None, port: int | None, data_dir: Path | None, config: Path | None) -> None:
    """Start the API server."""
    settings = read_settings(config, host=host, port=port, data_dir=data_dir)
    _setup_logging(settings)
    from parley.server.serve import run
    from parley.telemetry.tracing import TracingUnavailable

    try:
        asyncio.run(run(settings))
    except TracingUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        # uvicorn shut down gracefully, then re-raised the signal: a normal stop.
        log.info("Parley stopped")
