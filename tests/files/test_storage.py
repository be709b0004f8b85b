"""Where file bytes live: one PostgreSQL shared by two replicas (a file uploaded
through one is read through the other), chunked reads and writes, and the sweep of
uploads that died and of files that expired."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from parley.pipeline.files import STALE_UPLOAD
from parley.services import start_services
from parley.store.file_blobs import CHUNK_BYTES, DatabaseBlobs, DirectoryBlobs
from parley.store.schema import file_chunks
from tests.conftest import (
    SCRIPTED_MODEL,
    asgi_client,
    old_sdk_headers,
    running_app,
    scripted_settings,
)
from tests.pdfs import pdf_bytes


async def test_two_replicas_on_postgresql_share_a_file(tmp_path: Path, pg_url: str) -> None:
    first = scripted_settings(tmp_path / "a", database_url=pg_url)
    second = scripted_settings(tmp_path / "b", database_url=pg_url)
    pdf = pdf_bytes("Replica one stored this page.", "And this one.")
    async with running_app(first) as (svc_a, http_a), running_app(second) as (svc_b, _):
        key = (await svc_a.keys.store.create("shared")).secret
        http_a.headers["x-api-key"] = key
        uploaded = await http_a.post("/v1/files", files={"file": ("r.pdf", pdf, "application/pdf")})
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        assert not (tmp_path / "a" / "files").exists()  # in the database, not on A's disk
        async with svc_b.database.connect() as conn:
            chunks = await conn.scalar(select(func.count()).select_from(file_chunks))
        assert chunks == 1

        async with asgi_client(svc_b, old_sdk_headers(key)) as http_b:
            listed = (await http_b.get("/v1/files")).json()
            assert [f["id"] for f in listed["data"]] == [file_id]
            block = {"type": "document", "source": {"type": "file", "file_id": file_id}}
            message = await http_b.post(
                "/v1/messages",
                json={
                    "model": SCRIPTED_MODEL,
                    "max_tokens": 300,
                    "messages": [
                        {"role": "user", "content": [block, {"type": "text", "text": "Read."}]}
                    ],
                },
            )
            assert message.status_code == 200, message.text
            assert "Replica one stored this page." in message.json()["content"][0]["text"]
            assert (await http_b.delete(f"/v1/files/{file_id}")).status_code == 200
        assert (await http_a.get(f"/v1/files/{file_id}")).status_code == 404
        async with svc_a.database.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(file_chunks)) == 0


@pytest.mark.parametrize("kind", ["directory", "database"])
async def test_blobs_stream_in_chunks(tmp_path: Path, kind: str) -> None:
    settings = scripted_settings(tmp_path / "data")
    async with running_app(settings) as (svc, _):
        blobs = (
            DirectoryBlobs(tmp_path / "blobs")
            if kind == "directory"
            else DatabaseBlobs(svc.database)
        )
        data = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 10)  # two chunks and a bit
        writer = await blobs.writer("file_x")
        for i in range(0, len(data), 70_000):
            await writer.write(data[i : i + 70_000])
        await writer.commit()
        pieces = [p async for p in blobs.read("file_x")]
        assert b"".join(pieces) == data
        assert max(len(p) for p in pieces) <= CHUNK_BYTES
        await blobs.delete("file_x")
        assert [p async for p in DatabaseBlobs(svc.database).read("file_x")] == []


async def test_the_sweep_removes_dead_uploads_and_expired_files(tmp_path: Path) -> None:
    now = [time.time()]
    settings = scripted_settings(tmp_path / "data", files_storage="database")
    svc = await start_services(settings, clock=lambda: now[0])
    try:
        key = (await svc.keys.store.create("k")).key
        dead = await svc.files.upload(key.id, None)
        await dead.write(b"x" * (CHUNK_BYTES + 5))  # one chunk stored, then the process "dies"
        kept = await svc.files.upload(key.id, None)
        await kept.write(b"keep me")
        record = await kept.finish("a.txt", "text/plain", 3600)
        now[0] += STALE_UPLOAD.total_seconds() + 3601
        await svc.files.sweep()
        async with svc.database.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(file_chunks)) == 0
        assert await svc.files.records.get(record.id) is None
        assert await svc.files.records.stale_uploads(svc.files.now()) == []
    finally:
        await svc.aclose()
