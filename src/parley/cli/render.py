"""What the terminal shows: the one place for consoles, tables, the progress bar and
JSON output. Tables are for people; `--json` is for scripts.

Secrets never appear here: keys are shown by id, name and the stored hint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from parley.core.calendar import rfc3339

if TYPE_CHECKING:
    from parley.cli.model_status import ModelStatus
    from parley.cli.usage_summary import Period, UsageSummary
    from parley.core.records import ApiKey
    from parley.core.usage_report import Totals

Batch = dict[str, Any]  # a MessageBatch as the server sent it


def console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr)
    # Piped output has no width to fit; never wrap or cut ids and numbers there.
    return out if out.is_terminal else Console(stderr=stderr, width=1000)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _table(title: str | None = None) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False)


def _at(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else "never"


# -- keys -------------------------------------------------------------------------


def show_keys(keys: list[ApiKey], *, as_json: bool) -> None:
    if as_json:
        print_json([_key_json(key) for key in keys])
        return
    out = console()
    if not keys:
        out.print("No API keys yet: create one with `parley keys create --name NAME`.")
        return
    table = _table()
    for title in ("ID", "Name", "Tier", "Status", "Browser", "Created", "Last used", "Hint"):
        table.add_column(title, no_wrap=True)
    for key in keys:
        tier = f"{key.tier} (admin)" if key.is_admin else key.tier
        status = key.status if key.status == "active" else f"[dim]{key.status}[/dim]"
        table.add_row(
            key.id,
            key.name,
            tier,
            status,
            "yes" if key.browser_access else "no",
            _at(key.created_at),
            _at(key.last_used_at),
            key.hint,
        )
    out.print(table)


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "tier": key.tier,
        "status": key.status,
        "is_admin": key.is_admin,
        "browser_access": key.browser_access,
        "created_at": rfc3339(key.created_at),
        "last_used_at": rfc3339(key.last_used_at) if key.last_used_at else None,
        "hint": key.hint,
    }


# -- usage ------------------------------------------------------------------------

_PERIOD_FORMATS: dict[Period, str] = {
    "minute": "%Y-%m-%d %H:%M",
    "hour": "%Y-%m-%d %H:00",
    "day": "%Y-%m-%d",
}


def show_usage(summary: UsageSummary, *, as_json: bool) -> None:
    if as_json:
        print_json(_usage_json(summary))
        return
    out = console()
    span = f"since {_at(summary.since)}" if summary.since else "all recorded"
    if summary.until:
        span += f", until {_at(summary.until)}"
    if not summary.lines:
        out.print(f"No usage ({span}).")
        return
    table = _table(f"Usage by {summary.period} (UTC), {span}")
    for title in ("Period", "Key", "Name", "Model"):
        table.add_column(title, no_wrap=True)
    for title in ("Requests", "Input", "Output", "Cache write", "Cache read", "Total tokens"):
        table.add_column(title, justify="right", no_wrap=True)
    for line in summary.lines:
        table.add_row(
            line.starting_at.strftime(_PERIOD_FORMATS[summary.period]),
            line.api_key_id,
            line.key_name or "",
            line.model,
            *_numbers(line.totals),
        )
    table.add_section()
    table.add_row("Total", "", "", "", *_numbers(summary.totals), style="bold")
    out.print(table)


def _numbers(totals: Totals) -> list[str]:
    values = (
        totals.requests,
        totals.input_tokens,
        totals.output_tokens,
        totals.cache_creation_input_tokens,
        totals.cache_read_input_tokens,
        totals.total_tokens,
    )
    return [f"{value:,}" for value in values]


def _counts(totals: Totals) -> dict[str, int]:
    return {**totals.as_dict(), "total_tokens": totals.total_tokens}


def _usage_json(summary: UsageSummary) -> dict[str, Any]:
    return {
        "since": rfc3339(summary.since) if summary.since else None,
        "until": rfc3339(summary.until) if summary.until else None,
        "by": summary.period,
        "rows": [
            {
                "starting_at": rfc3339(line.starting_at),
                "ending_at": rfc3339(line.ending_at),
                "api_key_id": line.api_key_id,
                "key_name": line.key_name,
                "model": line.model,
                **_counts(line.totals),
            }
            for line in summary.lines
        ],
        "totals": _counts(summary.totals),
    }


# -- models -----------------------------------------------------------------------


def show_models(models: list[ModelStatus], *, as_json: bool) -> None:
    if as_json:
        print_json([asdict(m) for m in models])
        return
    table = _table()
    for title in ("Model", "Aliases", "Context", "Max out", "Images", "Tools"):
        table.add_column(title, no_wrap=True)
    for title in ("Backend", "Kind", "Target", "Upstream model", "Health"):
        table.add_column(title, no_wrap=title != "Health")
    for model in models:
        for i, backend in enumerate(model.backends):
            first = i == 0
            health = {
                "healthy": "[green]healthy[/green]",
                "unhealthy": f"[red]unhealthy[/red]: {backend.problem}",
                "unchecked": "[dim]unchecked[/dim]",
            }[backend.health]
            table.add_row(
                model.id if first else "",
                ", ".join(model.aliases) if first else "",
                (str(model.context_window) if model.context_window else "from GGUF")
                if first
                else "",
                str(model.max_output_tokens) if first else "",
                ("yes" if model.images else "no") if first else "",
                ("yes" if model.tools else "no") if first else "",
                backend.name,
                backend.kind,
                backend.target,
                backend.upstream_model or "-",
                health,
            )
    console().print(table)


# -- batches ----------------------------------------------------------------------

_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def _timestamp(value: str | None) -> str:
    return value.replace("+00:00", "Z") if value else "-"


def _batch_counts(batch: Batch) -> str:
    counts = batch["request_counts"]
    return ", ".join(f"{counts[name]} {name}" for name in _COUNTS if counts.get(name))


def show_batches(batches: list[Batch], *, as_json: bool) -> None:
    if as_json:
        print_json(batches)
        return
    out = console()
    if not batches:
        out.print("No batches yet: create one with `parley batches create FILE.jsonl`.")
        return
    table = _table()
    for title in ("ID", "Status", "Requests", "Created", "Ended"):
        table.add_column(title, no_wrap=True)
    for batch in batches:
        table.add_row(
            batch["id"],
            batch["processing_status"],
            _batch_counts(batch),
            _timestamp(batch["created_at"]),
            _timestamp(batch["ended_at"]),
        )
    out.print(table)


def show_batch(batch: Batch, *, as_json: bool) -> None:
    if as_json:
        print_json(batch)
    else:
        batch_table(batch, console())


def batch_table(batch: Batch, out: Console) -> None:
    table = Table(box=box.SIMPLE, show_header=False, show_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_row("ID", batch["id"])
    table.add_row("Status", batch["processing_status"])
    for name in _COUNTS:
        table.add_row(name.capitalize(), str(batch["request_counts"][name]))
    for field in ("created_at", "expires_at", "cancel_initiated_at", "ended_at", "archived_at"):
        table.add_row(field.replace("_", " ").capitalize(), _timestamp(batch[field]))
    table.add_row("Results", batch["results_url"] or "-")
    out.print(table)


Poll = Callable[[], tuple[Batch, int | None]]


def wait_with_progress(poll: Poll, out: Console, interval: float) -> Batch:
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
