"""Tool calls on the real SmolLM2 model: inputs valid by construction, the grammar
confined to its request, cancellation inside a call (driven directly, no HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    Sampling,
    TextChunk,
    ToolCallStart,
    ToolChoice,
    ToolInputChunk,
    ToolSpec,
    Turn,
)
from parley.engines.llamacpp import LlamaCppEngine
from tests.engine_runs import generate
from tests.schemas import PROMPTS, SCHEMAS

pytestmark = pytest.mark.model


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppEngine]:
    eng = LlamaCppEngine(slots=1, threads=1, context_window=2048)
    await eng.start()
    yield eng
    await eng.aclose()


def tool(name: str) -> ToolSpec:
    return ToolSpec(name, None, SCHEMAS[name])


def req(
    prompt: str,
    tools: tuple[ToolSpec, ...] = (),
    choice: ToolChoice | None = None,
    *,
    max_tokens: int = 160,
    temperature: float = 0.0,
    seed: int | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        model="smollm2",
        system=None,
        turns=(Turn.of("user", prompt),),
        max_tokens=max_tokens,
        sampling=Sampling(temperature=temperature, seed=seed),
        tools=tools,
        tool_choice=choice or ToolChoice(),
    )


async def events(engine: LlamaCppEngine, request: GenerationRequest) -> list[EngineEvent]:
    return [e async for e in generate(engine, request)]


def call_of(found: list[EngineEvent]) -> tuple[str, dict[str, object]]:
    starts = [e for e in found if isinstance(e, ToolCallStart)]
    assert len(starts) == 1, found
    value = json.loads("".join(e.partial_json for e in found if isinstance(e, ToolInputChunk)))
    assert isinstance(value, dict)
    return starts[0].name, value


@pytest.mark.parametrize("name", ["set_thermostat", "move_robot", "add_contact"])
async def test_forced_calls_validate_even_when_sampled(engine: LlamaCppEngine, name: str) -> None:
    # Seeded: an unlucky draw may ramble inside a string field to max_tokens, and a
    # test that fails once in many runs tells nothing.
    for seed in (1, 2):
        forced = ToolChoice("tool", name)
        found = await events(
            engine, req(PROMPTS[name], (tool(name),), forced, temperature=1.0, seed=seed)
        )
        assert found[-1] == Finished("tool_use", found[-1].output_tokens), found[-1]
        called, value = call_of(found)
        assert called == name
        jsonschema.validate(value, SCHEMAS[name])


async def test_any_picks_one_of_the_tools(engine: LlamaCppEngine) -> None:
    tools = (tool("get_weather"), tool("send_email"))
    called, value = call_of(
        await events(engine, req(PROMPTS["get_weather"], tools, ToolChoice("any")))
    )
    assert called in {"get_weather", "send_email"}
    jsonschema.validate(value, SCHEMAS[called])


async def test_none_and_no_tools_give_text(engine: LlamaCppEngine) -> None:
    tools = (tool("get_weather"),)
    for request in (
        req(PROMPTS["get_weather"], tools, ToolChoice("none"), max_tokens=12),
        req(PROMPTS["get_weather"], max_tokens=12),
    ):
        found = await events(engine, request)
        assert all(isinstance(e, TextChunk | Finished) for e in found)


async def test_the_grammar_does_not_outlive_its_request(engine: LlamaCppEngine) -> None:
    plain = req("Name three colours.", max_tokens=12)
    before = await events(engine, plain)
    await events(engine, req(PROMPTS["get_weather"], (tool("get_weather"),), ToolChoice("any")))
    after = await events(engine, plain)
    assert before == after
    assert not "".join(e.text for e in after if isinstance(e, TextChunk)).startswith("{")


async def test_counting_matches_the_prompt_a_call_is_made_from(engine: LlamaCppEngine) -> None:
    tools = (tool("get_weather"),)
    forced = req(PROMPTS["get_weather"], tools, ToolChoice("any"))
    free = req(PROMPTS["get_weather"], tools)
    bare = req(PROMPTS["get_weather"])
    assert await engine.count_tokens(forced) == (await engine.prepare(forced)).input_tokens
    # The forced call's opening `<tool_call>\n` is part of the prompt.
    assert await engine.count_tokens(forced) > await engine.count_tokens(free)
    assert await engine.count_tokens(free) > await engine.count_tokens(bare) + 50


async def test_closing_inside_a_call_frees_the_slot(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"story": {"type": "string", "minLength": 2000}},
        "required": ["story"],
    }
    long_call = req(
        "Tell a story.", (ToolSpec("tell", None, schema),), ToolChoice("any"), max_tokens=2000
    )
    stream = generate(engine, long_call)
    async for event in stream:
        if isinstance(event, ToolInputChunk) and event.partial_json:
            break
    await stream.aclose()
    # One slot: the next request only runs once the cancelled one has let it go.
    found = await asyncio.wait_for(events(engine, req("Hi", max_tokens=3)), timeout=60)
    assert isinstance(found[-1], Finished)
