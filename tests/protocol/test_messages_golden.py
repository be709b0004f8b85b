"""Golden shapes of `/v1/messages`: the Message, every stream event as framed for SSE,
and TokenCount (api-spec §5.5, §6, §8; api-version §19.6, §19.7).

The stream and the Message come from one scripted run of `MessageStream`
(scripted_run.py), so the shapes are the ones the server really sends, not
hand-built models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from parley.core.sse import event_frame
from parley.protocol.responses import Message, TokenCount
from parley.protocol.stream import MessageDelta, MessageDeltaEvent, MessageDeltaUsage
from tests.protocol.golden import ASPECTS, Aspect, check_golden, parse_frame
from tests.protocol.scripted_run import run_stream


def rendered(model: Message | TokenCount) -> Any:
    # As the route renders it: JSONResponse(model.model_dump(mode="json")).
    return json.loads(json.dumps(model.model_dump(mode="json")))


def stream_event(name: str, nth: int = 0) -> Callable[[], Any]:
    def build() -> Any:
        events, _ = run_stream()
        return [data for event, data in events if event == name][nth]

    return build


def stream_delta(delta_type: str, nth: int = 0) -> Callable[[], Any]:
    def build() -> Any:
        events, _ = run_stream()
        deltas = [
            data
            for name, data in events
            if name == "content_block_delta" and data["delta"]["type"] == delta_type
        ]
        return deltas[nth]

    return build


def message_delta_refusal() -> Any:
    """A message_delta that carries a refusal's stop_details object. api-spec §6.3 lists
    `delta.stop_details` and api-version §19.6/§19.7 keep its `{type:"refusal", category,
    explanation}` shape, to be sent (object or null) in message_delta only."""
    event = MessageDeltaEvent(
        delta=MessageDelta.model_validate(
            {
                "stop_reason": "refusal",
                "stop_sequence": None,
                "stop_details": {
                    "type": "refusal",
                    "category": "cyber",
                    "explanation": "The request asked for working malware.",
                },
            }
        ),
        usage=MessageDeltaUsage(output_tokens=3, input_tokens=25),
    )
    return parse_frame(event_frame(event))[1]


CASES: dict[str, Callable[[], Any]] = {
    "message": lambda: rendered(run_stream()[1]),
    "stream_message_start": stream_event("message_start"),
    "stream_content_block_start_text": stream_event("content_block_start", 0),
    "stream_ping": stream_event("ping"),
    "stream_text_delta": stream_delta("text_delta"),
    "stream_content_block_stop": stream_event("content_block_stop", 0),
    "stream_content_block_start_tool_use": stream_event("content_block_start", 1),
    "stream_input_json_delta": stream_delta("input_json_delta", 1),
    "stream_message_delta": stream_event("message_delta"),
    "stream_message_stop": stream_event("message_stop"),
    "stream_message_delta_refusal": message_delta_refusal,
    "token_count": lambda: rendered(TokenCount(input_tokens=14)),
}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, aspect: Aspect) -> None:
    check_golden(name, CASES[name](), aspect)


def test_stream_event_order_matches_the_spec_example() -> None:
    # api-spec §6.2/§6.3: blocks one after another, a ping right after the first
    # content_block_start, the tool input starting with an empty fragment.
    events, _ = run_stream()
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    fragments = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == 1
    ]
    assert fragments == ["", '{"location": "Par', 'is"}']


def test_message_start_has_no_stop_details() -> None:
    # api-version §19.7: stop_details travels in message_delta only, so a new SDK's
    # accumulated message is not cleared or set by message_start.
    events, _ = run_stream()
    start = next(data for name, data in events if name == "message_start")
    assert "stop_details" not in start["message"]
    delta = next(data for name, data in events if name == "message_delta")
    assert "stop_details" in delta["delta"]
