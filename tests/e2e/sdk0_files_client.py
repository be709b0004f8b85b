"""Drive a Parley server's Files API with the 0.x Python SDK (anthropic 0.121:
`client.beta.files`, which adds `anthropic-beta: files-api-2025-04-14` and `?beta=true`
and pages with `after_id`) and print what happened as one JSON object.

Not a test: tests/e2e/test_files_sdk.py runs it with PYTHONPATH at the 0.x SDK.

    python sdk0_files_client.py BASE_URL API_KEY
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anthropic


def main() -> None:
    base_url, api_key = sys.argv[1:3]
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)
    results: dict[str, Any] = {"sdk_version": anthropic.__version__}
    uploaded = [
        client.beta.files.upload(file=(f"n{i}.txt", f"note {i}".encode(), "text/plain"))
        for i in range(3)
    ]
    results["uploaded"] = [m.id for m in uploaded]
    results["listed"] = [m.id for m in client.beta.files.list(limit=1)]
    results["metadata"] = client.beta.files.retrieve_metadata(uploaded[0].id).model_dump(
        mode="json"
    )
    try:
        client.beta.files.download(uploaded[0].id)
        results["download"] = {"ok": True}
    except anthropic.APIStatusError as exc:
        results["download"] = {"ok": False, "status": exc.status_code, "body": exc.body}
    results["deleted"] = [client.beta.files.delete(m.id).model_dump(mode="json") for m in uploaded]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
