"""docs/upstreams.md states the flavor table as the code has it."""

from __future__ import annotations

import re
from pathlib import Path

from parley.engines.openai_flavors import FLAVORS, Flavor

DOC = Path(__file__).resolve().parents[3] / "docs" / "upstreams.md"


def doc_rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    table = text[text.index("| Flavor |") :].split("\n\n")[0]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[2:]
    return rows


def yes(value: bool) -> str:
    return "yes" if value else "no"


def facts(flavor: Flavor) -> list[str]:
    content = "`null`" if flavor.empty_call_content is None else f'`"{flavor.empty_call_content}"`'
    prefill = {"continue_final_message": "`continue_final_message`"}.get(
        flavor.prefill, flavor.prefill
    )
    return [
        flavor.tool_format,
        content,
        yes(flavor.tool_choice),
        f"`{flavor.force_tool}`",
        prefill,
        yes(flavor.prefill_echo),
        yes(flavor.add_generation_prompt),
        yes(flavor.stream_usage),
        yes(flavor.cached_tokens),
        yes(flavor.top_k),
    ]


def test_the_flavor_table_matches_the_code() -> None:
    rows = doc_rows()
    assert set(rows) == set(FLAVORS)
    for name, flavor in FLAVORS.items():
        assert rows[name] == facts(flavor), name


def test_the_matrix_names_tests_that_exist() -> None:
    root = DOC.parents[1]
    for path in re.findall(r"`(tests/engines/upstream/[\w/*.]+)`", DOC.read_text()):
        assert list(root.glob(path)), path
