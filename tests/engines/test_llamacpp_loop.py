"""The batch loop on the real SmolLM2 model: interleaving, cancellation, grammars,
limits and the prompt cache's reporting (driven directly, no HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from parley.engines.llamacpp import bundled_model_path
from parley.engines.llamacpp.grammar import call_grammar
from parley.engines.llamacpp.jobs import Admitted, Breakpoint, Done, Failed, TokenOut
from parley.engines.llamacpp.loop import BatchLoop
from tests.engines.loop_helpers import Running, chatml, run, tokens_of

pytestmark = pytest.mark.model

QUESTIONS = [
    "Name three colours.",
    "Count from one to twenty.",
    "Write a short poem about the sea.",
    "List five animals that live in the forest.",
]


@pytest.fixture(scope="module")
def loop() -> Iterator[BatchLoop]:
    batch_loop = BatchLoop(
        bundled_model_path(),
        sequences=4,
        context_per_sequence=1024,
        threads=2,
        step_tokens=128,
        cache_bytes=256 << 20,
    )
    batch_loop.start()
    yield batch_loop
    batch_loop.close()


def prompt(loop: BatchLoop, question: str) -> list[int]:
    return tokens_of(loop, chatml(("user", question)))


async def test_four_streams_interleave_and_a_cancel_frees_its_sequence(loop: BatchLoop) -> None:
    alone = [await run(loop, prompt(loop, q), max_tokens=24) for q in QUESTIONS]
    assert loop.occupancy == (0, 0)
    loop.steps.clear()

    jobs = [Running(loop, prompt(loop, q), max_tokens=24) for q in QUESTIONS]
    victim = jobs[2]
    while len(victim.outcome.tokens) < 5:
        await victim.next()
    victim.handle.cancel()
    cancel_step = len(loop.steps)
    await victim.finish()
    done_step = len(loop.steps)
    # Its sequence is free again while the others still run, and it is the lowest
    # free one, so the next job gets it.
    later = Running(loop, prompt(loop, "Hello!"), max_tokens=4)
    outcomes = await asyncio.gather(*(job.finish() for job in jobs))
    assert (await later.finish()).admitted == Admitted(2, 0)

    # One decode carried a token of every stream at least once.
    decoding = [{seq for seq, n in step.seqs if n == 1} for step in loop.steps]
    assert any(len(seqs) == 4 for seqs in decoding)
    assert [o.admitted.seq_id for o in outcomes if o.admitted] == [0, 1, 2, 3]

    assert outcomes[2].end == Done("cancelled", len(outcomes[2].tokens))
    # The cancel took effect at the next step: between the cancel and its Done the
    # victim's sequence was in at most one decode (the one already running).
    between = list(loop.steps)[cancel_step:done_step]
    assert sum(2 in dict(step.seqs) for step in between) <= 1
    for i in (0, 1, 3):
        assert outcomes[i].tokens == alone[i].tokens
        assert outcomes[i].end == alone[i].end
        assert outcomes[i].text
    assert outcomes[2].tokens == alone[2].tokens[: len(outcomes[2].tokens)]
    assert loop.occupancy == (0, 0)


async def test_a_long_prompt_does_not_stall_running_streams(loop: BatchLoop) -> None:
    streaming = Running(loop, prompt(loop, QUESTIONS[1]), max_tokens=40)
    while len(streaming.outcome.tokens) < 2:
        await streaming.next()
    loop.steps.clear()
    long_question = "Summarise this text. " + "The quick brown fox jumps over the lazy dog. " * 60
    reader = Running(loop, prompt(loop, long_question), max_tokens=2)
    await asyncio.gather(streaming.finish(), reader.finish())
    reading = [step for step in loop.steps if dict(step.seqs).get(1, 0) > 1]
    assert len(reading) >= 4  # the long prompt took several steps...
    assert all(dict(step.seqs).get(0) == 1 for step in reading)  # ...each with the stream in it
    assert all(sum(n for _, n in step.seqs) <= 128 for step in loop.steps)


async def test_grammar_constrains_one_sequence_only(loop: BatchLoop) -> None:
    question = prompt(loop, "Is the sky blue? Answer yes or no.")
    constrained = Running(
        loop, question, max_tokens=8, grammar='root ::= "Maybe, " ("yes" | "no") "."'
    )
    free = Running(loop, question, max_tokens=8)
    first, second = await asyncio.gather(constrained.finish(), free.finish())
    assert first.text in (b"Maybe, yes.", b"Maybe, no.")
    assert first.end == Done("eog", len(first.tokens))
    assert not second.text.startswith(b"Maybe")


async def test_tool_call_grammar(loop: BatchLoop) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    grammar = call_grammar([("get_weather", schema)], allow_text=False)
    text = chatml(("user", "What is the weather in Paris?")) + "<tool_call>\n"
    outcome = await run(loop, tokens_of(loop, text), max_tokens=40, grammar=grammar)
    call = json.loads(outcome.text)
    assert call["name"] == "get_weather"
    assert isinstance(call["arguments"]["city"], str)


async def test_jobs_that_cannot_run_fail_alone(loop: BatchLoop) -> None:
    bad = await run(loop, prompt(loop, "Hi"), grammar="root ::= (")
    assert isinstance(bad.end, Failed)
    too_long = await run(loop, [1] * 2000)
    assert isinstance(too_long.end, Failed)
    assert "1024" in too_long.end.message
    ok = await run(loop, prompt(loop, "Hi"), max_tokens=3)
    assert ok.end == Done("max_tokens", 3)
    assert loop.occupancy == (0, 0)


async def test_cache_reads_are_reported_before_they_happen(loop: BatchLoop) -> None:
    loop.cache.clear()
    system = "You are a careful assistant. " * 40
    first = tokens_of(loop, chatml(("system", system), ("user", "Name a fruit.")))
    second = tokens_of(loop, chatml(("system", system), ("user", "Name a tree.")))
    mark = len(tokens_of(loop, chatml(("system", system), open_reply=False)))
    assert first[:mark] == second[:mark]
    breakpoints = (Breakpoint(mark, "1h"),)

    lease = loop.lookup("key-a", first, breakpoints, greedy=True)
    assert lease.reported == 0
    one = await run(loop, first, cache_scope="key-a", breakpoints=breakpoints, lease=lease)
    assert one.admitted is not None
    assert one.admitted.restored == 0

    lease = loop.lookup("key-a", second, breakpoints, greedy=True)
    assert lease.reported == mark
    two = await run(loop, second, cache_scope="key-a", breakpoints=breakpoints, lease=lease)
    assert two.admitted is not None
    # The first request's whole sequence was kept too (unmarked), so a few tokens
    # past the mark came from the cache as well; only the mark was reported.
    assert two.admitted.restored > mark
    assert loop.lookup("key-b", second, breakpoints).reported == 0  # scoped per key
    assert loop.lookup("key-a", second, ()).reported == 0  # no breakpoint, no read

    # The first request again: its finished sequence (unmarked) serves all but its
    # last prompt token; only the marked prefix may be reported.
    lease = loop.lookup("key-a", first, breakpoints, greedy=True)
    assert lease.reported == mark
    again = await run(loop, first, cache_scope="key-a", breakpoints=breakpoints, lease=lease)
    assert again.admitted is not None
    assert again.admitted.restored == len(first) - 1
    assert again.tokens == one.tokens


async def test_logits_are_copied_only_when_asked(loop: BatchLoop) -> None:
    outcome = await run(loop, prompt(loop, "Hi"), max_tokens=2, logits=True)
    assert len(outcome.logits) == 2
    assert loop.model is not None
    assert outcome.logits[0].shape == (loop.model.n_vocab,)
    assert outcome.tokens[0] == int(outcome.logits[0].argmax())
    plain = Running(loop, prompt(loop, "Hi"), max_tokens=1)
    event = await plain.next()
    while not isinstance(event, TokenOut):
        event = await plain.next()
    assert event.logits is None
    await plain.finish()


async def test_more_jobs_than_sequences_wait_their_turn(loop: BatchLoop) -> None:
    jobs = [Running(loop, prompt(loop, f"Say {i}."), max_tokens=6) for i in range(10)]
    outcomes = await asyncio.gather(*(job.finish() for job in jobs))
    assert all(isinstance(o.end, Done) for o in outcomes)
    assert {o.admitted.seq_id for o in outcomes if o.admitted} == {0, 1, 2, 3}
    assert max(len(step.seqs) for step in loop.steps) <= 4
    assert loop.occupancy == (0, 0)


async def test_a_sequence_ends_when_its_context_is_full() -> None:
    small = BatchLoop(bundled_model_path(), sequences=2, context_per_sequence=300, threads=1)
    small.start()
    try:
        assert small.context_per_sequence == 512  # llama.cpp rounds up to 256s
        tokens = tokens_of(small, chatml(("user", "Go on: " + "sea " * 600)))[:500]
        outcome = await run(small, tokens, max_tokens=50, ignore_eog=True)
        assert outcome.end == Done("context", 512 - 500 + 1)
    finally:
        small.close()
