"""The `parley` command: `serve`, `keys`, `usage`, `batches`, `models`.

Contract: `parley keys create` prints the new secret, and only it, as the last
line on stdout; everything else goes to stderr. `parley keys revoke` prints the
revoked key's id on stdout. `parley serve` logs one line containing "ready" once
it accepts requests. `--json` output is for scripts; tables are for people.

Each command group is a module of thin wrappers over library functions; what
the terminal shows (tables, progress bars, JSON) is written in `render.py`.
"""

from parley.cli.main import main

__all__ = ["main"]
