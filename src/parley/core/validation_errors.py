"""Turn pydantic validation errors into the API's `<dotted.path>: <message>` wording.

The real API reports one problem per response, pydantic-style, with union
discriminators inside the path (`tools.0.custom.name: ...`, api-spec §5.1).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from parley.errors import InvalidRequestError

# Names pydantic gives to members of non-discriminated unions (`str`, `list[...]`,
# `function-after[...]`, ...). Discriminated-union tags (`text`, `custom`) stay.
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|dict\[.*|list\[.*|[a-z-]+\[.*\]|[a-z]+-[a-z-]+)$")


def _clean_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and _UNION_MEMBER.match(p))]
    return ".".join(parts)


def _is_union_miss(error: Any) -> bool:
    return any(isinstance(p, str) and _UNION_MEMBER.match(p) for p in error["loc"])


def _pick(errors: list[Any]) -> Any:
    # For `str | list[...]` pydantic reports a miss for each member. The deepest
    # error belongs to the member whose type matched the input, so it explains best.
    first = errors[0]
    if not _is_union_miss(first):
        return first
    prefix_len = len(first["loc"])
    same_field = [
        e for e in errors if _clean_path(e["loc"][:prefix_len]) == _clean_path(first["loc"])
    ]
    return max(same_field or errors, key=lambda e: len(e["loc"]))


def invalid_request_from(
    exc: ValidationError, prefix: tuple[int | str, ...] = ()
) -> InvalidRequestError:
    """`prefix`: where the validated value sits in the body (e.g. `requests.3` of a batch)."""
    error = _pick(exc.errors(include_url=False))
    path = _clean_path(prefix + tuple(error["loc"]))
    message = error["msg"]
    if error["type"] == "missing":
        message = "Field required"
    return InvalidRequestError(f"{path}: {message}" if path else message)
