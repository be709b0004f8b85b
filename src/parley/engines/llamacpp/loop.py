"""Continuous batching: one llama.cpp context serving many sequences from one thread.

`BatchLoop` owns the model, one context with `sequences` KV streams and the
engine thread. Each step, as llama-server does it:

1. retire cancelled sequences (their KV is cleared, the handle hears `Done`);
2. admit waiting jobs on the lowest free sequence ids, restoring cached prefixes;
3. fill one batch, in sequence-id order: each generating sequence's last token,
   then prompt chunks up to the step's token budget, cut at cache breakpoints
   (a long prompt is read over several steps and never stalls the streams);
4. decode it with one `llama_decode`;
5. sample each sequence that got logits with its own sampler chain, snapshot
   prompts that reached a breakpoint, retire finished sequences;
6. hand the step's events to the asyncio loop in one `call_soon_threadsafe`.

The context is built for determinism ("stream mode"): a KV stream per sequence
(`kv_unified=false`) and flash attention off, so a sequence's cells sit in
position order whatever else runs, and (with a llama.cpp built with
GGML_LLAMAFILE=OFF) every row is computed by the same kernels in the same order
whatever the batch shape. See tests/engines/test_llamacpp_determinism.py.

Only the loop's sequences are its business: the caller decides how many jobs to
submit (the engine's SlotPool holds `sequences` tickets, which keeps the 529
queue and the batch-priority rules). A job's final event arrives after its
sequence was cleared, so the caller returns its ticket then.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from parley.engines.llamacpp.cache import CacheLease, PromptCache, as_tokens
from parley.engines.llamacpp.context import LlamaContext
from parley.engines.llamacpp.jobs import Admitted, Breakpoint, Done, Failed, Job, TokenOut
from parley.engines.llamacpp.model import LlamaModel
from parley.engines.llamacpp.sampling import GrammarError, SequenceSampler
from parley.engines.llamacpp.sequence import ActiveSequence, JobHandle, Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    """One `llama_decode`: (sequence id, tokens) per sequence in the batch."""

    seqs: tuple[tuple[int, int], ...]
    seconds: float


class BatchLoop:
    """`sequences` concurrent jobs of up to `context_per_sequence` tokens each (None: the
    model's trained context; llama.cpp rounds it up to a multiple of 256: read
    `context_per_sequence` after `start`),
    `threads` compute threads for the whole model, at most `step_tokens` tokens per
    decode (one per generating sequence first, prompt chunks in the rest), and
    `cache_bytes` of host RAM for prompt-cache snapshots (0: no cache)."""

    def __init__(
        self,
        model_path: Path,
        *,
        sequences: int = 8,
        context_per_sequence: int | None = 4096,
        threads: int = 2,
        step_tokens: int = 256,
        cache_bytes: int = 512 << 20,
        record_steps: int = 512,
        reuse_greedy: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if step_tokens < sequences:
            raise ValueError("step_tokens must leave room for one token per sequence")
        self._path = model_path
        self.sequences = sequences
        self._requested_ctx = context_per_sequence
        self.threads = threads
        self._step_tokens = step_tokens
        # `clock`: what cache lifetimes are measured with (tests pass their own).
        self.cache = PromptCache(cache_bytes, clock)
        # Whether greedy jobs may restore cached state; by default, only where that
        # keeps them bit-exact (see `bit_exact`).
        self.reuse_greedy = reuse_greedy
        self.steps: deque[StepRecord] = deque(maxlen=record_steps)
        self.model: LlamaModel | None = None
        self.context_per_sequence = 0
        self._ctx: LlamaContext | None = None
        self._cond = threading.Condition()
        self._inbox: list[JobHandle] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        # Engine-thread state.
        self._waiting: deque[JobHandle] = deque()
        self._active: dict[int, ActiveSequence] = {}
        self._free = set(range(sequences))
        self._admitted = 0
        self._out = Outbox()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Load the model and start the engine thread (blocking: call it off the loop)."""
        self.model = model = LlamaModel(self._path)
        try:
            self._ctx = LlamaContext(
                model,
                sequences=self.sequences,
                # None: the context the model was trained with.
                context_per_sequence=self._requested_ctx or model.n_ctx_train or 4096,
                threads=self.threads,
                step_tokens=self._step_tokens,
            )
        except BaseException:
            model.close()
            raise
        self.context_per_sequence = self._ctx.context_per_sequence
        if self.reuse_greedy is None:
            self.reuse_greedy = self.bit_exact
            if not self.bit_exact:
                log.warning(
                    "llama.cpp was built with GGML_LLAMAFILE: greedy output will vary with "
                    "what else is batched, and greedy requests skip the prompt cache"
                )
        self._thread = threading.Thread(target=self._run, name="llama-batch-loop", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the current step (running and waiting jobs get `Failed`) and free
        the context and model. Blocking: call it off the event loop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self.model is not None:
            self.model.close()
            self.model = None

    # --- the event loop's side ------------------------------------------------------

    def lookup(
        self,
        scope: str,
        tokens: Sequence[int],
        breakpoints: tuple[Breakpoint, ...],
        *,
        greedy: bool = False,
    ) -> CacheLease:
        """How many prompt tokens a marked cache entry will supply (its
        `reported`), pinned until the job carrying this lease is admitted (or
        `lease.release()`). Without breakpoints a request reads nothing, as in the
        API. Pass the job's `sampling.greedy`: greedy jobs read nothing where reuse
        would change them."""
        if not self.cache.enabled or not breakpoints or (greedy and not self.reuse_greedy):
            return CacheLease(None, scope, 0)
        return self.cache.lookup(scope, tokens, max(bp.position for bp in breakpoints))

    def submit(self, job: Job) -> JobHandle:
        """Queue a job; its events go to `job.on_events` on the running asyncio loop."""
        handle = JobHandle(job, asyncio.get_running_loop(), self._wake)
        with self._cond:
            if self._closing or self._thread is None:
                raise RuntimeError("the batch loop is not running")
            self._inbox.append(handle)
            self._cond.notify()
        return handle

    @property
    def bit_exact(self) -> bool:
        """Whether greedy output is independent of batching and cache reuse here:
        llamafile's sgemm computes multi-column matmuls in another order than the
        one-column kernel, so a build with it cannot promise that."""
        info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
        return "LLAMAFILE = 1" not in info

    @property
    def occupancy(self) -> tuple[int, int]:
        """(sequences in use, jobs waiting for one), as last seen by the engine thread."""
        return len(self._active), len(self._waiting) + len(self._inbox)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # --- the engine thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._inbox or self._active or self._waiting or self._closing):
                        self._cond.wait()
                    self._waiting.extend(self._inbox)
                    self._inbox.clear()
                    closing = self._closing
                if closing:
                    self._fail_all("the engine is shutting down")
                    return
                self._step()
                self._out.flush()
        except BaseException:
            log.exception("the batch loop failed")
            with self._cond:
                self._closing = True  # no more submissions: nobody would serve them
            self._fail_all("the engine failed")
            raise
        finally:
            self._out.flush()

    def _step(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        for s in [s for s in self._active.values() if s.handle.cancelled]:
            self._retire(s, Done("cancelled", s.generated))
        self._admit(ctx)
        scheduled = self._fill(ctx)
        if not scheduled:
            return
        started = time.perf_counter()
        rc = ctx.decode()
        elapsed = time.perf_counter() - started
        if rc != 0:
            self._decode_failed(rc, scheduled)
            return
        self.steps.append(StepRecord(tuple((s.seq, s.chunk) for s in scheduled), elapsed))
        for s in scheduled:
            s.n_past += s.chunk
            mark = s.reached_mark()
            if mark is not None:
                self._snapshot(s, mark)
            if s.index >= 0:
                self._sample(ctx, s)

    def _admit(self, ctx: LlamaContext) -> None:
        while self._waiting and self._free:
            handle = self._waiting.popleft()
            lease = handle.job.lease
            seq = min(self._free)
            try:
                if handle.cancelled:
                    self._out.finish(handle, Done("cancelled", 0))
                    continue
                s = self._begin(ctx, handle, seq)
            except (GrammarError, ValueError) as exc:
                ctx.clear(seq)
                self._out.finish(handle, Failed(str(exc)))
                continue
            finally:
                if lease is not None:
                    lease.release()
            self._free.discard(seq)
            self._active[seq] = s
            handle.seq_id = seq
            self._out.emit(handle, Admitted(seq, s.restored))

    def _begin(self, ctx: LlamaContext, handle: JobHandle, seq: int) -> ActiveSequence:
        job = handle.job
        assert self.model is not None
        tokens = as_tokens(job.tokens)
        if len(tokens) == 0:
            raise ValueError("the prompt is empty")
        if len(tokens) > self.context_per_sequence:
            raise ValueError(
                f"the prompt has {len(tokens)} tokens; a sequence holds {self.context_per_sequence}"
            )
        if job.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        sampler = SequenceSampler(self.model.vocab, self.model.n_vocab, job.sampling, job.grammar)
        restored = 0
        reuse = job.reuse and (self.reuse_greedy or not job.sampling.greedy)
        if reuse and job.cache_scope is not None and self.cache.enabled:
            reported = job.lease.reported if job.lease is not None else 0
            plan = self.cache.plan(job.cache_scope, tokens, job.breakpoints, reported)
            if plan is not None:
                entry = plan.entry
                restored = ctx.restore(seq, entry.state, plan.length, len(entry.tokens))
            if restored < reported:
                log.error("the cache gave %d tokens where %d were reported", restored, reported)
        self._admitted += 1
        return ActiveSequence(handle, seq, tokens, sampler, restored, self._admitted)

    def _fill(self, ctx: LlamaContext) -> list[ActiveSequence]:
        batch = ctx.batch
        batch.clear()
        budget = self._step_tokens
        chunks: dict[int, int] = {}
        for s in list(self._active.values()):
            if s.prompting:
                continue
            if s.n_past >= self.context_per_sequence:
                self._retire(s, Done("context", s.generated))
                continue
            chunks[s.seq] = 1
            budget -= 1
        # Prompts are served oldest first; the batch itself goes in sequence order,
        # since llama.cpp puts only consecutive sequence ids in one ubatch.
        for s in sorted(self._active.values(), key=lambda s: s.order):
            if s.prompting and budget > 0:
                chunks[s.seq] = n = s.next_chunk(budget)
                budget -= n
        scheduled = []
        for seq in sorted(chunks):
            s = self._active[seq]
            s.chunk = chunks[seq]
            if s.prompting:
                done = s.n_past + s.chunk == len(s.tokens)
                chunk = s.tokens[s.n_past : s.n_past + s.chunk]
                last = batch.add(seq, chunk, s.n_past, logits=done)
                s.index = last if done else -1
            else:
                s.index = batch.add(seq, s.reply[-1:], s.n_past, logits=True)
            scheduled.append(s)
        return scheduled

    def _sample(self, ctx: LlamaContext, s: ActiveSequence) -> None:
        assert self.model is not None
        try:
            token = s.sampler.sample(ctx.ptr, s.index)
        except GrammarError as exc:
            self._retire(s, Failed(str(exc), s.generated))
            return
        logits = ctx.logits(s.index) if s.job.logits else None
        s.generated += 1
        s.reply.append(token)
        piece = self.model.piece(token)
        self._out.emit(s.handle, TokenOut(token, piece, logits))
        if self.model.is_eog(token) and not s.job.ignore_eog:
            self._retire(s, Done("eog", s.generated))
        elif s.stopped(piece):
            self._retire(s, Done("stop", s.generated))
        elif s.generated >= s.job.max_tokens:
            self._retire(s, Done("max_tokens", s.generated))

    def _snapshot(self, s: ActiveSequence, mark: Breakpoint | None) -> None:
        scope = s.job.cache_scope
        if scope is None or not self.cache.enabled or self._ctx is None:
            return
        tokens = s.kv_tokens()
        if mark is not None and self.cache.has(scope, tokens, mark.ttl):
            return
        state = self._ctx.snapshot(s.seq, self.cache.budget_bytes)
        if state is None:
            return
        if mark is not None:
            self.cache.store(scope, tokens, state, marked=True, ttl=mark.ttl)
        else:
            self.cache.store(scope, tokens, state, marked=False)

    def _retire(self, s: ActiveSequence, event: Done | Failed) -> None:
        assert self._ctx is not None
        finished = isinstance(event, Done) and event.reason != "cancelled"
        if finished and s.job.keep and s.n_past > s.restored:
            self._snapshot(s, None)
        self._ctx.clear(s.seq)
        s.sampler.close()
        del self._active[s.seq]
        self._free.add(s.seq)
        self._out.finish(s.handle, event)

    def _decode_failed(self, rc: int, scheduled: list[ActiveSequence]) -> None:
        if rc == 1:
            # No room for the batch and nothing was changed: give up the newest
            # prompt (or stream) and let the rest try again next step.
            newest = max(scheduled, key=lambda s: (s.prompting, s.order))
            self._retire(newest, Failed("no room left in the KV cache", newest.generated))
            return
        # Earlier ubatches of this batch may have been kept: the cache no longer
        # matches anyone's bookkeeping.
        log.error("llama_decode failed (%d); failing every sequence", rc)
        for s in list(self._active.values()):
            self._retire(s, Failed(f"decoding failed ({rc})", s.generated))
        assert self._ctx is not None
        self._ctx.clear_all()

    def _fail_all(self, message: str) -> None:
        for s in list(self._active.values()):
            self._retire(s, Failed(message, s.generated))
        with self._cond:
            pending = [*self._waiting, *self._inbox]
            self._inbox.clear()
        self._waiting.clear()
        for handle in pending:
            if handle.job.lease is not None:
                handle.job.lease.release()
            self._out.finish(handle, Failed(message))


__all__ = ["BatchLoop", "JobHandle", "StepRecord"]
