"""Rules of the Files API that need no storage (api-spec §17; api-version §19.12):
filenames, media types found from the bytes, list queries and the API's errors."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from dataclasses import dataclass

from parley.core.images import sniff_media_type
from parley.core.pagination import parse_limit
from parley.errors import InvalidRequestError, NotFoundError
from parley.protocol.files import MAX_EXPIRES_IN, MIN_EXPIRES_IN

# The Files guide: a filename is 1-255 characters, without these or control characters.
_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f]')
MAX_FILENAME = 255
# `ids` takes at most 100 ids (api-version §19.12, SDK 2.14 docs).
MAX_IDS = 100
_PAGE_PREFIX = "page_"


def not_found(file_id: str) -> NotFoundError:
    # The Files guide's example wording: `File not found: file_011CNha8iCJcU1wXNR6q4V8w`.
    return NotFoundError(f"File not found: {file_id}")


def file_missing(file_id: str, path: str) -> InvalidRequestError:
    """An unknown or deleted `file_id` in a message: the guide's wording, with the
    error type its example shows (the file may exist for another key)."""
    return InvalidRequestError(f"{path}: File not found: {file_id}")


def expired(file_id: str) -> NotFoundError:
    return NotFoundError(
        f"File {file_id} has expired: its content is no longer available.",
        details={"error_code": "file_expired"},
    )


def not_downloadable(file_id: str) -> InvalidRequestError:
    # SDK 2.14 `FileNotDownloadableError` (400, error_code file_not_downloadable): only
    # files a tool created can be downloaded, never uploaded ones (wording unconfirmed).
    return InvalidRequestError(
        f"File {file_id} cannot be downloaded: only files created by skills or the code "
        "execution tool can be downloaded.",
        details={"error_code": "file_not_downloadable"},
    )


def quota_exceeded(used: int, adding: int, quota: int) -> InvalidRequestError:
    # SDK 2.14 `StorageQuotaExceededError` (400, error_code storage_quota_exceeded);
    # the quota here is per key (wording unconfirmed).
    return InvalidRequestError(
        f"Storage quota exceeded: this API key stores {used} bytes of files and may store "
        f"{quota}; this upload needs {adding} more. Delete files to free up space, then "
        "retry the upload.",
        details={"error_code": "storage_quota_exceeded"},
    )


def clean_filename(raw: str | None, mime_type: str) -> str:
    """The final path component of the part's filename; an absent or empty one is
    `unnamed` plus the media type's extension (SDK 2.14 `upload` docs)."""
    name = re.split(r"[/\\]", raw or "")[-1]
    if not name:
        name = "unnamed" + (mimetypes.guess_extension(mime_type) or "")
    if len(name) > MAX_FILENAME:
        raise InvalidRequestError(
            f"filename: must be between 1 and {MAX_FILENAME} characters long, got {len(name)}"
        )
    if _FORBIDDEN.search(name):
        raise InvalidRequestError(
            'filename: must not contain <, >, :, ", |, ?, * or control characters'
        )
    return name


def media_type(head: bytes, declared: str | None, filename: str | None) -> str:
    """What the file is: its bytes first (PDF, the four image types), then what the
    client declared, its name's extension, UTF-8 text, or plain bytes."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    sniffed = sniff_media_type(head)
    if sniffed is not None:
        return sniffed
    declared = (declared or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    guessed = mimetypes.guess_type(filename or "")[0]
    if guessed:
        return guessed
    if _looks_like_text(head):
        return "text/plain"
    return "application/octet-stream"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut off by the chunk's end
    return True


def parse_expires_in(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError("expires_in_seconds: Input should be a valid integer") from None
    if value < MIN_EXPIRES_IN:
        raise InvalidRequestError(
            f"expires_in_seconds: Input should be greater than or equal to {MIN_EXPIRES_IN}"
        )
    if value > MAX_EXPIRES_IN:
        raise InvalidRequestError(
            f"expires_in_seconds: Input should be less than or equal to {MAX_EXPIRES_IN}"
        )
    return value


@dataclass(frozen=True)
class ListQuery:
    """A list request: a page (`limit` after a cursor) or a set of `ids`."""

    limit: int = 20
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] | None = None


def page_token(file_id: str) -> str:
    return _PAGE_PREFIX + base64.urlsafe_b64encode(file_id.encode()).decode().rstrip("=")


def parse_list_query(params: dict[str, list[str]]) -> ListQuery:
    """Both cursor styles: `page` (SDK 2.x, api-version §19.11) and `after_id` /
    `before_id` (the 0.x SDKs' beta resource, api-spec §10)."""
    ids = [i for raw in params.get("ids", []) + params.get("ids[]", []) for i in raw.split(",")]
    ids = list(dict.fromkeys(i for i in ids if i))
    page = _one(params, "page")
    limit_raw = _one(params, "limit")
    if ids:
        if page is not None or limit_raw is not None:
            raise InvalidRequestError("ids: cannot be used together with `page` or `limit`")
        if len(ids) > MAX_IDS:
            raise InvalidRequestError(f"ids: at most {MAX_IDS} ids may be given, got {len(ids)}")
        return ListQuery(ids=tuple(ids))
    after_id, before_id = _one(params, "after_id"), _one(params, "before_id")
    if after_id is not None and before_id is not None:
        raise InvalidRequestError("after_id: cannot be used together with before_id")
    if page is not None:
        after_id = _page_id(page)
    return ListQuery(limit=parse_limit(limit_raw), after_id=after_id, before_id=before_id)


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _page_id(page: str) -> str:
    if page.startswith(_PAGE_PREFIX):
        raw = page[len(_PAGE_PREFIX) :]
        try:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (binascii.Error, ValueError):
            pass
    raise InvalidRequestError(f"page: {page} is not a page cursor this API returned")
