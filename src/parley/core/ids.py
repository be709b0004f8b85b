"""Ids with Anthropic's prefixes (api-spec §5.5): prefix + base62, commonly starting `01`."""

from __future__ import annotations

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


def file_id() -> str:
    return "file_011C" + _base62(20)
