"""/v1/files: upload, list, retrieve metadata, download, delete (api-spec §17;
api-version §19.12). The beta (`files-api-2025-04-14`) and GA clients call the same
paths and read the same shapes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley.core.files import page_token, parse_expires_in, parse_list_query
from parley.errors import InvalidRequestError
from parley.pipeline.files import Upload
from parley.protocol.files import DeletedFile, FileMetadata, FilePage
from parley.server.multipart import (
    MAX_FIELD_BYTES,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
)
from parley.server.requests import authenticate, services
from parley.store.files import FileRecord

_FIELDS = {"expires_in_seconds"}


def metadata(record: FileRecord) -> FileMetadata:
    return FileMetadata(
        id=record.id,
        filename=record.filename,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        created_at=record.created_at,
        expires_at=record.expires_at,
    )


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def upload_file(request: Request) -> Response:
    key, _ = await authenticate(request)
    svc = services(request)
    reader = MultipartReader(boundary_of(request.headers.get("content-type")))
    upload: Upload | None = None
    fields: dict[str, bytearray] = {}
    current: PartStart | None = None
    filename: str | None = None
    declared_type: str | None = None
    file_ended = False
    try:
        async for chunk in request.stream():
            for event in reader.feed(chunk):
                if isinstance(event, PartStart):
                    current = event
                    if event.name == "file":
                        if upload is not None:
                            raise InvalidRequestError("file: only one file may be uploaded")
                        filename, declared_type = event.filename, event.content_type
                        upload = await svc.files.upload(key.id, _declared_length(request))
                    elif event.name not in _FIELDS:
                        raise InvalidRequestError(f"{event.name}: Extra inputs are not permitted")
                    else:
                        fields[event.name] = bytearray()
                elif isinstance(event, PartData) and current is not None:
                    if current.name == "file" and upload is not None:
                        await upload.write(event.data)
                    else:
                        value = fields[current.name]
                        value += event.data
                        if len(value) > MAX_FIELD_BYTES:
                            raise InvalidRequestError(f"{current.name}: value too long")
                elif isinstance(event, PartEnd):
                    file_ended = file_ended or (current is not None and current.name == "file")
                    current = None
        reader.close()
        if upload is None:
            raise InvalidRequestError("file: Field required")
        if not file_ended:
            raise InvalidRequestError("file: the multipart body ended inside the file part")
        raw_expiry = fields.get("expires_in_seconds")
        expires_in = parse_expires_in(raw_expiry.decode() if raw_expiry is not None else None)
        record = await upload.finish(filename, declared_type, expires_in)
    except BaseException:
        if upload is not None:
            upload.abort()
        raise
    return JSONResponse(metadata(record).model_dump(mode="json"))


async def list_files(request: Request) -> Response:
    key, _ = await authenticate(request)
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    query = parse_list_query(params)
    records, has_more = await services(request).files.page(key.id, query)
    page = FilePage(
        data=[metadata(r) for r in records],
        has_more=has_more,
        first_id=records[0].id if records else None,
        last_id=records[-1].id if records else None,
        # A `before_id` page's cursor would lead the other way; only forward pages get one.
        next_page=page_token(records[-1].id)
        if has_more and records and query.before_id is None
        else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


async def get_file(request: Request) -> Response:
    key, _ = await authenticate(request)
    record = await services(request).files.get(key.id, request.path_params["file_id"])
    return JSONResponse(metadata(record).model_dump(mode="json"))


async def delete_file(request: Request) -> Response:
    key, _ = await authenticate(request)
    file_id = request.path_params["file_id"]
    await services(request).files.delete(key.id, file_id)
    return JSONResponse(DeletedFile(id=file_id).model_dump(mode="json"))


async def download_file(request: Request) -> Response:
    key, _ = await authenticate(request)
    await services(request).files.download(key.id, request.path_params["file_id"])
