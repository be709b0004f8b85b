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
  runs those requests again; a result is only ever written once (store/batches.py).
- Housekeeping applies the time rules with the injected clock: expiry after
  24 h, cancellation of what had not run, archiving after 29 days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from parley.batches.runner import Ran, run_request
from parley.core.batches import RESULTS_KEPT
from parley.core.slots import background
from parley.store.batch_leases import BatchLeaseStore, ClaimedRequest
from parley.store.keys import ApiKey, KeyNotFound
from parley.store.usage import UsageRecord

if TYPE_CHECKING:
    from parley.services import Services

log = logging.getLogger(__name__)

# Seconds between housekeeping passes (expiry, cancellation, archiving).
HOUSEKEEPING_INTERVAL = 5.0
# Requests claimed ahead per running one: fewer, larger claims (each is a transaction).
PREFETCH = 8
# Usage is added up here and written at most this often (seconds), and when a batch ends.
USAGE_INTERVAL = 1.0
# A create that never finished (its process died mid-upload) is removed after this.
ABANDONED_CREATE = timedelta(hours=1)


@dataclass
class _Finished:
    ran: Ran
    stored: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchWorker:
    def __init__(self, svc: Services, store: BatchLeaseStore) -> None:
        settings = svc.settings
        self._svc = svc
        self._store = store
        self.token = "worker_" + secrets.token_hex(12)
        self._concurrency = settings.batch_concurrency
        self._gate = asyncio.Semaphore(self._concurrency)
        self._claim_limit = self._concurrency * PREFETCH
        self._lease = timedelta(seconds=settings.batch_lease_seconds)
        self._poll = settings.batch_poll_interval
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], ClaimedRequest] = {}
        self._finished: list[_Finished] = []
        self._have_finished = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        # Batches with nothing left to claim at our last try: worth checking for the end.
        self._drained: set[str] = set()
        self._usage: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self._usage_due = 0.0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._svc.clock(), UTC)

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._serve(), name="batch-worker"),
            asyncio.create_task(self._write_results(), name="batch-results"),
            asyncio.create_task(self._heartbeat(), name="batch-heartbeat"),
        ]

    def wake(self) -> None:
        """Look for work now (a batch was created or canceled here)."""
        self._wake.set()

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
            await self._flush_usage()
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
                started = await self._fill()
            except Exception:
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
                except Exception:
                    log.exception("batch worker: writing results failed; retrying")
                    await asyncio.sleep(self._poll)

    async def _heartbeat(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            if self._running:
                try:
                    await self._store.renew(self.token, self._now() + self._lease)
                except Exception:
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
            key = await self._key(batch.key_id)
            for request in claimed:
                task = asyncio.create_task(self._run(request, key))
                self._running[task] = request
                task.add_done_callback(self._ran)
            started += len(claimed)
            free -= len(claimed)
            if free <= 0:
                break
        return started

    async def _key(self, key_id: str) -> ApiKey | None:
        try:
            return await self._svc.key_store.get(key_id)
        except KeyNotFound:
            return None

    async def _run(self, request: ClaimedRequest, key: ApiKey | None) -> None:
        svc = self._svc
        async with self._gate:
            with background():
                ran = await run_request(
                    request, key, svc.registry, svc.rate_limiter, svc.clock, svc.image_fetcher
                )
        finished = _Finished(ran)
        self._finished.append(finished)
        self._have_finished.set()
        # Counted among the claimed until stored, so unwritten results stay bounded.
        await asyncio.shield(finished.stored)

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch request task failed: %r", task.exception())

    def _take_finished(self) -> list[_Finished]:
        finished, self._finished = self._finished, []
        return finished

    async def _write(self, finished: list[_Finished]) -> None:
        if not finished:
            return
        written = await self._store.complete(self.token, [f.ran.outcome for f in finished])
        if written < len(finished):
            log.info("batch worker: %d results were no longer ours", len(finished) - written)
        for f in finished:
            if not f.stored.done():
                f.stored.set_result(None)
            if f.ran.usage is not None:
                self._add_usage(f.ran.usage)
        ending = {f.ran.outcome.batch_id for f in finished} & self._drained
        if ending or asyncio.get_running_loop().time() >= self._usage_due:
            await self._flush_usage()
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

    def _add_usage(self, record: UsageRecord) -> None:
        total = self._usage[(record.key_id, record.model)]
        total[0] += record.requests
        total[1] += record.input_tokens
        total[2] += record.output_tokens

    async def _flush_usage(self) -> None:
        # One row update per key and model for everything since the last flush.
        self._usage_due = asyncio.get_running_loop().time() + USAGE_INTERVAL
        totals, self._usage = self._usage, defaultdict(lambda: [0, 0, 0])
        at = self._now()
        for (key_id, model), (requests, input_tokens, output_tokens) in totals.items():
            await self._svc.usage_store.add(
                UsageRecord(key_id, model, at, requests, input_tokens, output_tokens)
            )

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
        await self._flush_usage()
        await self.housekeeping()

    async def housekeeping(self) -> None:
        now = self._now()
        for batch in await self._store.open_batches():
            await self._store.settle(batch, now)
            await self._store.finalize(batch.id, now)
        await self._store.archive(now - RESULTS_KEPT, now)
        await self._store.sweep_unfinished_creates(now - ABANDONED_CREATE)
