"""`parley`: the group every command group hangs from."""

from __future__ import annotations

import click

from parley.cli.batches import batches
from parley.cli.keys import keys
from parley.cli.models import models
from parley.cli.serve import serve
from parley.cli.usage import usage


@click.group()
@click.version_option(package_name="parley")
def main() -> None:
    """Parley: the Claude API, self-hosted."""


for command in (serve, keys, usage, batches, models):
    main.add_command(command)
