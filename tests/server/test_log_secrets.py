"""A key a client puts in a URL, a header or a body is never written to the log of a
real `parley serve`, whatever the request and its answer."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

SECRET = "sk-ant-api03-SECRETsecret_SECRET-0123456789abcdef"


def test_key_shaped_strings_never_reach_the_log(tmp_path: Path) -> None:
    server = ParleyProcess(
        tmp_path / "serve",
        config='log_level = "debug"\n[[models]]\nid = "scripted-1"\nengine = "scripted"\n',
    ).start()
    own = server.api_key
    good = {"x-api-key": own, "anthropic-version": "2023-06-01"}
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            http.get(f"/v1/models?key={SECRET}", headers=good)
            http.get(f"/v1/models?api_key={own}&x=1", headers=good)
            http.get(f"/v1/models/{SECRET}", headers=good)
            http.get(f"/{SECRET}/v1/messages")
            http.get("/v1/models", headers={"x-api-key": SECRET})
            http.get("/v1/models", headers={"authorization": f"Bearer {SECRET}"})
            http.get("/v1/models", headers={**good, "anthropic-beta": SECRET})
            http.post(
                f"/v1/messages?beta=true&k={SECRET}",
                headers=good,
                json={"model": SECRET, "max_tokens": 5, "messages": []},
            )
            http.post(
                "/v1/messages",
                headers=good,
                json={
                    "model": "scripted-1",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": f"say: {SECRET}"}],
                },
            )
            http.post("/v1/messages", headers=good, content=f'{{"{SECRET}": '.encode())
    finally:
        server.stop()
    stderr = server.stderr_path.read_text()
    assert '"GET /v1/models HTTP/1.1" 200' in stderr  # access lines are written
    for line in stderr.splitlines():
        assert SECRET not in line, line
        assert own not in line, line
        assert "sk-ant-" not in line, line
        assert "?" not in line or "HTTP/1.1" not in line, line  # no query strings
