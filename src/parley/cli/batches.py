"""`parley batches create|list|show|results|cancel`: over HTTP, with a key, because a
batch belongs to the key that created it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from parley.cli.shared import json_option

if TYPE_CHECKING:
    from parley.cli.batch_client import BatchClient

T = TypeVar("T")

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


def _call(base_url: str, api_key: str, work: Callable[[BatchClient], T]) -> T:
    """Run `work` with a client of the server; a refusal, an unreachable server or a
    bad file is reported as the command's error, without a traceback."""
    from parley.cli.batch_client import BatchClient, BatchClientError, InvalidBatchFile

    try:
        with BatchClient(base_url, api_key) as client:
            return work(client)
    except (BatchClientError, InvalidBatchFile) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
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
def create(
    file: Path, wait: bool, interval: float, as_json: bool, base_url: str, api_key: str
) -> None:
    """Create a batch from FILE: one `{"custom_id": ..., "params": {...}}` per line."""
    from parley.cli import render

    err = render.console(stderr=True)

    def work(client: BatchClient) -> dict[str, Any]:
        batch = client.create(file)
        total = batch["request_counts"]["processing"]
        err.print(f"Created batch {batch['id']} with {total} requests.")
        if wait:
            batch = render.wait_with_progress(lambda: client.retrieve(batch["id"]), err, interval)
            render.batch_table(batch, err)
        return batch

    batch = _call(base_url, api_key, work)
    if as_json:
        render.print_json(batch)
    else:
        click.echo(batch["id"])


@batches.command("list")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@json_option
@base_url_option
@api_key_option
def list_(limit: int, as_json: bool, base_url: str, api_key: str) -> None:
    """List this key's batches, newest first."""
    from parley.cli import render

    render.show_batches(_call(base_url, api_key, lambda c: c.list(limit)), as_json=as_json)


@batches.command("show")
@click.argument("batch_id")
@json_option
@base_url_option
@api_key_option
def show(batch_id: str, as_json: bool, base_url: str, api_key: str) -> None:
    """Show one batch: status, request counts, times."""
    from parley.cli import render

    batch, _ = _call(base_url, api_key, lambda c: c.retrieve(batch_id))
    render.show_batch(batch, as_json=as_json)


@batches.command("results")
@click.argument("batch_id")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="A file, not stdout."
)
@base_url_option
@api_key_option
def results(batch_id: str, output: Path | None, base_url: str, api_key: str) -> None:
    """Write an ended batch's results as JSONL (one line per request)."""

    def copy(client: BatchClient) -> None:
        if output is None:
            for chunk in client.results(batch_id):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        with output.open("wb") as out:
            for chunk in client.results(batch_id):
                out.write(chunk)

    _call(base_url, api_key, copy)


@batches.command("cancel")
@click.argument("batch_id")
@json_option
@base_url_option
@api_key_option
def cancel(batch_id: str, as_json: bool, base_url: str, api_key: str) -> None:
    """Cancel a batch: requests that have not run end as `canceled`."""
    from parley.cli import render

    batch = _call(base_url, api_key, lambda c: c.cancel(batch_id))
    click.echo(f"Batch {batch['id']} is {batch['processing_status']}.", err=True)
    if as_json:
        render.print_json(batch)
    else:
        click.echo(batch["id"])
