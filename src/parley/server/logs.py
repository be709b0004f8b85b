"""Nothing sensitive in the logs: access lines without query strings, and anything
shaped like an API key replaced wherever it appears in a line (a client may paste a
key into a URL, a header value or a body that ends up in an error message)."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from starlette.types import Scope

_KEY = re.compile(r"sk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}")
REDACTED = "sk-***"


_ACCESS = logging.getLogger("uvicorn.access")


def access_line(scope: Scope, status: int) -> None:
    """uvicorn's access line (its logger, format and arguments, which the formatters
    and log readers know), written once the response has left rather than before its
    body: at one request at a time, what follows the last byte is off the client's
    wait."""
    if _ACCESS.isEnabledFor(logging.INFO):
        client = scope.get("client")
        path = quote(scope["path"])
        if scope.get("query_string"):
            path = f"{path}?{scope['query_string'].decode('ascii')}"
        _ACCESS.info(
            '%s - "%s %s HTTP/%s" %d',
            f"{client[0]}:{client[1]}" if client else "",
            scope["method"],
            path,
            scope["http_version"],
            status,
        )


def redact(text: str) -> str:
    return _KEY.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            args = list(record.args)
            if len(args) >= 3 and isinstance(args[2], str):
                args[2] = args[2].partition("?")[0]  # the query string is never logged
            record.args = tuple(args)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install_redaction() -> None:
    """On every handler of the root logger, where all of Parley's and uvicorn's lines
    end up (a logger's own filters would miss lines propagated from its children)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
