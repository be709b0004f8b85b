"""Sources that name bytes held elsewhere: a file of the Files API (`file_id`) or a
URL. Core reads them through these protocols; the IO lives in `parley.pipeline`
(the key's files, the server's URL policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from parley.errors import InvalidRequestError


@dataclass(frozen=True)
class StoredFile:
    """An uploaded file's bytes, with the media type found when it was uploaded."""

    id: str
    mime_type: str
    data: bytes


class FileRead(Protocol):
    """Reads a file of the requesting key (`pipeline.files`); `path` names the source
    in errors, e.g. `messages.0.content.1.document.source.file`."""

    async def read(self, file_id: str, path: str) -> StoredFile: ...


class DocumentFetch(Protocol):
    """Fetches a PDF URL under the server's policy (`pipeline.image_urls`)."""

    async def fetch_document(self, url: str, path: str) -> bytes: ...


def file_sources_refused(path: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{path}: file sources need the Files API, which this server does not provide"
    )


def wrong_file_type(path: str, file: StoredFile, block: str) -> InvalidRequestError:
    # The Files guide: "Invalid file type (400): the file type doesn't match the content
    # block type" (wording unconfirmed).
    return InvalidRequestError(
        f"{path}: File {file.id} has type {file.mime_type}, which cannot be used in "
        f"{'an' if block == 'image' else 'a'} {block} block"
    )
