"""The batch worker inside `parley serve`: claims batch requests, runs them at low
priority on the same engines as interactive traffic, and writes their results.

- At most `batch_concurrency` requests run at once (a few times as many are
  claimed ahead, in one transaction), each as background work
  (core/slots.py: interactive requests waiting for a slot always go first, and
  batch work never holds the last slot of a pool).
- Results are written as requests finish: whatever finished while the previous
  write was under way goes into the next transaction (a group commit). A request
  counts among the claimed until its result is stored, so unwritten results and
  claims held stay bounded.
- Requests of a batch canceled or expired meanwhile are stopped where they are.
- Claims carry this worker's token and a lease, renewed by a heartbeat. After a
  crash they lapse and any worker (this process restarted, or another replica)
  runs those requests again; a result is only ever written once (store/batch_leases.py).
- Usage is recorded by the message pipeline, as for every other message.
- Housekeeping applies the time rules with the injected clock: expiry after
  24 h, cancellation of what had not run, archiving after 29 days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from parley.batches.runner import run_request
from parley.core.batches import RESULTS_KEPT
from parley.core.records import ApiKey
from parley.pipeline.messages import MessagePipeline
from parley.ratelimit.limiter import Clock
from parley.store import database
from parley.store.batch_leases import BatchLeaseStore, ClaimedRequest, Outcome

log = logging.getLogger(__name__)

# Seconds between housekeeping passes (expiry, cancellation, archiving).
HOUSEKEEPING_INTERVAL = 5.0
# Requests claimed ahead per running one: fewer, larger claims (each is a transaction).
PREFETCH = 8
# A create that never finished (its process died mid-upload) is removed after this.
ABANDONED_CREATE = timedelta(hours=1)


KeyLookup = Callable[[str], Awaitable[ApiKey | None]]


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int
    lease_seconds: float
    poll_interval: float


@dataclass
class _Finished:
    outcome: Outcome
    stored: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchWorker:
    def __init__(
        self,
        store: BatchLeaseStore,
        pipeline: MessagePipeline,
        find_key: KeyLookup,
        settings: WorkerSettings,
        clock: Clock,
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._find_key = find_key
        self._clock = clock
        self.token = "worker_" + secrets.token_hex(12)
        self._concurrency = settings.concurrency
        self._gate = asyncio.Semaphore(self._concurrency)
        self._claim_limit = self._concurrency * PREFETCH
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._poll = settings.poll_interval
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], ClaimedRequest] = {}
        self._finished: list[_Finished] = []
        self._have_finished = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        # Batches with nothing left to claim at our last try: worth checking for the end.
        self._drained: set[str] = set()
        self._stopping = False
        self._changed = asyncio.Event()  # set whenever a claimed request is done

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._serve(), name="batch-worker"),
            asyncio.create_task(self._write_results(), name="batch-results"),
            asyncio.create_task(self._heartbeat(), name="batch-heartbeat"),
        ]

    def wake(self) -> None:
        """Look for work now (a batch was created or canceled here)."""
        self._wake.set()

    @property
    def running(self) -> int:
        """Batch requests claimed by this worker and not yet stored."""
        return len(self._running)

    def stop_claiming(self) -> None:
        """Drain: claim nothing more, and leave requests claimed ahead unstarted (they
        are handed back at `aclose`); the running ones go on."""
        self._stopping = True

    async def wait_idle(self) -> None:
        """Until every request this worker started has finished and its result is stored."""
        while self._running:
            self._changed.clear()
            await self._changed.wait()

    async def hand_back(self) -> None:
        """Drain deadline: stop the requests still running (each settles its usage);
        `aclose` hands their claims back for a re-run."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop: requests still running are abandoned and handed back for a re-run;
        results already finished are written first."""
        tasks = [*self._loops, *self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops = []
        try:
            await self._write(self._take_finished())
            await self._store.release(self.token)
        except Exception:
            log.exception("batch worker: could not hand back its claims")

    # -- the loops --------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        next_housekeeping = next_cancel_check = loop.time()
        while True:
            self._wake.clear()
            try:
                if loop.time() >= next_housekeeping:
                    next_housekeeping = loop.time() + HOUSEKEEPING_INTERVAL
                    await self.housekeeping()
                if self._running and loop.time() >= next_cancel_check:
                    next_cancel_check = loop.time() + self._poll
                    await self._stop_ended_claims()
                started = 0 if self._stopping else await self._fill()
            except Exception as exc:
                if database.unavailable(exc):
                    database.OUTAGE.failed(exc)  # logged once; claiming resumes when back
                else:
                    log.exception("batch worker: claiming failed")
                started = 0
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _write_results(self) -> None:
        while True:
            await self._have_finished.wait()
            self._have_finished.clear()
            finished = self._take_finished()
            while True:
                try:
                    await self._write(finished)
                    break
                except Exception as exc:
                    if database.unavailable(exc):
                        database.OUTAGE.failed(exc)
                    else:
                        log.exception("batch worker: writing results failed; retrying")
                    await asyncio.sleep(self._poll)

    async def _heartbeat(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            if self._running:
                try:
                    await self._store.renew(self.token, self._now() + self._lease)
                except Exception as exc:
                    if database.unavailable(exc):
                        database.OUTAGE.failed(exc)
                    else:
                        log.exception("batch worker: renewing claims failed")

    # -- work -------------------------------------------------------------------------

    async def _fill(self) -> int:
        """Claim as many requests as there is room for, and start them."""
        free = self._claim_limit - len(self._running)
        started = 0
        if free < self._concurrency and self._running:
            return 0  # claim in larger chunks, once there is room for a few
        now = self._now()
        for batch in await self._store.claimable_batches(now):
            claimed = await self._store.claim(batch, self.token, free, now, now + self._lease)
            if len(claimed) < free:
                self._drained.add(batch.id)
            if not claimed:
                continue
            key = await self._find_key(batch.key_id)
            for request in claimed:
                task = asyncio.create_task(self._run(request, key))
                self._running[task] = request
                task.add_done_callback(self._ran)
            started += len(claimed)
            free -= len(claimed)
            if free <= 0:
                break
        return started

    async def _run(self, request: ClaimedRequest, key: ApiKey | None) -> None:
        async with self._gate:
            if self._stopping:
                return  # claimed ahead, never started: handed back at aclose
            outcome = await run_request(request, key, self._pipeline)
        finished = _Finished(outcome)
        self._finished.append(finished)
        self._have_finished.set()
        # Counted among the claimed until stored, so unwritten results stay bounded.
        await asyncio.shield(finished.stored)

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()
        self._changed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch request task failed: %r", task.exception())

    def _take_finished(self) -> list[_Finished]:
        finished, self._finished = self._finished, []
        return finished

    async def _write(self, finished: list[_Finished]) -> None:
        if not finished:
            return
        written = await self._store.complete(self.token, [f.outcome for f in finished])
        if written < len(finished):
            log.info("batch worker: %d results were no longer ours", len(finished) - written)
        for f in finished:
            if not f.stored.done():
                f.stored.set_result(None)
        ending = {f.outcome.batch_id for f in finished} & self._drained
        now = self._now()
        for batch_id in ending:
            if not await self._store.unfinished(batch_id):
                await self._store.finalize(batch_id, now)
                self._drained.discard(batch_id)

    async def _stop_ended_claims(self) -> None:
        """Stop this worker's requests of batches canceled (through any replica) or
        expired meanwhile: they end as `canceled` or `expired` without running to the
        end (api-spec §11 lets a cancel interrupt them)."""
        now = self._now()
        stopped = await self._store.stopped_claims(self.token, now)
        if not stopped:
            return
        for task, request in list(self._running.items()):
            if request.batch_id in stopped:
                task.cancel()
        for batch_id, state in stopped.items():
            await self._store.end_claims(self.token, batch_id, state)
            if not await self._store.unfinished(batch_id):
                await self._store.finalize(batch_id, now)

    # -- for tests and housekeeping ----------------------------------------------------

    async def run_until_idle(self) -> None:
        """Claim and run requests until none is left to claim, then housekeep (tests use
        this with the background loop off, for a deterministic order)."""
        while await self._fill() or self._running:
            while self._running:
                await self._write(self._take_finished())
                if self._running:
                    await asyncio.wait(set(self._running), timeout=0.01)
            await self._write(self._take_finished())
        await self.housekeeping()

    async def housekeeping(self) -> None:
        now = self._now()
        for batch in await self._store.open_batches():
            await self._store.settle(batch, now)
            await self._store.finalize(batch.id, now)
        await self._store.archive(now - RESULTS_KEPT, now)
        await self._store.sweep_unfinished_creates(now - ABANDONED_CREATE)
