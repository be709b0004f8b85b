"""The Files API's objects (api-spec §17; api-version §19.12): file metadata, the
deleted-file answer and the list page.

One shape serves both generations of clients. The list page carries the cursor the
newest SDKs follow (`next_page`, api-version §19.11) and the `has_more` /
`first_id` / `last_id` trio the 0.x SDKs' beta resource reads (api-spec §10); each
SDK ignores the keys it does not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_serializer

# The real API's limit per file (api-spec §12: the edge refuses larger bodies with 413).
MAX_FILE_BYTES = 500 * 1024 * 1024
# `expires_in_seconds` bounds: one hour to ninety days (api-version §19.12).
MIN_EXPIRES_IN = 3600
MAX_EXPIRES_IN = 7_776_000


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class FileMetadata(BaseModel):
    id: str
    type: Literal["file"] = "file"
    filename: str
    mime_type: str
    size_bytes: int
    created_at: datetime
    # Uploaded files cannot be downloaded; only files a tool made could be (the API's
    # rule, which Parley has no such tools to break).
    downloadable: bool = False
    expires_at: datetime | None = None

    @field_serializer("created_at")
    def _created(self, value: datetime) -> str:
        return _rfc3339(value)

    @field_serializer("expires_at")
    def _expires(self, value: datetime | None) -> str | None:
        return _rfc3339(value) if value is not None else None


class DeletedFile(BaseModel):
    id: str
    type: Literal["file_deleted"] = "file_deleted"


class FilePage(BaseModel):
    data: list[FileMetadata] = Field(default_factory=list)
    has_more: bool
    first_id: str | None
    last_id: str | None
    next_page: str | None
