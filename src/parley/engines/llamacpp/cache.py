"""Prompt cache: snapshots of sequences' KV state in host RAM.

An entry is the `llama_state_seq_get_data` bytes of a sequence holding exactly
`tokens` (a prompt prefix, or a whole finished conversation), kept per cache
scope (the API key: a cache shared between tenants leaks timing). Entries
made at a `cache_control` breakpoint are *marked*: only those may be reported
as `cache_read_input_tokens`. Unmarked entries only make requests faster.

Reuse is by longest common token prefix: a request restores the entry that
shares most of its prompt, then drops the tail it does not share. At least
the prompt's last token is always evaluated again, since its logits are what
the first sampled token comes from.

The store is bounded by bytes (least recently used goes first) and by the
entries' TTLs, refreshed on every use as the API does. Entries a pending job
was promised are pinned until the job is admitted. It is called from the
event loop (lookup) and the engine thread (plan, store), hence the lock; no
state bytes are copied while it is held.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Tokens = npt.NDArray[np.int32]

# The API's two cache lifetimes (api-spec §16: cache_control.ttl).
CacheTTL = Literal["5m", "1h"]
TTL_SECONDS: dict[CacheTTL, float] = {"5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True)
class Breakpoint:
    """A `cache_control` mark: the prompt's first `position` tokens are worth keeping."""

    position: int
    ttl: CacheTTL = "5m"


def as_tokens(tokens: Sequence[int] | Tokens) -> Tokens:
    return np.asarray(tokens, dtype=np.int32)


def common_prefix(a: Tokens, b: Tokens) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass(eq=False)
class CacheEntry:
    scope: str
    tokens: Tokens
    state: npt.NDArray[np.uint8]
    marked: bool
    ttl: float
    expires_at: float
    pins: int = 0

    @property
    def nbytes(self) -> int:
        return int(self.state.nbytes)

    def key(self) -> tuple[str, bytes]:
        return (self.scope, self.tokens.tobytes())


@dataclass(eq=False)
class CacheLease:
    """What `PromptCache.lookup` found for one prompt: `reported` tokens are read
    from a marked entry (truthful `cache_read_input_tokens`), and the entries
    that make it so stay pinned until `release()` (at admission, or by a caller
    that never submits)."""

    cache: PromptCache | None
    scope: str
    reported: int
    entries: list[CacheEntry] = field(default_factory=list)

    def release(self) -> None:
        if self.cache is not None:
            self.cache.unpin(self.entries)
            self.cache = None


@dataclass(frozen=True)
class RestorePlan:
    entry: CacheEntry
    length: int


class PromptCache:
    def __init__(self, budget_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_bytes = budget_bytes
        self._clock = clock
        self._lock = threading.Lock()
        # Key -> entry, least recently used first.
        self._entries: OrderedDict[tuple[str, bytes], CacheEntry] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, scope: str) -> list[CacheEntry]:
        with self._lock:
            self._expire()
            return [e for e in self._entries.values() if e.scope == scope]

    def lookup(
        self, scope: str, tokens: Sequence[int] | Tokens, upto: int | None = None
    ) -> CacheLease:
        """The marked prefix a job with these tokens will read, pinned. As in the
        API, a hit must end at or before the request's last breakpoint (`upto`)."""
        toks = as_tokens(tokens)
        limit = len(toks) - 1
        with self._lock:
            self._expire()
            best: CacheEntry | None = None
            now = self._clock()
            for entry in self._scope(scope):
                n = len(entry.tokens)
                if not entry.marked or entry.expires_at <= now or n > len(toks):
                    continue
                if upto is not None and n > upto:
                    continue
                if best is not None and n <= len(best.tokens):
                    continue
                if common_prefix(entry.tokens, toks) == n:
                    best = entry
            if best is None or limit <= 0:
                return CacheLease(None, scope, 0)
            best.pins += 1
            return CacheLease(self, scope, min(len(best.tokens), limit), [best])

    def unpin(self, entries: list[CacheEntry]) -> None:
        with self._lock:
            for entry in entries:
                entry.pins -= 1
            self._evict(0)

    def plan(
        self, scope: str, tokens: Tokens, breakpoints: tuple[Breakpoint, ...], reported: int
    ) -> RestorePlan | None:
        """What to restore for a job being admitted: the entry sharing the longest
        prefix, cut so that every breakpoint past `reported` without an entry of
        its own is still evaluated (and snapshotted) by this job. Refreshes the
        TTL of the marked entries the prompt covers, as a cache hit does."""
        limit = len(tokens) - 1
        for bp in breakpoints:
            if bp.position > reported and not self.has(scope, tokens[: bp.position]):
                limit = min(limit, bp.position)
        with self._lock:
            self._expire()
            best: RestorePlan | None = None
            for entry in self._scope(scope):
                n = min(common_prefix(entry.tokens, tokens), limit)
                if n <= 0:
                    continue
                if entry.marked and n == len(entry.tokens):
                    self._refresh(entry, None)
                # Among equals the shortest entry: it is the least to copy.
                if (
                    best is None
                    or n > best.length
                    or (n == best.length and entry.nbytes < best.entry.nbytes)
                ):
                    best = RestorePlan(entry, n)
            if best is not None:
                self._refresh(best.entry, None)
            return best

    def has(self, scope: str, tokens: Tokens, ttl: CacheTTL | None = None) -> bool:
        """Whether a marked entry holds exactly these tokens; refreshes it if so
        (a 1h mark also lengthens a 5m entry)."""
        with self._lock:
            entry = self._entries.get((scope, tokens.tobytes()))
            if entry is None or entry.expires_at <= self._clock() or not entry.marked:
                return False
            self._refresh(entry, TTL_SECONDS[ttl] if ttl else None)
            return True

    def store(
        self,
        scope: str,
        tokens: Tokens,
        state: npt.NDArray[np.uint8],
        *,
        marked: bool,
        ttl: CacheTTL = "5m",
    ) -> bool:
        """Keep a snapshot; False when it does not fit the budget."""
        seconds = TTL_SECONDS[ttl]
        entry = CacheEntry(scope, tokens.copy(), state, marked, seconds, 0.0)
        with self._lock:
            self._expire()
            old = self._entries.get(entry.key())
            if old is not None:
                # Same tokens, same state: keep the old bytes, take the stronger flags.
                old.marked = old.marked or marked
                self._refresh(old, max(seconds, old.ttl))
                return True
            if entry.nbytes > self.budget_bytes:
                return False
            if not marked:
                self._drop_unmarked_prefixes(entry)
            self._evict(entry.nbytes)
            if self._bytes + entry.nbytes > self.budget_bytes:
                return False
            entry.expires_at = self._clock() + seconds
            self._entries[entry.key()] = entry
            self._bytes += entry.nbytes
            return True

    def clear(self) -> None:
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry.pins <= 0:
                    self._remove(key)

    # --- under the lock ----------------------------------------------------------

    def _scope(self, scope: str) -> list[CacheEntry]:
        return [e for e in self._entries.values() if e.scope == scope]

    def _refresh(self, entry: CacheEntry, ttl: float | None) -> None:
        if ttl is not None:
            entry.ttl = max(entry.ttl, ttl)
        entry.expires_at = self._clock() + entry.ttl
        self._entries.move_to_end(entry.key())

    def _remove(self, key: tuple[str, bytes]) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.nbytes

    def _expire(self) -> None:
        now = self._clock()
        for key, entry in list(self._entries.items()):
            if entry.expires_at <= now and entry.pins <= 0:
                self._remove(key)

    def _evict(self, incoming: int) -> None:
        for key, entry in list(self._entries.items()):
            if self._bytes + incoming <= self.budget_bytes:
                return
            if entry.pins <= 0:
                self._remove(key)

    def _drop_unmarked_prefixes(self, longer: CacheEntry) -> None:
        # An unmarked entry that is a prefix of a newer one serves no lookup the
        # newer one cannot (its common prefix with any prompt is never longer).
        for key, entry in list(self._entries.items()):
            n = len(entry.tokens)
            if (
                entry.scope == longer.scope
                and not entry.marked
                and entry.pins <= 0
                and n <= len(longer.tokens)
                and common_prefix(entry.tokens, longer.tokens) == n
            ):
                self._remove(key)
