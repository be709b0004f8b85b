"""Continuous batching through the Engine contract, on the real SmolLM2 model: four
streams decoded together in one loop, one closed mid-way whose sequence goes to the
next request while the others finish exactly as they would alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from parley.core.generation import Sampling
from parley.engines.llamacpp import LlamaCppEngine
from tests.engines.llamacpp_streams import Stream, request, started

pytestmark = pytest.mark.model

QUESTIONS = [
    "Name three colours.",
    "Count from one to twenty.",
    "Write a short poem about the sea.",
    "List five animals that live in the forest.",
]
LATER = "Say hello to the reader."
VICTIM = 2


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    with started(LlamaCppEngine(slots=4, threads=2, context_window=1024, step_tokens=128)) as eng:
        yield eng


async def alone(engine: LlamaCppEngine, question: str) -> str:
    stream = await Stream.open(engine, request(question, scope=None))
    text, _ = await stream.finish()
    return text


async def test_four_streams_share_each_step_and_a_closed_one_frees_its_sequence(
    engine: LlamaCppEngine,
) -> None:
    expected = [await alone(engine, q) for q in QUESTIONS]
    expected_later = await alone(engine, LATER)
    steps = engine.loop.steps
    steps.clear()

    streams = [await Stream.open(engine, request(q, scope=None)) for q in QUESTIONS]
    # Read each in turn until all four have text: their jobs were submitted in this
    # order, so they hold sequences 0-3.
    for stream in streams:
        while stream.chunks < 3:
            await stream.next()
    busy = engine.occupancy()
    assert busy is not None
    assert busy.busy == 4

    # Closed mid-way, as when a client goes away; the next request waits for a place.
    cancelled_at = len(steps)
    await streams[VICTIM].close()
    later = await Stream.open(engine, request(LATER, scope=None))
    others = [s for i, s in enumerate(streams) if i != VICTIM]
    results = await asyncio.gather(*(s.finish() for s in [*others, later]))

    # One decode carried a token of each of the four streams.
    assert any(sorted(seq for seq, n in step.seqs if n == 1) == [0, 1, 2, 3] for step in steps)
    # The victim's sequence stopped within a step of the close, and then read the
    # later request's prompt (a chunk of many tokens) beside the running streams.
    after = list(steps)[cancelled_at:]
    handover = next(i for i, step in enumerate(after) if dict(step.seqs).get(VICTIM, 0) > 1)
    assert sum(VICTIM in dict(step.seqs) for step in after[:handover]) <= 1
    assert len(after[handover].seqs) > 1

    assert [text for text, _ in results[:3]] == [e for i, e in enumerate(expected) if i != VICTIM]
    assert results[3][0] == expected_later
    assert expected[VICTIM].startswith(streams[VICTIM].text)
    assert streams[VICTIM].text
    assert streams[VICTIM].finished is None
    idle = engine.occupancy()
    assert idle is not None
    assert (idle.busy, idle.waiting) == (0, 0)


async def test_sampled_streams_run_together_too(engine: LlamaCppEngine) -> None:
    """Seeded sampling is repeatable, batched or not (each sequence has its own chain)."""
    sampled = Sampling(temperature=1.0, seed=7)

    async def run(question: str) -> str:
        stream = await Stream.open(engine, request(question, scope=None, sampling=sampled))
        text, _ = await stream.finish()
        return text

    alone_texts = [await run(q) for q in QUESTIONS]
    together = await asyncio.gather(*(run(q) for q in QUESTIONS))
    assert list(together) == alone_texts
