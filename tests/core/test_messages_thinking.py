"""Thinking blocks in the API's event sequence (api-spec §6.3): the block starts
empty, `thinking_delta`s follow, one `signature_delta` comes just before
`content_block_stop`; redacted thinking arrives whole in its start event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    RedactedThinking,
    TextChunk,
    ThinkingChunk,
    ThinkingSignature,
    Turn,
)
from parley.core.messages import MessageStream
from parley.core.sse import event_frame
from parley.core.thinking import ThinkingSigner
from tests.protocol.golden import parse_frame

REQUEST = GenerationRequest(model="m", system=None, turns=(Turn.of("user", "hi"),), max_tokens=100)
SIGNER = ThinkingSigner(b"0123456789abcdef0123456789abcdef")


async def frames(*events: EngineEvent) -> list[tuple[str, Any]]:
    async def source() -> AsyncIterator[EngineEvent]:
        for event in events:
            yield event

    stream = MessageStream(REQUEST, 3, msg_id="msg_1", signer=SIGNER)
    return [parse_frame(event_frame(e)) async for b in stream.events(source()) for e in b]


async def test_a_signed_thinking_block_then_text() -> None:
    out = await frames(
        ThinkingChunk("Let me ", 1),
        ThinkingChunk("think.", 2),
        TextChunk("Hi.", 3),
        Finished("end_turn", 3),
    )
    body = [data for name, data in out if name not in ("message_start", "ping")]
    signature = SIGNER.sign("Let me think.")
    assert body[:6] == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "think."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": signature},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ]


async def test_an_upstream_signature_is_kept_and_redacted_blocks_pass_whole() -> None:
    out = await frames(
        ThinkingChunk("x", 1),
        ThinkingSignature("EqQBupstream", 1),
        RedactedThinking("EmwKopaque", 2),
        TextChunk("ok", 3),
        Finished("end_turn", 3),
    )
    deltas = [d["delta"] for n, d in out if n == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "EqQBupstream"} in deltas
    starts = [d["content_block"] for n, d in out if n == "content_block_start"]
    assert starts[1] == {"type": "redacted_thinking", "data": "EmwKopaque"}
