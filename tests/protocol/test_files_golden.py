"""Golden shapes of the Files API and of citations: file metadata (api-version §19.12,
SDK 2.14 `FileMetadata`), the list page (both cursor styles, §19.11 and api-spec §10),
the deleted-file answer, its errors with `error.details.error_code` (§19.8), and a
message whose text cites a document, plain and as a `citations_delta` (api-spec §5.5,
§6.3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from parley.core.files import not_downloadable, quota_exceeded
from parley.core.generation import (
    Citation,
    CitationChunk,
    DocumentPart,
    EngineEvent,
    Finished,
    GenerationRequest,
    TextBlockStart,
    TextChunk,
    Turn,
)
from parley.core.messages import MessageStream
from parley.core.sse import event_frame
from parley.protocol.files import DeletedFile, FileMetadata, FilePage
from tests.protocol.golden import ASPECTS, Aspect, check_golden, parse_frame
from tests.protocol.scripted_run import MESSAGE_ID, MODEL

FILE_ID = "file_011CNha8iCJcU1wXNR6q4V8w"
CREATED = datetime(2026, 11, 30, 12, 0, 5, tzinfo=UTC)
REQUEST_ID = "req_011CSHoEeqs5C35K2UUqR7Fy"


def rendered(model: Any) -> Any:
    return json.loads(json.dumps(model.model_dump(mode="json")))


def metadata(**extra: Any) -> FileMetadata:
    return FileMetadata(
        id=FILE_ID,
        filename="treaty.pdf",
        mime_type="application/pdf",
        size_bytes=48213,
        created_at=CREATED,
        **extra,
    )


def page() -> Any:
    return rendered(
        FilePage(
            data=[metadata()],
            has_more=True,
            first_id=FILE_ID,
            last_id=FILE_ID,
            next_page="page_ZmlsZV8wMTFDTmhhOGlDSmNVMXdYTlI2cTRWOHc",
        )
    )


DOCUMENT = "The grass is green. The sky is blue."
CITATION = Citation("char_location", "The sky is blue.", 0, "Facts", 20, 36)


def cited_run() -> tuple[list[tuple[str, Any]], Any]:
    request = GenerationRequest(
        model=MODEL,
        system=None,
        turns=(
            Turn.of(
                "user",
                DocumentPart("text", (DOCUMENT,), 0, title="Facts", citations=True),
                "What colour is the sky?",
            ),
        ),
        max_tokens=100,
    )
    events: tuple[EngineEvent, ...] = (
        TextChunk("According to the document, ", 5),
        TextBlockStart(5),
        CitationChunk(CITATION, 5),
        TextChunk("the sky is blue", 9),
        TextBlockStart(9),
        TextChunk(".", 10),
        Finished("end_turn", 10),
    )

    async def source() -> AsyncIterator[EngineEvent]:
        for event in events:
            yield event

    async def run() -> tuple[list[bytes], Any]:
        stream = MessageStream(request, input_tokens=30, msg_id=MESSAGE_ID)
        return [event_frame(e) async for b in stream.events(source()) for e in b], stream.message

    frames, message = asyncio.run(run())
    return [parse_frame(f) for f in frames], message


def citations_delta() -> Any:
    events, _ = cited_run()
    return next(
        data
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "citations_delta"
    )


CASES: dict[str, Callable[[], Any]] = {
    "file_metadata": lambda: rendered(metadata()),
    "file_metadata_expiring": lambda: rendered(
        metadata(expires_at=datetime(2026, 11, 30, 13, 0, 5, tzinfo=UTC))
    ),
    "file_page": page,
    "file_deleted": lambda: rendered(DeletedFile(id=FILE_ID)),
    "error_details_file_not_downloadable": lambda: not_downloadable(FILE_ID).envelope(
        REQUEST_ID, http=True
    ),
    "error_details_storage_quota": lambda: quota_exceeded(
        10_737_000_000, 1_000_000, 10_737_418_240
    ).envelope(REQUEST_ID, http=True),
    "message_with_citations": lambda: rendered(cited_run()[1]),
    "stream_citations_delta": citations_delta,
}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, aspect: Aspect) -> None:
    check_golden(name, CASES[name](), aspect)
