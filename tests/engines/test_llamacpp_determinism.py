"""Greedy decoding is bit-exact whatever else the batch loop does.

One prompt, decoded greedily with its logits copied at every step, in four
situations that change what llama.cpp computes around it:

1. alone in the loop (the reference);
2. batched with 7 other requests (random prompts, lengths and sampling), so its
   prompt and reply share decodes and ubatches with theirs;
3. after restoring a cached prefix (mid-prompt, and the whole prompt but its last
   token, which is then evaluated as a batch of one);
4. as the later turn of a conversation, reusing the KV state of the earlier turn
   (its prompt and the reply tokens that were decoded one at a time).

The logits must be equal bit for bit, not merely close (and they are the same
for another thread count and step budget too). This holds for a
llama.cpp built with GGML_LLAMAFILE=OFF, with flash attention off and one KV
stream per sequence (the loop's settings); with llamafile's sgemm, matmuls with
two or more columns take another kernel than one-column ones, and every case but
the first fails. The loop reports which build it runs on (`bit_exact`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import numpy as np
import pytest

from parley.engines.llamacpp import bundled_model_path
from parley.engines.llamacpp.jobs import Breakpoint, SamplingParams
from parley.engines.llamacpp.loop import BatchLoop
from tests.engines.loop_helpers import Outcome, Running, chatml, run, tokens_of

pytestmark = pytest.mark.model

SYSTEM = (
    "You are a meticulous assistant for a small museum of maritime history. "
    "You answer visitors' questions about ships, lighthouses, navigation and the "
    "people who kept the coast safe. Keep answers short, concrete and friendly. "
) * 6
QUESTION = "Who kept the lighthouse on the rocky island, and how did they live?"
STEPS = 32
WORDS = [
    "harbour",
    "anchor",
    "compass",
    "tide",
    "storm",
    "lantern",
    "keeper",
    "rope",
    "sail",
    "island",
    "cliff",
    "gull",
    "wave",
    "chart",
    "star",
    "night",
    "fog",
    "bell",
    "signal",
    "coast",
    "beacon",
    "voyage",
    "current",
    "reef",
]


@pytest.fixture(scope="module")
def loop() -> Iterator[BatchLoop]:
    batch_loop = BatchLoop(
        bundled_model_path(),
        sequences=8,
        context_per_sequence=2048,
        threads=2,
        step_tokens=256,
        cache_bytes=512 << 20,
    )
    batch_loop.start()
    yield batch_loop
    batch_loop.close()


@pytest.fixture(scope="module")
def prompt(loop: BatchLoop) -> list[int]:
    return tokens_of(loop, chatml(("system", SYSTEM), ("user", QUESTION)))


@pytest.fixture(scope="module")
def reference(loop: BatchLoop, prompt: list[int]) -> Outcome:
    outcome = asyncio.run(run(loop, prompt, max_tokens=STEPS, logits=True))
    assert len(outcome.logits) == len(outcome.tokens)
    assert len(outcome.tokens) >= 16
    return outcome


def assert_bit_identical(got: Outcome, want: Outcome) -> None:
    assert len(got.logits) == len(want.logits)
    for step, (a, b) in enumerate(zip(got.logits, want.logits, strict=True)):
        if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
            diff = float(np.max(np.abs(a - b)))
            pytest.fail(f"logits differ at step {step} (max |diff| {diff:.3g})")
    assert got.tokens == want.tokens


def test_the_loop_runs_on_a_bit_exact_build(loop: BatchLoop) -> None:
    assert loop.bit_exact, "llama.cpp was built with GGML_LLAMAFILE on"


async def test_batched_with_seven_random_requests(
    loop: BatchLoop, prompt: list[int], reference: Outcome
) -> None:
    rng = random.Random(7)

    def other() -> Running:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 400)))
        sampling = SamplingParams(rng.choice([0.0, 0.7, 1.0]), seed=rng.randrange(1 << 30))
        return Running(
            loop,
            tokens_of(loop, chatml(("user", f"Tell a story with these words: {words}"))),
            max_tokens=rng.randrange(8, 48),
            sampling=sampling,
        )

    before = [other() for _ in range(4)]
    for job in before[:2]:  # two of them already generating when the prompt comes
        while not job.outcome.tokens and job.outcome.end is None:
            await job.next()
    target = Running(loop, prompt, max_tokens=STEPS, logits=True)
    after = [other() for _ in range(3)]
    results = await asyncio.gather(target.finish(), *(j.finish() for j in before + after))
    assert results[0].admitted is not None
    assert results[0].admitted.seq_id > 0
    assert_bit_identical(results[0], reference)


async def test_after_restoring_a_cached_prefix(
    loop: BatchLoop, prompt: list[int], reference: Outcome
) -> None:
    mark = len(tokens_of(loop, chatml(("system", SYSTEM), open_reply=False)))
    assert 0 < mark < len(prompt) - 8
    scope = "restore"
    for position, restored in ((mark, mark), (len(prompt), len(prompt) - 1)):
        marks = (Breakpoint(position),)
        await run(loop, prompt, max_tokens=1, cache_scope=scope, breakpoints=marks, keep=False)
        lease = loop.lookup(scope, prompt, marks, greedy=True)
        assert lease.reported == restored
        outcome = await run(
            loop,
            prompt,
            max_tokens=STEPS,
            logits=True,
            cache_scope=scope,
            breakpoints=marks,
            lease=lease,
            keep=False,
        )
        assert outcome.admitted is not None
        assert outcome.admitted.restored == restored
        assert_bit_identical(outcome, reference)


async def test_a_later_turn_reusing_the_earlier_one(loop: BatchLoop, reference: Outcome) -> None:
    scope = "conversation"
    first_turn = chatml(("system", SYSTEM), ("user", QUESTION))
    first = await run(loop, tokens_of(loop, first_turn), max_tokens=STEPS, cache_scope=scope)
    assert first.tokens == reference.tokens
    second_turn = (
        first_turn
        + first.text.decode("utf-8")
        + "<|im_end|>\n"
        + chatml(("user", "And what did they eat in winter?"))
    )
    tokens = tokens_of(loop, second_turn)
    fresh = await run(loop, tokens, max_tokens=STEPS, logits=True)
    reused = await run(loop, tokens, max_tokens=STEPS, logits=True, cache_scope=scope)
    assert reused.admitted is not None
    # The restored state holds the first turn's reply, decoded token by token.
    assert reused.admitted.restored > len(tokens_of(loop, first_turn)) + len(first.tokens) // 2
    assert_bit_identical(reused, fresh)


async def test_thread_count_and_step_budget_do_not_matter(
    prompt: list[int], reference: Outcome
) -> None:
    other = BatchLoop(
        bundled_model_path(), sequences=2, context_per_sequence=2048, threads=1, step_tokens=64
    )
    other.start()
    try:
        outcome = await run(other, prompt, max_tokens=STEPS, logits=True)
    finally:
        other.close()
    assert_bit_identical(outcome, reference)
