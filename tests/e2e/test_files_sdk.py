"""The Files API through the official SDKs against a real `parley serve` (scripted
engine): Python 2.14's `client.beta.files` and GA `client.files`, and the TypeScript
SDK's `client.beta.files`, newest (1.x) and 0.x; uploaded files read from messages as
documents, with citations that name the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.e2e.test_python_sdk0 import SDK0_PATH, SDK0_VERSION
from tests.pdfs import pdf_bytes
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

MODEL = "scripted-1"
PAGES = ("The treaty was signed in 1648.", "The river is 42 km long.")
NODE_DIR = Path(__file__).with_name("node")
TS_PACKAGES = {"@anthropic-ai/sdk": "1.15.0", "anthropic-sdk-0": "0.120.0"}


@pytest.fixture(scope="module")
def sdk(scripted_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:
        yield client


def test_python_beta_files(sdk: anthropic.Anthropic) -> None:
    meta = sdk.beta.files.upload(
        file=("treaty.pdf", pdf_bytes(*PAGES), "application/pdf"),
        betas=["files-api-2025-04-14"],
    )
    assert meta.id.startswith("file_")
    assert (meta.filename, meta.mime_type, meta.type) == ("treaty.pdf", "application/pdf", "file")
    assert meta.downloadable is False
    assert sdk.beta.files.retrieve_metadata(meta.id).size_bytes == meta.size_bytes

    message = sdk.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "file", "file_id": meta.id},
                        "title": "Treaty",
                        "citations": {"enabled": True},
                    },
                    {"type": "text", "text": "cite: 42 km"},
                ],
            }
        ],
    )
    block = message.content[0]
    assert block.type == "text"
    assert block.text == "42 km"
    assert block.citations is not None
    [citation] = block.citations
    assert citation.type == "page_location"
    assert (citation.start_page_number, citation.end_page_number) == (2, 3)
    assert citation.document_title == "Treaty"
    assert citation.file_id == meta.id
    assert citation.cited_text in PAGES[1]

    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.beta.files.download(meta.id)
    assert refused.value.body["error"]["details"]["error_code"] == "file_not_downloadable"  # type: ignore[index]

    deleted = sdk.beta.files.delete(meta.id)
    assert (deleted.id, deleted.type) == (meta.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError):
        sdk.beta.files.retrieve_metadata(meta.id)


def test_python_ga_files_and_paging(sdk: anthropic.Anthropic, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("The grass is green.")
    uploaded = [sdk.files.upload(file=path) for _ in range(3)]
    assert {m.mime_type for m in uploaded} == {"text/plain"}
    ours = {m.id for m in uploaded}
    # Auto-paging follows `next_page` one file at a time, newest first.
    listed = [m.id for m in sdk.files.list(limit=1) if m.id in ours]
    assert listed == [m.id for m in reversed(uploaded)]
    chosen = sdk.files.list(ids=[uploaded[0].id])
    assert [m.id for m in chosen.data] == [uploaded[0].id]
    for meta in uploaded:
        sdk.files.delete(meta.id)
    assert not ours & {m.id for m in sdk.files.list()}


def run_node(server: ParleyProcess, package: str, pdf: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    if not (NODE_DIR / "node_modules" / package).is_dir():
        pytest.fail(f"{package} is not installed in {NODE_DIR} (run `make install`)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [node, "files.mjs", server.base_url, server.api_key, package, MODEL, str(pdf)],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    assert results["version"] == TS_PACKAGES[package]
    return results


@pytest.mark.parametrize("package", list(TS_PACKAGES))
def test_typescript_beta_files(
    scripted_server: ParleyProcess, package: str, tmp_path: Path
) -> None:
    pdf = tmp_path / "treaty.pdf"
    pdf.write_bytes(pdf_bytes(*PAGES))
    results = run_node(scripted_server, package, pdf)
    upload = results["upload"]
    assert upload["ok"], upload
    meta = upload["meta"]
    assert (meta["filename"], meta["mime_type"]) == ("treaty.pdf", "application/pdf")
    assert meta["size_bytes"] == pdf.stat().st_size
    assert results["list"]["ok"], results["list"]
    assert meta["id"] in results["list"]["ids"]
    assert results["retrieve"]["meta"]["id"] == meta["id"]
    message = results["message"]
    assert message["ok"], message
    [block] = message["content"]
    assert block["text"] == "42 km"
    assert block["citations"][0]["type"] == "page_location"
    assert block["citations"][0]["file_id"] == meta["id"]
    download = results["download"]
    assert (download["ok"], download["status"], download["errorCode"]) == (
        False,
        400,
        "file_not_downloadable",
    )
    assert results["delete"]["deleted"] == {"id": meta["id"], "type": "file_deleted"}
    gone = results["retrieveDeleted"]
    assert (gone["ok"], gone["status"], gone["type"]) == (False, 404, "not_found_error")


def test_python_sdk0_beta_files(scripted_server: ParleyProcess) -> None:
    if not (SDK0_PATH / "anthropic").is_dir():
        pytest.fail(f"the 0.x SDK is not installed in {SDK0_PATH} (run `make install`)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHONPATH"] = str(SDK0_PATH)
    script = Path(__file__).with_name("sdk0_files_client.py")
    done = subprocess.run(
        [sys.executable, str(script), scripted_server.base_url, scripted_server.api_key],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["sdk_version"] == SDK0_VERSION
    uploaded = results["uploaded"]
    # The 0.x pager follows `after_id=<last_id>` one file at a time, newest first.
    listed = [i for i in results["listed"] if i in uploaded]
    assert listed == uploaded[::-1]
    assert results["metadata"]["mime_type"] == "text/plain"
    assert results["metadata"]["downloadable"] is False
    assert results["download"]["status"] == 400
    assert results["deleted"] == [{"id": i, "type": "file_deleted"} for i in uploaded]
