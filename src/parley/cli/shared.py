"""What the command modules share: common options, the settings, the store.

Heavy imports (the store, the engines, rich) wait inside the commands that need
them, so that every command starts quickly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from parley.config import Settings, load_settings

if TYPE_CHECKING:
    from parley.store.database import Database

T = TypeVar("T")

config_option = click.option(
    "--config", type=click.Path(path_type=Path, dir_okay=False), help="TOML config file."
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where keys and state live (default ~/.local/share/parley; env PARLEY_DATA_DIR).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")


def read_settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except Exception as exc:  # a bad config file or variable: say so, no traceback
        raise click.ClickException(f"invalid configuration: {exc}") from exc


def with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` against the configured store (SQLite in the data dir, or the
    PostgreSQL at `database_url`), migrated like the server's."""

    async def run() -> T:
        from parley.store.database import DatabaseUnavailable, open_database

        try:
            database = await open_database(settings.database)
        except DatabaseUnavailable as exc:
            raise click.ClickException(f"cannot open the database: {exc}") from exc
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())
