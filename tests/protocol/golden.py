"""Golden-JSON checks for wire shapes (design.md, house style 4).

The files under `golden/` are written from api-spec.md (and api-version-2026-10-21.md),
not copied from Parley's output: a test fails when Parley renders something else.
Two aspects are checked separately, so that a failure says which one broke:

- values: the parsed JSON equals the golden (dicts compared without regard to order);
- key order: for every object present in both, the keys they share come in the
  golden's order. SDK users see our bytes in logs, so the API's order is part of
  the shape (api-spec §5.5 notes the order observed on the real API).

`PARLEY_UPDATE_GOLDEN=1` rewrites the golden files from what Parley renders now and
skips the comparison. Never set by default: rewriting blesses Parley's output, so
review the diff against api-spec.md before keeping it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_ENV = "PARLEY_UPDATE_GOLDEN"

Aspect = Literal["values", "key_order"]
ASPECTS: tuple[Aspect, ...] = ("values", "key_order")


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def render(value: Any) -> str:
    """The canonical text of a golden file: pretty-printed, keys in their own order."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys in golden JSON: {duplicates}")
    return dict(pairs)


def parse(text: str) -> Any:
    """`json.loads`, refusing duplicate keys (which would hide a wrong golden)."""
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


def load_golden(name: str) -> Any:
    path = golden_path(name)
    if not path.exists():
        pytest.fail(f"no golden file {path}; write it from api-spec.md")
    return parse(path.read_text(encoding="utf-8"))


def key_orders(value: Any, path: str = "$") -> dict[str, list[str]]:
    """Every object's keys, in order, by JSON path."""
    found: dict[str, list[str]] = {}
    if isinstance(value, dict):
        found[path] = list(value)
        for key, item in value.items():
            found.update(key_orders(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(key_orders(item, f"{path}[{index}]"))
    return found


def order_differences(actual: Any, expected: Any) -> dict[str, dict[str, list[str]]]:
    """Objects whose shared keys come in another order than the golden's. Keys only
    one side has are the values check's business, not this one's."""
    got, want = key_orders(actual), key_orders(expected)
    differences: dict[str, dict[str, list[str]]] = {}
    for path, wanted in want.items():
        if path not in got:
            continue
        shared = set(wanted) & set(got[path])
        wanted_order = [k for k in wanted if k in shared]
        got_order = [k for k in got[path] if k in shared]
        if got_order != wanted_order:
            differences[path] = {"expected": wanted_order, "actual": got_order}
    return differences


def check_golden(name: str, actual: Any, aspect: Aspect) -> None:
    """Compare `actual` (already `json.loads`-ed from Parley's rendering) to a golden."""
    if os.environ.get(UPDATE_ENV) == "1":
        path = golden_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(actual), encoding="utf-8")
        pytest.skip(f"{UPDATE_ENV}=1: rewrote {path.relative_to(GOLDEN_DIR.parent)}")
    expected = load_golden(name)
    if aspect == "values":
        assert actual == expected, f"{name}: rendered JSON differs from golden/{name}.json"
    else:
        differences = order_differences(actual, expected)
        assert not differences, f"{name}: key order differs from golden/{name}.json: " + json.dumps(
            differences, indent=2
        )


def parse_frame(frame: bytes) -> tuple[str, Any]:
    """One SSE event as api-spec §6.1 frames it: `event: <name>`, one `data:` line of
    JSON, a blank line. Returns the name and the parsed data."""
    text = frame.decode("utf-8")
    assert text.endswith("\n\n"), text
    lines = text[:-2].split("\n")
    assert len(lines) == 2, f"expected an event line and one data line: {text!r}"
    event_line, data_line = lines
    assert event_line.startswith("event: "), text
    assert data_line.startswith("data: "), text
    assert "\r" not in text
    name, data = event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
    # The event name always equals data.type (§6.1, api-version §19.7).
    assert data["type"] == name
    return name, data
