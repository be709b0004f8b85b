"""The prompt cache's bookkeeping (no model: states are stand-in byte arrays)."""

from __future__ import annotations

import numpy as np

from parley.engines.llamacpp.cache import PromptCache, as_tokens, common_prefix
from parley.engines.llamacpp.jobs import Breakpoint


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(nbytes: int) -> np.ndarray:  # type: ignore[type-arg]
    return np.zeros(nbytes, dtype=np.uint8)


def toks(*values: int) -> np.ndarray:  # type: ignore[type-arg]
    return as_tokens(list(values))


def reported(cache: PromptCache, tokens: list[int]) -> int:
    lease = cache.lookup("k", tokens)
    lease.release()
    return lease.reported


def test_common_prefix() -> None:
    assert common_prefix(toks(1, 2, 3), toks(1, 2, 4)) == 2
    assert common_prefix(toks(1, 2), toks(1, 2, 4)) == 2
    assert common_prefix(toks(), toks(1)) == 0
    assert common_prefix(toks(5), toks(1)) == 0


def test_lookup_reports_only_marked_entries_that_are_whole_prefixes() -> None:
    cache = PromptCache(1 << 20)
    cache.store("k", toks(1, 2, 3, 4), state(10), marked=True)
    cache.store("k", toks(1, 2, 3, 4, 5, 6, 7), state(10), marked=False)
    assert cache.lookup("k", [1, 2, 3, 4, 5, 6, 7, 8]).reported == 4
    # Diverges inside the marked entry: nothing reportable.
    assert cache.lookup("k", [1, 2, 9, 4, 5]).reported == 0
    # Another key sees nothing.
    assert cache.lookup("other", [1, 2, 3, 4, 5]).reported == 0
    # A prompt equal to the entry still evaluates its last token.
    assert cache.lookup("k", [1, 2, 3, 4]).reported == 3
    # A hit must end at or before the request's last breakpoint.
    assert cache.lookup("k", [1, 2, 3, 4, 5], upto=3).reported == 0
    assert cache.lookup("k", [1, 2, 3, 4, 5], upto=4).reported == 4


def test_plan_takes_the_longest_common_prefix_marked_or_not() -> None:
    cache = PromptCache(1 << 20)
    cache.store("k", toks(1, 2, 3, 4), state(10), marked=True)
    cache.store("k", toks(1, 2, 3, 4, 5, 6, 7), state(20), marked=False)
    plan = cache.plan("k", toks(1, 2, 3, 4, 5, 6, 9, 9), (), 4)
    assert plan is not None
    assert plan.length == 6
    assert len(plan.entry.tokens) == 7
    # Never the whole prompt.
    plan = cache.plan("k", toks(1, 2, 3, 4), (), 3)
    assert plan is not None
    assert plan.length == 3
    assert len(plan.entry.tokens) == 4  # the smaller of two equally good entries


def test_plan_stops_at_a_breakpoint_that_still_needs_its_snapshot() -> None:
    cache = PromptCache(1 << 20)
    cache.store("k", toks(1, 2, 3, 4, 5, 6, 7), state(20), marked=False)
    plan = cache.plan("k", toks(1, 2, 3, 4, 5, 6, 7, 8), (Breakpoint(5),), 0)
    assert plan is not None
    assert plan.length == 5
    cache.store("k", toks(1, 2, 3, 4, 5), state(10), marked=True)
    plan = cache.plan("k", toks(1, 2, 3, 4, 5, 6, 7, 8), (Breakpoint(5),), 5)
    assert plan is not None
    assert plan.length == 7


def test_lru_eviction_by_bytes_spares_pinned_entries() -> None:
    cache = PromptCache(100)
    cache.store("k", toks(1), state(40), marked=True)
    cache.store("k", toks(2), state(40), marked=True)
    lease = cache.lookup("k", [1, 7])
    assert lease.reported == 1
    assert cache.store("k", toks(3), state(40), marked=True)
    keys = {int(e.tokens[0]) for e in cache.entries("k")}
    assert keys == {1, 3}  # 2 was least recently used and unpinned
    # Nothing unpinned can make room for 90 bytes next to the pinned one.
    assert not cache.store("k", toks(4), state(90), marked=True)
    lease.release()
    lease.release()  # idempotent
    assert cache.store("k", toks(4), state(90), marked=True)
    assert cache.nbytes == 90
    assert not cache.store("k", toks(5), state(101), marked=True)


def test_ttl_expiry_refresh_and_upgrade() -> None:
    clock = Clock()
    cache = PromptCache(1 << 20, clock)
    cache.store("k", toks(1, 2), state(10), marked=True)  # 5 minutes
    clock.now += 200
    assert cache.has("k", toks(1, 2))  # a hit refreshes the TTL
    clock.now += 200
    assert reported(cache, [1, 2, 3]) == 2
    clock.now += 301
    assert reported(cache, [1, 2, 3]) == 0
    cache.store("k", toks(1, 2), state(10), marked=True)
    assert cache.has("k", toks(1, 2), "1h")  # a 1h mark lengthens it
    clock.now += 3000
    assert reported(cache, [1, 2, 3]) == 2
    clock.now += 3601
    assert len(cache.entries("k")) == 0


def test_pinned_entries_outlive_their_ttl_until_released() -> None:
    clock = Clock()
    cache = PromptCache(1 << 20, clock)
    cache.store("k", toks(1, 2, 3), state(10), marked=True)
    lease = cache.lookup("k", [1, 2, 3, 4])
    clock.now += 1000
    plan = cache.plan("k", toks(1, 2, 3, 4), (), lease.reported)
    assert plan is not None
    assert plan.length == 3
    lease.release()
    clock.now += 1000
    assert len(cache.entries("k")) == 0


def test_unmarked_entries_replace_their_own_prefixes() -> None:
    cache = PromptCache(1 << 20)
    cache.store("k", toks(1, 2, 3), state(10), marked=False)
    cache.store("k", toks(1, 2), state(10), marked=True)
    cache.store("k", toks(1, 2, 3, 4, 5), state(10), marked=False)
    lengths = sorted(len(e.tokens) for e in cache.entries("k"))
    assert lengths == [2, 5]
