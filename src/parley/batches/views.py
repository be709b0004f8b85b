"""What `parley batches ...` shows people: tables and a progress bar (rich)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr)
    # Piped output has no width to fit; never wrap or cut ids and numbers there.
    return out if out.is_terminal else Console(stderr=stderr, width=1000)


def _when(value: str | None) -> str:
    return value.replace("+00:00", "Z") if value else "-"


def _counts(batch: dict[str, Any]) -> str:
    counts = batch["request_counts"]
    return ", ".join(f"{counts[name]} {name}" for name in COUNTS if counts.get(name))


def render_batches(batches: list[dict[str, Any]], out: Console) -> None:
    if not batches:
        out.print("No batches yet: create one with `parley batches create FILE.jsonl`.")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for title in ("ID", "Status", "Requests", "Created", "Ended"):
        table.add_column(title, no_wrap=True)
    for batch in batches:
        table.add_row(
            batch["id"],
            batch["processing_status"],
            _counts(batch),
            _when(batch["created_at"]),
            _when(batch["ended_at"]),
        )
    out.print(table)


def render_batch(batch: dict[str, Any], out: Console) -> None:
    table = Table(box=box.SIMPLE, show_header=False, show_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_row("ID", batch["id"])
    table.add_row("Status", batch["processing_status"])
    for name in COUNTS:
        table.add_row(name.capitalize(), str(batch["request_counts"][name]))
    for field in ("created_at", "expires_at", "cancel_initiated_at", "ended_at", "archived_at"):
        table.add_row(field.replace("_", " ").capitalize(), _when(batch[field]))
    table.add_row("Results", batch["results_url"] or "-")
    out.print(table)


Poll = Callable[[], tuple[dict[str, Any], int | None]]


def wait_with_progress(poll: Poll, out: Console, interval: float) -> dict[str, Any]:
    """Poll until the batch ends, with a bar of finished requests; returns the batch."""
    batch, finished = poll()
    total = sum(batch["request_counts"].values())
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(batch["processing_status"], total=total)
        while batch["processing_status"] != "ended":
            progress.update(task, completed=finished or 0, description=batch["processing_status"])
            time.sleep(interval)
            batch, finished = poll()
        progress.update(task, completed=total, description="ended")
    return batch
