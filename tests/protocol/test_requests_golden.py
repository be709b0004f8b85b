"""Parse direction: request bodies written from api-spec §5 and §8 (tools and
tool_choice, image blocks, tool_result with content blocks, system blocks with
cache_control, thinking, documents) must pass Parley's body parsing and dump back
to the same JSON.

The round trip is `model_dump(exclude_unset=True, mode="json")`: nothing the
client sent may be dropped or changed, and nothing it did not send may appear.
Dicts are compared without regard to key order, which is the client's choice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from parley.core.bodies import parse_params
from parley.core.versions import parse_version
from parley.errors import InvalidRequestError
from parley.protocol.requests import SAMPLING_FIELDS, CountTokensParams, MessageCreateParams
from tests.protocol.golden import GOLDEN_DIR, parse

REQUESTS = GOLDEN_DIR / "requests"
MESSAGE_BODIES = sorted(p for p in REQUESTS.glob("*.json") if p.name != "count_tokens.json")
OLD, NEW = "2023-06-01", "2026-10-21"


def body(path: Path) -> Any:
    return parse(path.read_text(encoding="utf-8"))


def test_there_are_request_goldens() -> None:
    # A glob that found nothing would make the parametrized tests below vanish.
    assert len(MESSAGE_BODIES) >= 7


@pytest.mark.parametrize("path", MESSAGE_BODIES, ids=lambda p: p.stem)
def test_message_body_round_trips(path: Path) -> None:
    raw = path.read_bytes()
    params = parse_params(raw, MessageCreateParams, parse_version(OLD))
    assert params.model_dump(exclude_unset=True, mode="json") == body(path)


@pytest.mark.parametrize("path", MESSAGE_BODIES, ids=lambda p: p.stem)
def test_message_body_under_2026_10_21(path: Path) -> None:
    # api-version §19.4: sampling fields are a 400 under the new version; the rest
    # of each body is unchanged between versions.
    raw, sent = path.read_bytes(), body(path)
    sampling = [name for name in SAMPLING_FIELDS if name in sent]
    if sampling:
        with pytest.raises(InvalidRequestError, match=f"^{sampling[0]}: Extra inputs"):
            parse_params(raw, MessageCreateParams, parse_version(NEW))
    else:
        params = parse_params(raw, MessageCreateParams, parse_version(NEW))
        assert params.model_dump(exclude_unset=True, mode="json") == sent


def test_count_tokens_body_round_trips() -> None:
    path = REQUESTS / "count_tokens.json"
    params = parse_params(path.read_bytes(), CountTokensParams, parse_version(OLD))
    assert params.model_dump(exclude_unset=True, mode="json") == body(path)


def test_count_tokens_refuses_max_tokens() -> None:
    # api-spec §8: max_tokens is not a count_tokens field; the schema is strict.
    sent = body(REQUESTS / "count_tokens.json") | {"max_tokens": 1024}
    raw = json.dumps(sent).encode()
    with pytest.raises(InvalidRequestError, match=r"^max_tokens: Extra inputs are not permitted"):
        parse_params(raw, CountTokensParams, parse_version(OLD))
