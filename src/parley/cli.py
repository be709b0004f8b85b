"""`parley serve`, `keys`, `usage`, `batches`, `models`: thin wrappers over library functions.

Contract: `parley keys create` prints the new secret, and only it, as the last
line on stdout; everything else goes to stderr. `parley keys revoke` prints the
revoked key's id on stdout. `parley serve` logs one line containing "ready" once
it accepts requests. `--json` output is for scripts; tables are for people.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from parley.config import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from parley.reports import Period

log = logging.getLogger("parley")
T = TypeVar("T")


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except Exception as exc:  # a bad config file or variable: say so, no traceback
        raise click.ClickException(f"invalid configuration: {exc}") from exc


def _with_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` against the configured store (SQLite in the data dir, or the
    PostgreSQL at `database_url`), migrated like the server's."""

    async def run() -> T:
        from sqlalchemy.exc import SQLAlchemyError

        from parley.store.database import open_database

        try:
            database = await open_database(settings.database)
        except (OSError, SQLAlchemyError) as exc:
            # The message names the server, never the URL (which may hold a password).
            raise click.ClickException(f"cannot open the database: {exc}") from exc
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _when(text: str | None, now: datetime, option: str) -> datetime | None:
    from parley.reports import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every upstream request at INFO; the engines log upstream failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)


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
@click.option(
    "--browser-access/--no-browser-access",
    default=True,
    show_default=True,
    help="Whether pages in a browser may call the API with this key.",
)
@data_dir_option
@config_option
def keys_create(
    name: str,
    tier: str,
    admin: bool,
    browser_access: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Create a key and print its secret (shown only once)."""
    from parley.store.keys import KeyStore

    settings = _settings(config, data_dir=data_dir)
    created = _with_database(
        settings,
        lambda db: KeyStore(db).create(name, tier=tier, admin=admin, browser_access=browser_access),
    )
    click.echo(f"Created key {created.key.id} ({name}); the secret is shown only once:", err=True)
    click.echo(created.secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@data_dir_option
@config_option
def keys_list(as_json: bool, data_dir: Path | None, config: Path | None) -> None:
    """List keys, newest first (never their secrets)."""
    from parley import reports
    from parley.store.keys import KeyStore

    settings = _settings(config, data_dir=data_dir)
    keys = _with_database(settings, lambda db: KeyStore(db).list())
    if as_json:
        click.echo(json.dumps([reports.key_record(key) for key in keys], indent=2))
    else:
        reports.render_keys(keys, reports.console())


@keys.command("update")
@click.argument("key_id")
@click.option("--name", help="A new label.")
@click.option(
    "--browser-access/--no-browser-access",
    default=None,
    help="Allow or refuse requests from pages in a browser.",
)
@data_dir_option
@config_option
def keys_update(
    key_id: str,
    name: str | None,
    browser_access: bool | None,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Rename a key or switch its browser access; every server applies it at once."""
    from parley.store.keys import KeyNotFound, KeyStore

    settings = _settings(config, data_dir=data_dir)
    try:
        key = _with_database(
            settings,
            lambda db: KeyStore(db).update(key_id, name=name, browser_access=browser_access),
        )
    except KeyNotFound:
        raise click.ClickException(f"no API key with id {key_id}") from None
    access = "allowed" if key.browser_access else "refused"
    click.echo(f"Key {key.id} ({key.name}): browser access {access}.", err=True)
    click.echo(key.id)


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
@config_option
def keys_revoke(key_id: str, data_dir: Path | None, config: Path | None) -> None:
    """Revoke (archive) a key: every server refuses it from its next request on."""
    from parley.store.keys import KeyNotFound, KeyStore

    settings = _settings(config, data_dir=data_dir)
    try:
        key = _with_database(settings, lambda db: KeyStore(db).revoke(key_id))
    except KeyNotFound:
        raise click.ClickException(f"no API key with id {key_id}") from None
    click.echo(f"Revoked key {key.id} ({key.name}).", err=True)
    click.echo(key.id)


@main.command()
@click.option("--key", "key_ids", multiple=True, help="Only this key id (repeatable).")
@click.option("--since", help="Start: a time (2025-01-31T12:00:00Z) or a time ago (1h, 2d).")
@click.option("--until", help="End (exclusive), in the same forms as --since.")
@click.option(
    "--by",
    "period",
    type=click.Choice(["minute", "hour", "day"]),
    default="day",
    show_default=True,
    help="Period of each row.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@data_dir_option
@config_option
def usage(
    key_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    period: Period,
    as_json: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Requests and tokens per period, key and model (all recorded usage by default)."""
    from parley import reports
    from parley.store.keys import KeyStore
    from parley.store.usage import UsageStore

    settings = _settings(config, data_dir=data_dir)
    now = datetime.now(UTC)
    start = _when(since, now, "--since")
    end = _when(until, now, "--until")

    summary = _with_database(
        settings,
        lambda db: reports.usage_summary(
            UsageStore(db),
            KeyStore(db),
            since=start,
            until=end,
            key_ids=list(key_ids),
            period=period,
        ),
    )
    if as_json:
        click.echo(json.dumps(reports.usage_json(summary), indent=2))
    else:
        reports.render_usage(summary, reports.console())


# -- batches: over HTTP, with a key, because a batch belongs to the key that created it.

base_url_option = click.option(
    "--base-url",
    envvar="ANTHROPIC_BASE_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The Parley server (env ANTHROPIC_BASE_URL).",
)
api_key_option = click.option(
    "--api-key",
    envvar="ANTHROPIC_API_KEY",
    required=True,
    help="The key that owns the batches (env ANTHROPIC_API_KEY).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")


def _batch_call(work: Callable[[], T]) -> T:
    from parley.batches.client import BatchClientError, InvalidBatchFile

    try:
        return work()
    except (BatchClientError, InvalidBatchFile) as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def batches() -> None:
    """Message Batches on a running server (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY).

    Commands that name one batch print its id as the last line on stdout; `results`
    writes the JSONL results there.
    """


@batches.command("create")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--wait", is_flag=True, help="Show progress until the batch has ended.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@json_option
@base_url_option
@api_key_option
def batches_create(
    file: Path, wait: bool, interval: float, as_json: bool, base_url: str, api_key: str
) -> None:
    """Create a batch from FILE: one `{"custom_id": ..., "params": {...}}` per line."""
    from parley.batches.client import BatchClient
    from parley.batches.views import console, render_batch, wait_with_progress

    err = console(stderr=True)
    with BatchClient(base_url, api_key) as client:
        batch = _batch_call(lambda: client.create(file))
        total = batch["request_counts"]["processing"]
        err.print(f"Created batch {batch['id']} with {total} requests.")
        if wait:
            batch = _batch_call(
                lambda: wait_with_progress(lambda: client.retrieve(batch["id"]), err, interval)
            )
            render_batch(batch, err)
    click.echo(json.dumps(batch, indent=2) if as_json else batch["id"])


@batches.command("list")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@json_option
@base_url_option
@api_key_option
def batches_list(limit: int, as_json: bool, base_url: str, api_key: str) -> None:
    """List this key's batches, newest first."""
    from parley.batches.client import BatchClient
    from parley.batches.views import console, render_batches

    with BatchClient(base_url, api_key) as client:
        listed = _batch_call(lambda: client.list(limit))
    if as_json:
        click.echo(json.dumps(listed, indent=2))
    else:
        render_batches(listed, console())


@batches.command("show")
@click.argument("batch_id")
@json_option
@base_url_option
@api_key_option
def batches_show(batch_id: str, as_json: bool, base_url: str, api_key: str) -> None:
    """Show one batch: status, request counts, times."""
    from parley.batches.client import BatchClient
    from parley.batches.views import console, render_batch

    with BatchClient(base_url, api_key) as client:
        batch, _ = _batch_call(lambda: client.retrieve(batch_id))
    if as_json:
        click.echo(json.dumps(batch, indent=2))
    else:
        render_batch(batch, console())


@batches.command("results")
@click.argument("batch_id")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="A file, not stdout."
)
@base_url_option
@api_key_option
def batches_results(batch_id: str, output: Path | None, base_url: str, api_key: str) -> None:
    """Write an ended batch's results as JSONL (one line per request)."""
    from parley.batches.client import BatchClient

    def copy() -> None:
        with BatchClient(base_url, api_key) as client:
            if output is None:
                for chunk in client.results(batch_id):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                return
            with output.open("wb") as out:
                for chunk in client.results(batch_id):
                    out.write(chunk)

    _batch_call(copy)


@batches.command("cancel")
@click.argument("batch_id")
@json_option
@base_url_option
@api_key_option
def batches_cancel(batch_id: str, as_json: bool, base_url: str, api_key: str) -> None:
    """Cancel a batch: requests that have not run end as `canceled`."""
    from parley.batches.client import BatchClient

    with BatchClient(base_url, api_key) as client:
        batch = _batch_call(lambda: client.cancel(batch_id))
    click.echo(f"Batch {batch['id']} is {batch['processing_status']}.", err=True)
    click.echo(json.dumps(batch, indent=2) if as_json else batch["id"])


@main.group()
def models() -> None:
    """The configured models and their backends."""


@models.command("list")
@click.option("--no-check", is_flag=True, help="Do not health-check the backends.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@config_option
def models_list(no_check: bool, as_json: bool, config: Path | None) -> None:
    """Models with their backends, each health-checked now: upstream servers are asked
    directly (nothing is started); a local engine's model file is looked for."""
    from parley import model_report
    from parley.reports import console

    settings = _settings(config)
    # Each unreachable backend is reported in the output; no log lines besides.
    logging.getLogger("parley.engines").setLevel(logging.ERROR)
    found = asyncio.run(model_report.model_statuses(settings, check=not no_check))
    if as_json:
        click.echo(json.dumps(model_report.models_json(found), indent=2))
    else:
        model_report.render_models(found, console())
