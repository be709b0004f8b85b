"""The API's limit of four cache breakpoints a request (api-spec §12, §16), counted
over every block that can carry one and the top-level automatic mark."""

from __future__ import annotations

from typing import Any

import pytest

from parley.core.conversation import counting_request, generation_request
from parley.core.generation import EngineCapabilities
from parley.errors import InvalidRequestError
from parley.protocol.requests import CountTokensParams, MessageCreateParams

MARK = {"type": "ephemeral"}
TOOLS = EngineCapabilities(tools=True)


def body(marks: int, *, top_level: bool = False) -> dict[str, Any]:
    """A conversation with `marks` marked blocks: system, a tool, a text block, a tool
    call, a tool result's inner block, a tool result, in that order."""
    places = iter(range(marks))

    def mark() -> dict[str, Any]:
        return {"cache_control": MARK} if next(places, None) is not None else {}

    return {
        "model": "m",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "Rules.", **mark()}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}, **mark()}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Doc", **mark()}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}, **mark()}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "ok", **mark()}],
                        **mark(),
                    }
                ],
            },
        ],
        **({"cache_control": MARK} if top_level else {}),
    }


async def test_four_breakpoints_are_allowed() -> None:
    request = await generation_request(MessageCreateParams.model_validate(body(4)), TOOLS)
    assert request.tools[0].cache is not None


@pytest.mark.parametrize(("marks", "top_level", "found"), [(5, False, 5), (4, True, 5)])
async def test_a_fifth_breakpoint_is_refused(marks: int, top_level: bool, found: int) -> None:
    params = MessageCreateParams.model_validate(body(marks, top_level=top_level))
    with pytest.raises(InvalidRequestError) as caught:
        await generation_request(params, TOOLS)
    assert caught.value.message == (
        f"A maximum of 4 blocks with cache_control may be provided. Found {found}."
    )


async def test_count_tokens_keeps_the_same_limit() -> None:
    data = body(5)
    del data["max_tokens"]
    with pytest.raises(InvalidRequestError, match="Found 5"):
        await counting_request(CountTokensParams.model_validate(data), TOOLS)
