"""How core turns an engine's neutral events into the API's events and Message, and
what it enforces on engines (the contract in parley.core.generation)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ToolCallStart,
    ToolChoice,
    ToolInputChunk,
    ToolSpec,
    Turn,
)
from parley.core.messages import MessageStream, collect_message
from parley.errors import InternalServerError
from parley.protocol.stream import ContentBlockDeltaEvent, ContentBlockStartEvent


async def source(events: list[EngineEvent]) -> AsyncIterator[EngineEvent]:
    for event in events:
        yield event


def request(choice: ToolChoice | None = None, **kw: Any) -> GenerationRequest:
    return GenerationRequest(
        model="m",
        system=None,
        turns=(Turn.of("user", "hi"),),
        max_tokens=100,
        tools=(ToolSpec("a", None, {"type": "object"}), ToolSpec("b", None, {"type": "object"})),
        tool_choice=choice or ToolChoice(),
        **kw,
    )


async def run(events: list[EngineEvent], req: GenerationRequest | None = None) -> Any:
    """The Message the stream's events build; every test here also checks that a plain
    response (no events but `message_stop`) builds the same one, or fails the same way."""
    req = req or request()
    try:
        message = await collect_message(MessageStream(req, 1, msg_id="msg_1"), source(events))
    except Exception as exc:
        with pytest.raises(type(exc)):
            await plain(events, req)
        raise
    assert _without_call_ids(await plain(events, req)) == _without_call_ids(message)
    return message


async def plain(events: list[EngineEvent], req: GenerationRequest) -> Any:
    stream = MessageStream(req, 1, msg_id="msg_1")
    firsts: list[int] = []
    sent = [
        [e.type for e in batch]
        async for batch in stream.events(
            source(events), emit=False, on_first=lambda: firsts.append(1)
        )
    ]
    assert sent == [["message_stop"]]
    assert len(firsts) == (1 if stream.message.content else 0)
    return stream.message


def _without_call_ids(message: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = message.model_dump()
    for block in dumped["content"]:
        if block["type"] == "tool_use" and block["id"].startswith("toolu_01"):
            block["id"] = "toolu_01"  # made afresh for each run
    return dumped


async def test_calls_become_tool_use_blocks() -> None:
    message = await run(
        [
            TextChunk("Let me see.", 3),
            ToolCallStart("a", 4),
            ToolInputChunk('{"x": ', 5),
            ToolInputChunk("1}", 6),
            ToolCallStart("b", 7, id="toolu_upstream"),
            Finished("end_turn", 8),
        ]
    )
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"x": 1}
    assert message.content[1].id.startswith("toolu_01")
    assert message.content[2].id == "toolu_upstream"
    assert message.content[2].input == {}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 8


async def test_tool_use_without_calls_is_end_turn() -> None:
    message = await run([TextChunk("hi", 1), Finished("tool_use", 1)])
    assert message.stop_reason == "end_turn"


async def test_second_call_is_dropped_when_parallel_calls_are_off() -> None:
    events: list[EngineEvent] = [
        ToolCallStart("a", 1),
        ToolInputChunk("{}", 2),
        ToolCallStart("b", 3),
        ToolInputChunk("{}", 4),
        Finished("tool_use", 4),
    ]
    message = await run(events, request(ToolChoice("auto", parallel=False)))
    assert [b.name for b in message.content] == ["a"]
    assert message.stop_reason == "tool_use"


async def test_text_after_a_call_opens_a_new_block() -> None:
    engine_events: list[EngineEvent] = [
        ToolCallStart("a", 1),
        ToolInputChunk("{}", 2),
        TextChunk("done", 3),
        Finished("end_turn", 3),
    ]
    stream = MessageStream(request(), 1)
    events = [e async for batch in stream.events(source(engine_events)) for e in batch]
    starts = [e for e in events if isinstance(e, ContentBlockStartEvent)]
    assert [(s.index, s.content_block.type) for s in starts] == [(0, "tool_use"), (1, "text")]
    deltas = [e for e in events if isinstance(e, ContentBlockDeltaEvent)]
    assert [d.index for d in deltas] == [0, 0, 1]  # the empty opening fragment, then "{}"


@pytest.mark.parametrize(
    "events",
    [
        [ToolCallStart("a", 1), ToolInputChunk('{"x": ', 2), Finished("end_turn", 2)],
        [ToolCallStart("a", 1), ToolInputChunk("[1, 2]", 2), Finished("end_turn", 2)],
        [ToolInputChunk("{}", 1), Finished("end_turn", 1)],
    ],
)
async def test_broken_calls_fail_the_message(events: list[EngineEvent]) -> None:
    with pytest.raises(InternalServerError):
        await run(events)


async def test_calls_under_tool_choice_none_fail_the_message() -> None:
    with pytest.raises(InternalServerError):
        await run([ToolCallStart("a", 1), Finished("tool_use", 1)], request(ToolChoice("none")))


async def test_a_call_cut_off_by_max_tokens_keeps_what_parses() -> None:
    message = await run(
        [ToolCallStart("a", 1), ToolInputChunk('{"x": 1, "y": [1, 2', 2), Finished("max_tokens", 2)]
    )
    assert message.content[0].input == {"x": 1, "y": [1, 2]}
    assert message.stop_reason == "max_tokens"


async def test_engine_reported_stop_sequence_and_input_tokens() -> None:
    message = await run(
        [TextChunk("a", 1), Finished("stop_sequence", 1, stop_sequence="##", input_tokens=42)]
    )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "##")
    # message_start carries the estimate (1); the final usage has the engine's count.
    assert message.usage.input_tokens == 42
