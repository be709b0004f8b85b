"""The golden files themselves: each is used by a test, each test's file exists, and
each is canonical JSON (no duplicate keys, pretty-printed as `golden.render` writes),
so a hand edit cannot hide a key or drift in formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.protocol import (
    test_admin_golden,
    test_batches_golden,
    test_errors_golden,
    test_files_golden,
    test_messages_golden,
    test_models_golden,
)
from tests.protocol.golden import GOLDEN_DIR, golden_path, parse, render

CASE_NAMES = [
    name
    for module in (
        test_messages_golden,
        test_errors_golden,
        test_files_golden,
        test_models_golden,
        test_batches_golden,
        test_admin_golden,
    )
    for name in module.CASES
]
FILES = sorted(GOLDEN_DIR.rglob("*.json"))


def test_case_names_are_unique() -> None:
    assert len(CASE_NAMES) == len(set(CASE_NAMES))


def test_every_case_has_a_golden_file() -> None:
    assert [n for n in CASE_NAMES if not golden_path(n).exists()] == []


def test_every_response_golden_is_used() -> None:
    # Request bodies (golden/requests/) are read by test_requests_golden.py.
    used = {golden_path(n) for n in CASE_NAMES}
    unused = [p for p in GOLDEN_DIR.glob("*.json") if p not in used]
    assert unused == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(GOLDEN_DIR)))
def test_golden_file_is_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text == render(parse(text))
