"""The events written without pydantic's serializer are the bytes it would write."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parley.core.sse import event_frame
from parley.protocol.stream import (
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    MessageStopEvent,
    PingEvent,
    SignatureDelta,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)

# Any text a model can produce: every code point but the lone surrogates, which no
# UTF-8 body can carry (both ways refuse them).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
indices = st.integers(min_value=0, max_value=10_000)


def by_pydantic(event: StreamEvent) -> bytes:
    data = event.model_dump_json()
    return b"event: " + event.type.encode() + b"\ndata: " + data.encode() + b"\n\n"


@given(index=indices, text=texts)
def test_one_string_deltas_match_pydantic(index: int, text: str) -> None:
    for delta in (
        TextDelta(text=text),
        InputJSONDelta(partial_json=text),
        ThinkingDelta(thinking=text),
        SignatureDelta(signature=text),  # written by pydantic itself
    ):
        event = ContentBlockDeltaEvent(index=index, delta=delta)
        assert event_frame(event) == by_pydantic(event)


@given(index=indices)
def test_fixed_events_match_pydantic(index: int) -> None:
    for event in (ContentBlockStopEvent(index=index), PingEvent(), MessageStopEvent()):
        assert event_frame(event) == by_pydantic(event)


def test_control_characters_quotes_and_non_ascii() -> None:
    text = 'a"b\\c\n\t\x00\x1f\x7f é 漢 \u2028 😀'
    event = ContentBlockDeltaEvent(index=1, delta=TextDelta(text=text))
    assert event_frame(event) == by_pydantic(event)
