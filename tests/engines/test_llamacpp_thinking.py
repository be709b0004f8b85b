"""Thinking on the embedded engine: a chat template with `<think>` sections makes a
model reason first. SmolLM2 itself cannot (its template has none), so the real
model runs here under a Qwen3-style template; it never closes its section on its
own, which exercises the budget: Parley closes it, then the answer follows (under
the reply's grammar when there is one)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from parley.core.generation import (
    Finished,
    GenerationRequest,
    Sampling,
    TextChunk,
    Thinking,
    ThinkingChunk,
    Turn,
)
from parley.core.messages import MessageStream, collect_message
from parley.core.thinking import ThinkingSigner
from parley.engines.llamacpp import LlamaCppEngine
from parley.engines.think_tags import ThinkSplitter, template_thinks, with_thinking
from tests.engine_runs import generate

QWEN3_STYLE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)


def test_templates_with_think_sections_are_detected() -> None:
    assert template_thinks(QWEN3_STYLE)
    assert not template_thinks("{{ messages }}")
    assert not template_thinks(None)


def test_the_prompt_ends_inside_or_after_the_section() -> None:
    assert with_thinking("A\n", on=True) == "A\n<think>\n"
    assert with_thinking("A\n<think>\n", on=True) == "A\n<think>\n"
    assert with_thinking("A\n", on=False) == "A\n<think>\n\n</think>\n\n"
    assert with_thinking("A\n<think>\n\n</think>\n\n", on=False) == "A\n<think>\n\n</think>\n\n"


def test_the_splitter_holds_back_a_partial_closing_tag() -> None:
    splitter = ThinkSplitter()
    out = [splitter.feed(piece) for piece in ["\nHmm, ", "two.\n</th", "ink>\n\nFour"]]
    assert out == [("Hmm, ", None), ("two.", None), ("", "\n\nFour")]
    assert splitter.closed
    other = ThinkSplitter()
    assert other.feed("a </t") == ("a ", None)
    assert other.feed("x> c") == ("</tx> c", None)


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppEngine]:
    eng = LlamaCppEngine(slots=1, threads=1, context_window=2048, chat_template=QWEN3_STYLE)
    await eng.start()
    yield eng
    await eng.aclose()


def request(thinking: Thinking, max_tokens: int = 60, **kw: object) -> GenerationRequest:
    return GenerationRequest(
        model="smollm2",
        system=None,
        turns=(Turn.of("user", "What is two plus two?"),),
        max_tokens=max_tokens,
        sampling=Sampling(temperature=0.0),
        thinking=thinking,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.model
async def test_the_engine_declares_thinking_from_its_template(engine: LlamaCppEngine) -> None:
    assert engine.capabilities.thinking
    assert engine.capabilities.thinking_budgets


@pytest.mark.model
async def test_thinking_comes_first_and_stops_at_the_budget(engine: LlamaCppEngine) -> None:
    events = [e async for e in generate(engine, request(Thinking("enabled", 12)))]
    kinds = [type(e).__name__ for e in events]
    first_text = kinds.index("TextChunk")
    assert set(kinds[:first_text]) == {"ThinkingChunk"}
    assert "ThinkingChunk" not in kinds[first_text:]
    thinking = [e for e in events if isinstance(e, ThinkingChunk)]
    assert thinking[-1].output_tokens <= 12
    assert isinstance(events[-1], Finished)
    assert "".join(e.text for e in thinking).strip()
    assert "".join(e.text for e in events if isinstance(e, TextChunk)).strip()


@pytest.mark.model
async def test_thinking_off_gives_an_answer_only(engine: LlamaCppEngine) -> None:
    events = [e async for e in generate(engine, request(Thinking()))]
    assert not any(isinstance(e, ThinkingChunk) for e in events)
    assert any(isinstance(e, TextChunk) for e in events)


@pytest.mark.model
async def test_the_answer_after_thinking_keeps_to_the_output_format(
    engine: LlamaCppEngine,
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    sent = request(Thinking("enabled", 10), output_schema=schema, max_tokens=80)
    prepared = await engine.prepare(sent)
    generation = await engine.open(prepared)
    signer = ThinkingSigner(b"k" * 32)
    message = await collect_message(
        MessageStream(sent, generation.input_tokens, signer=signer), generation.events
    )
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert signer.verify(thinking.thinking, thinking.signature)
    assert text.type == "text"
    jsonschema.validate(json.loads(text.text), schema)
