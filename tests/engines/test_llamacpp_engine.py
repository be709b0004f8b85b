"""The embedded engine on the real SmolLM2 model, driven directly (no HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from parley.core.generation import Finished, GenerationRequest, Sampling, TextChunk, Turn
from parley.engines.llamacpp import LlamaCppEngine, bundled_model_path
from tests.engine_runs import collect, generate

pytestmark = pytest.mark.model


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppEngine]:
    eng = LlamaCppEngine(slots=1, threads=1, context_window=2048)
    await eng.start()
    yield eng
    await eng.aclose()


def req(
    text: str, *, max_tokens: int = 24, prefill: str | None = None, **kw: object
) -> GenerationRequest:
    turns = [Turn.of("user", text)] + ([Turn.of("assistant", prefill)] if prefill else [])
    return GenerationRequest(
        model="smollm2",
        system=None,
        turns=tuple(turns),
        max_tokens=max_tokens,
        sampling=Sampling(temperature=0.0),
        **kw,  # type: ignore[arg-type]
    )


async def run(engine: LlamaCppEngine, request: GenerationRequest) -> tuple[str, Finished]:
    text = ""
    async for event in generate(engine, request):
        if isinstance(event, TextChunk):
            text += event.text
        else:
            return text, event
    raise AssertionError("no Finished event")


def test_bundled_model_is_the_smollm2_gguf() -> None:
    path = bundled_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


async def test_context_window_comes_from_config_or_gguf(engine: LlamaCppEngine) -> None:
    assert engine.context_window == 2048


async def test_temperature_zero_is_deterministic(engine: LlamaCppEngine) -> None:
    first = await run(engine, req("Name three colours."))
    second = await run(engine, req("Name three colours."))
    assert first == second
    assert first[0].strip()


async def test_max_tokens_stops_with_exact_count(engine: LlamaCppEngine) -> None:
    text, finished = await run(engine, req("Write a long poem about the sea.", max_tokens=7))
    assert finished == Finished("max_tokens", 7)
    assert text


async def test_usage_counts_come_from_the_tokenizer(engine: LlamaCppEngine) -> None:
    short = await engine.count_tokens(req("Hi"))
    longer = await engine.count_tokens(req("Hi " * 50))
    assert longer - short == 50  # " Hi" is one SmolLM2 token


async def test_prefill_is_continued(engine: LlamaCppEngine) -> None:
    prompt = "List the numbers from one to ten, separated by commas."
    plain, _ = await run(engine, req(prompt, max_tokens=12))
    continued, _ = await run(engine, req(prompt, max_tokens=12, prefill="1, 2, 3,"))
    assert continued != plain
    assert continued.lstrip().startswith("4")


async def test_stop_sequence_cuts_real_output(engine: LlamaCppEngine) -> None:
    request = req("List the numbers from one to ten, separated by commas.", prefill="1, 2, 3,")
    baseline, _ = await run(engine, request)
    assert " 5," in baseline
    stopped = GenerationRequest(**{**request.__dict__, "stop_sequences": (" 5,",)})
    message = await collect(engine, stopped)
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == " 5,"
    assert message.content[0].text == baseline[: baseline.index(" 5,")]  # type: ignore[union-attr]
