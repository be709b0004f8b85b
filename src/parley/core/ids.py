"""Ids with Anthropic's prefixes (api-spec §5.5): prefix + base62, commonly starting `01`."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.digits + string.ascii_letters


def _base62(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def message_id() -> str:
    return "msg_01" + _base62(22)


def request_id() -> str:
    return "req_011C" + _base62(20)


def tool_use_id() -> str:
    return "toolu_01" + _base62(22)


def message_batch_id() -> str:
    return "msgbatch_01" + _base62(22)


# Every id Parley issues, and every id column of the store (64 characters), fits this:
# a value that does not is answered "not found" without asking the store, which
# could not hold it anyway (a NUL byte, say, is an error in PostgreSQL, not a miss).
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def id_shaped(value: str) -> bool:
    return _ID_SHAPE.fullmatch(value) is not None
