"""`parley serve`, `parley keys ...`: thin wrappers over library functions.

Contract: `parley keys create` prints the new secret, and only it, as the last
line on stdout; everything else goes to stderr. `parley serve` logs one line
containing "ready" once it accepts requests.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from parley.config import Settings, load_settings

log = logging.getLogger("parley")


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except Exception as exc:  # a bad config file or variable: say so, no traceback
        raise click.ClickException(f"invalid configuration: {exc}") from exc


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group()
@click.version_option(package_name="parley")
def main() -> None:
    """Parley: the Claude API, self-hosted."""


config_option = click.option(
    "--config", type=click.Path(path_type=Path, dir_okay=False), help="TOML config file."
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where keys and state live (default ~/.local/share/parley; env PARLEY_DATA_DIR).",
)


@main.command()
@click.option("--host", help="Interface to bind (default 127.0.0.1; env PARLEY_HOST).")
@click.option("--port", type=int, help="Port (default 8000, 0 picks a free one; env PARLEY_PORT).")
@data_dir_option
@config_option
def serve(host: str | None, port: int | None, data_dir: Path | None, config: Path | None) -> None:
    """Start the API server."""
    settings = _settings(config, host=host, port=port, data_dir=data_dir)
    _setup_logging(settings.log_level)
    from parley.server.serve import run

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        # uvicorn shut down gracefully, then re-raised the signal: a normal stop.
        log.info("Parley stopped")


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--name", required=True, help="A label for the key.")
@click.option("--tier", default="default", show_default=True, help="Rate-limit tier.")
@click.option("--admin", is_flag=True, help="An admin key (admin endpoints only).")
@data_dir_option
@config_option
def keys_create(
    name: str, tier: str, admin: bool, data_dir: Path | None, config: Path | None
) -> None:
    """Create a key and print its secret (shown only once)."""
    settings = _settings(config, data_dir=data_dir)

    async def create() -> str:
        from parley.store.database import open_database
        from parley.store.keys import KeyStore

        database = await open_database(settings.database)
        try:
            created = await KeyStore(database).create(name, tier=tier, admin=admin)
        finally:
            await database.dispose()
        click.echo(
            f"Created key {created.key.id} ({name}); the secret is shown only once:", err=True
        )
        return created.secret

    click.echo(asyncio.run(create()))
