"""SSE framing (api-spec §6.1, §6.2, §6.4)."""

from __future__ import annotations

import json
from typing import Any

from parley.errors import APIError
from parley.protocol.stream import (
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)


def frame(name: str, data: dict[str, Any]) -> bytes:
    # Every event is named: both SDKs drop events without an `event:` line (§6.1).
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# api-version §19.7: stop_details travels only in message_delta.
_START_EXCLUDES = {"message": {"stop_details"}}


def event_frame(event: StreamEvent) -> bytes:
    if isinstance(event, ContentBlockDeltaEvent):
        delta = event.delta
        one_string = _ONE_STRING_DELTAS.get(type(delta))
        if one_string is not None:
            field, template = one_string
            return template % (event.index, _json_string(getattr(delta, field)).encode())
    elif isinstance(event, ContentBlockStopEvent):
        return _BLOCK_STOP % event.index
    elif isinstance(event, PingEvent):
        return PING_FRAME
    elif isinstance(event, MessageStopEvent):
        return _MESSAGE_STOP
    # pydantic writes the JSON itself (compact, UTF-8): no dict in between.
    excludes = _START_EXCLUDES if isinstance(event, MessageStartEvent) else None
    data = event.model_dump_json(exclude=excludes)
    return b"event: " + event.type.encode() + b"\ndata: " + data.encode() + b"\n\n"


# The events of every token, and the fixed ones, written without pydantic's serializer,
# whose call cost several times the rest of their path; the same bytes it writes
# (compact, UTF-8, its field order), which tests/core/test_sse_frames.py holds them to.
def _delta_frame(kind: str, field: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        + f'"delta":{{"type":"{kind}","{field}":'.encode()
        + b"%s}}\n\n"
    )


# A delta type: its one field, and its frame with the index and the field's JSON to fill.
_ONE_STRING_DELTAS: dict[type, tuple[str, bytes]] = {
    TextDelta: ("text", _delta_frame("text_delta", "text")),
    InputJSONDelta: ("partial_json", _delta_frame("input_json_delta", "partial_json")),
    ThinkingDelta: ("thinking", _delta_frame("thinking_delta", "thinking")),
}
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
PING_FRAME = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def error_frame(error: APIError) -> bytes:
    return frame("error", error.envelope())
