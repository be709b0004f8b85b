"""The operations behind `/v1/messages/batches` (api-spec §11), for one key at a time.

A batch belongs to the key that created it; to any other key it does not exist
(404, with the same wording as an id nobody created).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, cast

from parley.core.batches import (
    EXPIRES_AFTER,
    duplicate_custom_id,
    message_batch,
    result_line,
    too_few_requests,
    too_many_requests,
    validate_request,
)
from parley.core.batches_body import iter_requests
from parley.core.ids import id_shaped, message_batch_id
from parley.core.versions import APIVersion
from parley.errors import InvalidRequestError, NotFoundError
from parley.protocol.batches import MAX_REQUESTS, MessageBatch, ProcessingStatus
from parley.ratelimit.limiter import Clock
from parley.store.batch_records import (
    BatchProgress,
    BatchRecordStore,
    DuplicateCustomId,
    NewRequest,
)
from parley.store.batch_tables import ENDED, BatchRecord

# Requests written per transaction while a create body streams in.
CREATE_CHUNK = 1000
# Results read from storage per query while streaming them out.
RESULTS_CHUNK = 1000

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def not_found() -> NotFoundError:
    # The real API's generic 404 wording (api-spec §12); for batches it is unconfirmed.
    return NotFoundError("Not found")


def to_wire(record: BatchRecord, base_url: str) -> MessageBatch:
    return message_batch(
        batch_id=record.id,
        status=cast(ProcessingStatus, record.processing_status),
        request_count=record.request_count,
        counts=record.counts,
        created_at=record.created_at,
        expires_at=record.expires_at,
        ended_at=record.ended_at,
        cancel_initiated_at=record.cancel_initiated_at,
        archived_at=record.archived_at,
        base_url=base_url,
    )


class BatchService:
    def __init__(
        self,
        store: BatchRecordStore,
        clock: Clock,
        *,
        max_body_bytes: int,
        max_requests: int = MAX_REQUESTS,
        spawn: Spawn,
        on_change: Callable[[], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._max_requests = max_requests
        self._spawn = spawn
        self._on_change = on_change

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def create(
        self, key_id: str, version: APIVersion, body: AsyncIterator[bytes]
    ) -> BatchRecord:
        """Read the body as it arrives, writing its requests in chunks; the batch appears
        (and its processing starts) only once all of them are stored."""
        created_at = self._now()
        batch_id = message_batch_id()
        await self._store.begin(
            batch_id, key_id, version.value, created_at, created_at + EXPIRES_AFTER
        )
        try:
            count = 0
            chunk: list[NewRequest] = []
            async for raw in iter_requests(body, self._max_body_bytes):
                if count < self._max_requests:
                    item = validate_request(raw, count)
                    params = json.dumps(raw["params"], ensure_ascii=False, separators=(",", ":"))
                    chunk.append(NewRequest(count, item.custom_id, params))
                    if len(chunk) >= CREATE_CHUNK:
                        await self._add(batch_id, chunk)
                        chunk = []
                count += 1  # past the limit, only counted for the error message
            if count == 0:
                raise too_few_requests()
            if count > self._max_requests:
                raise too_many_requests(count, self._max_requests)
            await self._add(batch_id, chunk)
            record = await self._store.activate(batch_id, count)
        except BaseException:
            # Spawned: this may be a cancelled request's handler, where awaiting is unsafe.
            self._spawn(self._store.discard(batch_id))
            raise
        self._on_change()
        return record

    async def _add(self, batch_id: str, chunk: list[NewRequest]) -> None:
        if not chunk:
            return
        seen: dict[str, int] = {}
        for request in chunk:
            if request.custom_id in seen:
                raise duplicate_custom_id(request.position, request.custom_id)
            seen[request.custom_id] = request.position
        try:
            await self._store.add_requests(batch_id, chunk)
        except DuplicateCustomId:
            taken = await self._store.existing_custom_ids(batch_id, list(seen))
            repeated = [r for r in chunk if r.custom_id in taken]
            if not repeated:
                raise
            first = min(repeated, key=lambda r: r.position)
            raise duplicate_custom_id(first.position, first.custom_id) from None

    async def get(self, key_id: str, batch_id: str) -> BatchRecord:
        record = await self._store.get(batch_id) if id_shaped(batch_id) else None
        if record is None or record.key_id != key_id:
            raise not_found()
        return record

    async def page(
        self,
        key_id: str,
        *,
        limit: int,
        after_id: str | None,
        before_id: str | None,
    ) -> tuple[list[BatchRecord], bool]:
        if after_id is not None and before_id is not None:
            # The wording of core/pagination.py, which /v1/models uses.
            raise InvalidRequestError("after_id: cannot be used together with before_id")
        after = await self._cursor(key_id, after_id, "after_id")
        before = await self._cursor(key_id, before_id, "before_id")
        return await self._store.page(key_id, limit=limit, after=after, before=before)

    async def _cursor(self, key_id: str, batch_id: str | None, name: str) -> BatchRecord | None:
        if batch_id is None:
            return None
        record = await self._store.get(batch_id) if id_shaped(batch_id) else None
        if record is None or record.key_id != key_id:
            raise NotFoundError(f"{name}: {batch_id} not found")
        return record

    async def finished_count(self, batch_id: str) -> int:
        """How many of the batch's requests have a result so far: its progress."""
        return await self._store.finished_count(batch_id)

    async def progress(self) -> BatchProgress:
        """Every batch's progress at once (all keys), for metrics."""
        return await self._store.progress()

    async def cancel(self, key_id: str, batch_id: str) -> BatchRecord:
        # Canceling a batch that is already canceling or has ended changes nothing and
        # returns it as it is (unconfirmed; the least surprising answer for a retry).
        await self.get(key_id, batch_id)
        await self._store.cancel(batch_id, self._now())
        record = await self.get(key_id, batch_id)
        # Ends at once if nothing was running; reported as canceling all the same (§11).
        self._spawn(self._finalize(batch_id))
        self._on_change()
        return record

    async def _finalize(self, batch_id: str) -> None:
        if not await self._store.unfinished(batch_id):
            await self._store.finalize(batch_id, self._now())

    async def delete(self, key_id: str, batch_id: str) -> None:
        record = await self.get(key_id, batch_id)
        if record.processing_status != ENDED or not await self._store.delete_ended(batch_id):
            # api-spec §11: only ended batches can be deleted (wording unconfirmed).
            raise InvalidRequestError(
                f"Message Batch {batch_id} cannot be deleted while it is "
                f"{record.processing_status}. Cancel it first and delete it once it has ended."
            )

    async def results(self, key_id: str, batch_id: str) -> AsyncIterator[bytes]:
        """Check that results can be read now (raising the API error if not), then
        stream them from storage a chunk of rows at a time."""
        record = await self.get(key_id, batch_id)
        if record.processing_status != ENDED:
            raise InvalidRequestError(
                f"Message Batch {batch_id} has not finished processing yet; its results "
                'are available once its processing_status is "ended".'
            )
        if record.archived_at is not None:
            raise NotFoundError(
                f"The results of Message Batch {batch_id} are no longer available: they "
                f"were archived at {record.archived_at.isoformat()}."
            )
        return self._lines(batch_id)

    async def _lines(self, batch_id: str) -> AsyncIterator[bytes]:
        after = -1
        while True:
            rows = await self._store.results(batch_id, after=after, limit=RESULTS_CHUNK)
            if not rows:
                return
            # `\n` only, never a blank line: both SDKs choke on one (api-spec §11).
            yield "".join(result_line(r.custom_id, r.state, r.result) + "\n" for r in rows).encode()
            after = rows[-1].position
