"""`parley models list`: the configured models, their backends and their health."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from parley.cli.shared import config_option, json_option, read_settings


@click.group()
def models() -> None:
    """The configured models and their backends."""


@models.command("list")
@click.option("--no-check", is_flag=True, help="Do not health-check the backends.")
@json_option
@config_option
def list_(no_check: bool, as_json: bool, config: Path | None) -> None:
    """Models with their backends, each health-checked now: upstream servers are asked
    directly (nothing is started); a local engine's model file is looked for."""
    from parley.cli import render
    from parley.cli.model_status import model_statuses

    settings = read_settings(config)
    # Each unreachable backend is reported in the output; no log lines besides.
    logging.getLogger("parley.engines").setLevel(logging.ERROR)
    found = asyncio.run(model_statuses(settings, check=not no_check))
    render.show_models(found, as_json=as_json)
