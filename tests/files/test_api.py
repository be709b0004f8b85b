"""The Files API in-process: upload, list, metadata, download, delete, ownership,
limits and quota (api-spec §17; api-version §19.12)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from parley.errors import InvalidRequestError
from parley.services import Services
from tests.conftest import asgi_client, old_sdk_headers, running_app, scripted_settings
from tests.pdfs import pdf_bytes


async def upload(
    http: httpx.AsyncClient,
    content: bytes,
    filename: str = "notes.txt",
    content_type: str | None = "text/plain",
    **fields: str,
) -> httpx.Response:
    part = (filename, content, content_type) if content_type else (filename, content)
    return await http.post("/v1/files", files={"file": part}, data=fields)


async def test_upload_returns_metadata_and_stores_the_bytes(
    services: Services, client: httpx.AsyncClient
) -> None:
    response = await upload(client, b"The sky is blue.\n", "dir/sub/notes.txt")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("file_011C")
    assert body["type"] == "file"
    assert body["filename"] == "notes.txt"  # only the final path component is kept
    assert body["mime_type"] == "text/plain"
    assert body["size_bytes"] == 17
    assert body["downloadable"] is False
    assert body["expires_at"] is None
    assert body["created_at"].endswith("Z")
    stored = services.settings.data_dir / "files"
    assert (stored / body["id"]).read_bytes() == b"The sky is blue.\n"
    assert [p.name for p in stored.iterdir() if p.name.endswith(".part")] == []


async def test_media_type_is_read_from_the_bytes(client: httpx.AsyncClient) -> None:
    pdf = await upload(client, pdf_bytes("one"), "report.bin", "application/octet-stream")
    assert pdf.json()["mime_type"] == "application/pdf"
    named = await upload(client, b"a,b\n1,2\n", "table.csv", None)
    assert named.json()["mime_type"] == "text/csv"
    unnamed = await upload(client, b"plain words", "", None)
    assert unnamed.json()["filename"] == "unnamed.txt"
    assert unnamed.json()["mime_type"] == "text/plain"


async def test_list_is_newest_first_with_both_cursor_styles(client: httpx.AsyncClient) -> None:
    ids = [(await upload(client, f"file {i}".encode(), f"f{i}.txt")).json()["id"] for i in range(5)]
    newest_first = ids[::-1]
    first = (await client.get("/v1/files", params={"limit": 2})).json()
    assert [f["id"] for f in first["data"]] == newest_first[:2]
    assert first["has_more"] is True
    assert first["first_id"] == newest_first[0]
    assert first["last_id"] == newest_first[1]
    assert first["next_page"].startswith("page_")
    # SDK 2.x follows `next_page`; the 0.x SDKs send `after_id=<last_id>`.
    by_page = (
        await client.get("/v1/files", params={"page": first["next_page"], "limit": 2})
    ).json()
    by_after = (
        await client.get("/v1/files", params={"after_id": first["last_id"], "limit": 2})
    ).json()
    assert (
        [f["id"] for f in by_page["data"]]
        == newest_first[2:4]
        == [f["id"] for f in by_after["data"]]
    )
    last = (await client.get("/v1/files", params={"page": by_page["next_page"], "limit": 2})).json()
    assert [f["id"] for f in last["data"]] == newest_first[4:]
    assert last["has_more"] is False
    assert last["next_page"] is None
    chosen = (await client.get("/v1/files", params=[("ids", ids[0]), ("ids", ids[3])])).json()
    assert {f["id"] for f in chosen["data"]} == {ids[0], ids[3]}
    assert chosen["next_page"] is None


async def test_retrieve_delete_and_download(client: httpx.AsyncClient) -> None:
    file_id = (await upload(client, b"hello")).json()["id"]
    got = await client.get(f"/v1/files/{file_id}")
    assert got.status_code == 200
    assert got.json()["id"] == file_id
    download = await client.get(f"/v1/files/{file_id}/content")
    assert download.status_code == 400
    error = download.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["details"] == {"error_code": "file_not_downloadable"}
    deleted = await client.delete(f"/v1/files/{file_id}")
    assert deleted.json() == {"id": file_id, "type": "file_deleted"}
    for response in (
        await client.get(f"/v1/files/{file_id}"),
        await client.delete(f"/v1/files/{file_id}"),
        await client.get(f"/v1/files/{file_id}/content"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == {
            "type": "not_found_error",
            "message": f"File not found: {file_id}",
        }


async def test_files_belong_to_their_key(services: Services, client: httpx.AsyncClient) -> None:
    file_id = (await upload(client, b"mine")).json()["id"]
    other = (await services.keys.store.create("other")).secret
    async with asgi_client(services, old_sdk_headers(other)) as them:
        assert (await them.get(f"/v1/files/{file_id}")).status_code == 404
        assert (await them.delete(f"/v1/files/{file_id}")).status_code == 404
        assert (await them.get("/v1/files")).json()["data"] == []
    assert (await client.get(f"/v1/files/{file_id}")).status_code == 200


async def test_expiry(client: httpx.AsyncClient) -> None:
    body = (await upload(client, b"soon gone", expires_in_seconds="3600")).json()
    assert body["expires_at"] is not None
    assert body["expires_at"] > body["created_at"]
    for value, message in [
        ("10", "expires_in_seconds: Input should be greater than or equal to 3600"),
        ("7776001", "expires_in_seconds: Input should be less than or equal to 7776000"),
        ("soon", "expires_in_seconds: Input should be a valid integer"),
    ]:
        response = await upload(client, b"x", expires_in_seconds=value)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == message


async def test_bad_uploads(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/files", data={"expires_in_seconds": "3600"}, files={})
    assert missing.status_code == 400
    not_multipart = await client.post(
        "/v1/files", content=b"raw", headers={"content-type": "text/plain"}
    )
    assert not_multipart.status_code == 400
    assert "multipart/form-data" in not_multipart.json()["error"]["message"]
    extra = await upload(client, b"x", purpose="assistants")
    assert extra.json()["error"]["message"] == "purpose: Extra inputs are not permitted"
    forbidden = await upload(client, b"x", "what?.txt")
    assert forbidden.status_code == 400
    assert forbidden.json()["error"]["message"].startswith("filename:")


async def test_size_limit_and_quota(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path / "data", files_max_bytes=1000, files_quota_bytes=1500)
    async with running_app(settings) as (svc, http):
        too_big = await upload(http, b"x" * 1001)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["type"] == "request_too_large"
        assert (await upload(http, b"x" * 1000)).status_code == 200
        over = await upload(http, b"y" * 600)
        assert over.status_code == 400
        error = over.json()["error"]
        assert error["details"] == {"error_code": "storage_quota_exceeded"}
        assert "Storage quota exceeded" in error["message"]
        # Nothing of the refused uploads stays behind, and the quota still holds 500 bytes.
        await svc.background.drain()
        files = svc.settings.data_dir / "files"
        assert sorted(p.name.startswith(".") for p in files.iterdir()) == [False]
        assert (await upload(http, b"z" * 500)).status_code == 200


async def test_a_chunked_upload_over_the_limit_is_refused_as_it_streams(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path / "data", files_max_bytes=100_000)
    async with running_app(settings) as (_, http):
        boundary = "b0undary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()

        async def body():  # type: ignore[no-untyped-def]
            yield head
            for _ in range(20):
                yield b"x" * 10_000
            yield f"\r\n--{boundary}--\r\n".encode()

        response = await http.post(
            "/v1/files",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413
        assert (await http.get("/v1/files")).json()["data"] == []


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21"])
async def test_both_versions_and_the_beta_header(
    services: Services, api_key: str, version: str
) -> None:
    headers = {"authorization": f"Bearer {api_key}", "anthropic-version": version}
    if version == "2023-06-01":
        headers["anthropic-beta"] = "files-api-2025-04-14"
    async with asgi_client(services, headers) as http:
        response = await upload(http, b"either way")
        assert response.status_code == 200, response.text


async def test_list_query_errors(client: httpx.AsyncClient) -> None:
    cases = [
        (
            [("ids", "file_a"), ("limit", "2")],
            "ids: cannot be used together with `page` or `limit`",
        ),
        (
            [("ids", ",".join(f"file_{i}" for i in range(101)))],
            "ids: at most 100 ids may be given, got 101",
        ),
        ([("page", "nonsense")], "page: nonsense is not a page cursor this API returned"),
        ([("limit", "0")], "limit: Input should be greater than or equal to 1"),
        (
            [("after_id", "a"), ("before_id", "b")],
            "after_id: cannot be used together with before_id",
        ),
    ]
    for params, message in cases:
        response = await client.get("/v1/files", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["message"] == message
    unknown = await client.get("/v1/files", params={"after_id": "file_nobody"})
    assert unknown.status_code == 404


async def test_the_quota_is_checked_again_when_an_upload_ends(tmp_path: Path) -> None:
    """Two uploads of one key that run side by side each fit alone; the one that ends
    second is refused, and none of its bytes stay behind."""
    settings = scripted_settings(tmp_path / "data", files_quota_bytes=1000)
    async with running_app(settings) as (svc, _):
        key = (await svc.keys.store.create("k")).key
        first = await svc.files.upload(key.id, None)
        second = await svc.files.upload(key.id, None)
        await first.write(b"a" * 600)
        await second.write(b"b" * 600)
        await first.finish("a.txt", "text/plain", None)
        with pytest.raises(InvalidRequestError) as refused:
            await second.finish("b.txt", "text/plain", None)
        assert refused.value.details == {"error_code": "storage_quota_exceeded"}
        second.abort()
        await svc.background.drain()
        stored = sorted(p.name for p in (svc.settings.data_dir / "files").iterdir())
        assert stored == [first.file_id]
