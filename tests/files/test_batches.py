"""Batch requests read `file_id` sources as the key that created the batch: its own
files are read (a citation names the file), a file deleted before the request runs
is that request's `errored` result, never the batch's failure."""

from __future__ import annotations

from pathlib import Path

from tests.batches.conftest import batch_request, batch_settings, started
from tests.pdfs import pdf_bytes


async def test_batch_requests_read_the_creators_files(tmp_path: Path) -> None:
    async with started(batch_settings(tmp_path)) as app:
        pdf = pdf_bytes("Batch page one.", "The bridge is 300 m long.")
        uploaded = await app.http.post(
            "/v1/files", files={"file": ("b.pdf", pdf, "application/pdf")}
        )
        kept = uploaded.json()["id"]
        gone = (
            await app.http.post("/v1/files", files={"file": ("g.txt", b"bye", "text/plain")})
        ).json()["id"]

        def document(file_id: str) -> dict[str, object]:
            return {
                "type": "document",
                "source": {"type": "file", "file_id": file_id},
                "citations": {"enabled": True},
            }

        batch = await app.create(
            [
                batch_request("kept", [document(kept), {"type": "text", "text": "cite: 300 m"}]),
                batch_request("gone", [document(gone), {"type": "text", "text": "Read."}]),
            ]
        )
        await app.http.delete(f"/v1/files/{gone}")
        await app.worker.run_until_idle()
        results = {line["custom_id"]: line["result"] for line in await app.results(batch["id"])}
        block = results["kept"]["message"]["content"][0]
        assert block["text"] == "300 m"
        assert block["citations"][0]["file_id"] == kept
        assert block["citations"][0]["start_page_number"] == 2
        assert results["gone"]["type"] == "errored"
        assert results["gone"]["error"]["error"]["message"] == (
            f"messages.0.content.0.document.source.file: File not found: {gone}"
        )
