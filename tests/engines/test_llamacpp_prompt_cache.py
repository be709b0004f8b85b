"""Prompt caching on the real SmolLM2 model through the Engine contract: usage exactly
as the API counts it (api-spec §16), with the breakpoints' positions counted here by
the model's own tokenizer; lifetimes on an injected clock; entries per key; a later
turn of a conversation served from the cache; and unmarked reuse that makes a
request faster without changing its usage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from parley.core.generation import (
    CacheMark,
    Sampling,
    TextPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    Turn,
)
from parley.engines.llamacpp import LlamaCppEngine
from tests.clock import FakeClock
from tests.engines.llamacpp_streams import counts, message, request, started

pytestmark = pytest.mark.model

MIN_TOKENS = 64
SYSTEM = (
    "You are the help desk of a small public library. Answer questions about opening "
    "hours, borrowing rules, the reading room and the children's corner. Be brief. "
) * 3
CLOCK = FakeClock(0.0)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    with started(
        LlamaCppEngine(
            slots=2,
            threads=2,
            context_window=2048,
            cache_min_tokens=MIN_TOKENS,
            clock=CLOCK,
        )
    ) as eng:
        yield eng


@pytest.fixture(autouse=True)
def _empty_cache(engine: LlamaCppEngine) -> None:
    engine.loop.cache.clear()


def tokens(engine: LlamaCppEngine, text: str) -> int:
    model = engine.loop.model
    assert model is not None
    return len(model.tokenize(text, add_bos=model.add_bos, special=True))


def system_end(engine: LlamaCppEngine, system: str = SYSTEM) -> int:
    """Where a breakpoint on the system prompt falls: the end of its text in SmolLM2's
    ChatML rendering."""
    return tokens(engine, f"<|im_start|>system\n{system}")


def evaluated(engine: LlamaCppEngine) -> int:
    """Prompt tokens the loop decoded since its record was cleared (a generating
    sequence adds one token a step, a prompt chunk more)."""
    return sum(n for step in engine.loop.steps for _, n in step.seqs if n > 1)


async def test_a_marked_system_prompt_is_written_then_read(engine: LlamaCppEngine) -> None:
    mark = system_end(engine)
    assert mark >= MIN_TOKENS
    sent = request("When does the library open?", system=SYSTEM, mark=CacheMark())
    total = await engine.count_tokens(sent)

    first = await message(engine, sent)
    assert counts(first.usage) == (total - mark, mark, 0)
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == mark
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 0

    engine.loop.steps.clear()
    second = await message(engine, sent)
    assert counts(second.usage) == (total - mark, 0, mark)
    # Really read, not just reported: the marked prefix was not decoded again.
    assert evaluated(engine) <= total - mark
    # Temperature 0 gives the same reply from the cache as without it.
    assert second.content == first.content

    # Another key reads nothing, and writes its own entry.
    other = await message(
        engine,
        request("When does the library open?", system=SYSTEM, mark=CacheMark(), scope="key-b"),
    )
    assert counts(other.usage) == (total - mark, mark, 0)
    assert other.content == first.content


async def test_another_question_reads_the_shared_prefix(engine: LlamaCppEngine) -> None:
    mark = system_end(engine)
    await message(engine, request("Can I borrow ten books?", system=SYSTEM, mark=CacheMark()))
    sent = request("Is there a children's corner?", system=SYSTEM, mark=CacheMark())
    later = await message(engine, sent)
    assert counts(later.usage) == (await engine.count_tokens(sent) - mark, 0, mark)


async def test_a_prefix_below_the_minimum_is_not_cached(engine: LlamaCppEngine) -> None:
    short = "You are brief."
    assert system_end(engine, short) < MIN_TOKENS
    sent = request("Hello?", system=short, mark=CacheMark())
    total = await engine.count_tokens(sent)
    for _ in range(2):
        reply = await message(engine, sent)
        assert counts(reply.usage) == (total, 0, 0)


async def test_no_key_no_cache(engine: LlamaCppEngine) -> None:
    sent = request("Hello?", system=SYSTEM, mark=CacheMark(), scope=None)
    total = await engine.count_tokens(sent)
    for _ in range(2):
        assert counts((await message(engine, sent)).usage) == (total, 0, 0)


async def test_entries_live_five_minutes_or_an_hour_from_their_last_use(
    engine: LlamaCppEngine,
) -> None:
    mark = system_end(engine)
    five = request("Where is the reading room?", system=SYSTEM, mark=CacheMark())
    total = await engine.count_tokens(five)
    assert counts((await message(engine, five)).usage)[1] == mark
    CLOCK.advance(240)
    assert counts((await message(engine, five)).usage)[2] == mark  # read, and refreshed
    CLOCK.advance(240)
    assert counts((await message(engine, five)).usage)[2] == mark  # 8 min after writing
    CLOCK.advance(301)
    assert counts((await message(engine, five)).usage) == (total - mark, mark, 0)

    engine.loop.cache.clear()
    hour = request("Where is the reading room?", system=SYSTEM, mark=CacheMark("1h"))
    written = await message(engine, hour)
    assert written.usage.cache_creation.ephemeral_1h_input_tokens == mark
    CLOCK.advance(3000)
    assert counts((await message(engine, hour)).usage)[2] == mark
    CLOCK.advance(3601)
    assert counts((await message(engine, hour)).usage) == (total - mark, mark, 0)


async def test_writes_are_split_by_lifetime(engine: LlamaCppEngine) -> None:
    """A 1h mark on the system prompt and a 5m mark on the question: what lies before
    each is written for its lifetime; a new question re-writes only its own part."""
    mark = system_end(engine)

    def asked(question: str) -> Turn:
        return Turn("user", (TextPart(question, CacheMark()),))

    def sent(question: str) -> object:
        return request(question, system=SYSTEM, mark=CacheMark("1h"), turns=(asked(question),))

    question = "What are the opening hours on Sunday, and is the cafe open then?"
    end = tokens(engine, f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{question}")
    first = await message(engine, sent(question))  # type: ignore[arg-type]
    assert counts(first.usage)[1:] == (end, 0)
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == mark
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == end - mark

    again = await message(engine, sent(question))  # type: ignore[arg-type]
    assert counts(again.usage)[1:] == (0, end)
    other = "Can I print documents there?"
    end_other = tokens(engine, f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{other}")
    changed = await message(engine, sent(other))  # type: ignore[arg-type]
    assert counts(changed.usage)[1:] == (end_other - mark, mark)
    assert changed.usage.cache_creation.ephemeral_5m_input_tokens == end_other - mark


async def test_an_agents_next_turn_is_served_from_the_cache(engine: LlamaCppEngine) -> None:
    """Same system prompt and tools, the conversation so far, a few new tokens: with
    the automatic breakpoint (top-level cache_control) the second turn reads what the
    first wrote, and the loop decodes only what is new."""
    tool = ToolSpec(
        "find_book",
        "Find a book in the catalogue by title.",
        {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
        cache=CacheMark(),
    )
    ask = Turn.of("user", "Do you have Moby Dick?")
    first_sent = request(
        "",
        system=SYSTEM,
        mark=CacheMark(),
        turns=(ask,),
        tools=(tool,),
        cache=CacheMark(),
        max_tokens=40,
    )
    total_first = await engine.count_tokens(first_sent)
    first = await message(engine, first_sent)
    read_first, written_first = counts(first.usage)[2], counts(first.usage)[1]
    assert read_first == 0
    assert 0 < written_first < total_first

    call = ToolCall("toolu_1", "find_book", {"title": "Moby Dick"})
    result = ToolResult("toolu_1", "find_book", (TextPart("Shelf 12, available."),))
    second_sent = request(
        "",
        system=SYSTEM,
        mark=CacheMark(),
        turns=(ask, Turn("assistant", (call,)), Turn("user", (result,))),
        tools=(tool,),
        cache=CacheMark(),
        max_tokens=40,
    )
    total_second = await engine.count_tokens(second_sent)
    engine.loop.steps.clear()
    second = await message(engine, second_sent)
    plain, written, read = counts(second.usage)
    assert read == written_first  # the first turn's automatic breakpoint
    assert plain + written + read == total_second
    assert written == total_second - read - plain > 0
    assert evaluated(engine) <= total_second - read


async def test_unmarked_reuse_never_shows_in_usage(engine: LlamaCppEngine) -> None:
    """Without breakpoints nothing is reported, though the loop keeps what it read and
    the same prompt again is read from its own snapshot, faster."""
    sent = request("Name three famous libraries.", system=SYSTEM)
    total = await engine.count_tokens(sent)
    first = await message(engine, sent)
    engine.loop.steps.clear()
    second = await message(engine, sent)
    assert counts(first.usage) == counts(second.usage) == (total, 0, 0)
    assert evaluated(engine) < total // 4
    assert second.content == first.content


async def test_max_tokens_zero_warms_the_cache(engine: LlamaCppEngine) -> None:
    mark = system_end(engine)
    warm = request("Is the library open today?", system=SYSTEM, mark=CacheMark(), max_tokens=0)
    total = await engine.count_tokens(warm)
    warmed = await message(engine, warm)
    assert counts(warmed.usage) == (total - mark, mark, 0)
    assert warmed.usage.output_tokens == 0
    sent = request("Is the library open today?", system=SYSTEM, mark=CacheMark())
    assert counts((await message(engine, sent)).usage) == (total - mark, 0, mark)


async def test_a_discarded_request_gives_its_entry_back(engine: LlamaCppEngine) -> None:
    sent = request("When does the library open?", system=SYSTEM, mark=CacheMark())
    await message(engine, sent)
    prepared = await engine.prepare(sent)
    (entry,) = [e for e in engine.loop.cache.entries("key-a") if e.marked]
    assert entry.pins == 1
    engine.discard(prepared)
    assert entry.pins == 0
    generation = await engine.open(await engine.prepare(sent))
    await generation.events.aclose()  # never read: still given back
    assert entry.pins == 0


async def test_without_bit_exact_reuse_greedy_requests_only_write() -> None:
    """As on a llama.cpp built with llamafile (greedy output would change if read from
    the cache): greedy requests read nothing, though they still write; sampled ones
    read."""
    eng = LlamaCppEngine(
        slots=1, threads=2, context_window=1024, cache_min_tokens=MIN_TOKENS, reuse_greedy=False
    )
    await eng.start()
    try:
        mark = system_end(eng)
        greedy = request("Where is the reading room?", system=SYSTEM, mark=CacheMark())
        total = await eng.count_tokens(greedy)
        for _ in range(2):
            assert counts((await message(eng, greedy)).usage) == (total - mark, mark, 0)
        sampled = replace(greedy, sampling=Sampling(temperature=1.0, seed=3))
        assert counts((await message(eng, sampled)).usage) == (total - mark, 0, mark)
    finally:
        await eng.aclose()
