"""Ids with Anthropic's prefixes (api-spec §5.5): prefix + base62, commonly starting `01`."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.digits + string.ascii_letters
# Random bytes mapped onto the alphabet in one C call (every request makes two ids).
# 256 is not a multiple of 62, so the first 8 characters come up a little more
# often: about 5.9 bits per character all the same, 130 bits in 22 of them.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(256))


def _base62(n: int) -> str:
    return secrets.token_bytes(n).translate(_BYTE_TO_CHAR).decode("ascii")


def message_id() -> str:
    return "msg_01" + _base62(22)


def request_id() -> str:
    return "req_011C" + _base62(20)


def tool_use_id() -> str:
    return "toolu_01" + _base62(22)


def message_batch_id() -> str:
    return "msgbatch_01" + _base62(22)


def file_id() -> str:
    return "file_011C" + _base62(20)


# Every id Parley issues, and every id column of the store (64 characters), fits this:
# a value that does not is answered "not found" without asking the store, which
# could not hold it anyway (a NUL byte, say, is an error in PostgreSQL, not a miss).
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def id_shaped(value: str) -> bool:
    return _ID_SHAPE.fullmatch(value) is not None
