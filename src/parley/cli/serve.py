"""`parley serve`: the API server."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from parley.cli.shared import config_option, data_dir_option, read_settings

log = logging.getLogger("parley")


@click.command()
@click.option("--host", help="Interface to bind (default 127.0.0.1; env PARLEY_HOST).")
@click.option("--port", type=int, help="Port (default 8000, 0 picks a free one; env PARLEY_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes serving the port (default 1; env PARLEY_WORKERS).",
)
@data_dir_option
@config_option
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Start the API server."""
    settings = read_settings(config, host=host, port=port, workers=workers, data_dir=data_dir)
    from parley.server.serve import run, run_loop, setup_logging
    from parley.telemetry.tracing import TracingUnavailable

    setup_logging(settings)
    try:
        if settings.workers > 1:
            from parley.server.workers import run_workers

            run_workers(settings)
        else:
            run_loop(run(settings))
    except TracingUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
