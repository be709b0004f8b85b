"""`parley keys create|list|update|revoke` as subprocesses, against the same store a
server uses; a revoke is refused at once by servers already running."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import pytest

from parley.services import start_services
from tests.cli.conftest import CONFIG, create_key, key_list, ok, parley
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings
from tests.serverproc import ParleyProcess


def test_keys_create_prints_only_the_secret_last_and_stores_a_hash(tmp_path: Path) -> None:
    result = parley("keys", "create", "--name", "ci", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    secret = lines[-1]
    assert secret.startswith("sk-parley-")
    assert secret not in result.stderr
    assert "ci" in result.stderr
    db = (tmp_path / "parley.db").read_bytes()
    assert secret.encode() not in db
    rows = sqlite3.connect(tmp_path / "parley.db").execute("SELECT name, secret_hash FROM api_keys")
    (name, digest), *_ = rows.fetchall()
    assert name == "ci"
    assert len(digest) == 64


def test_keys_list_shows_keys_but_never_a_secret(tmp_path: Path) -> None:
    store = ["--data-dir", str(tmp_path)]
    alice = create_key(store, "alice", "--tier", "gold")
    root = create_key(store, "root", "--admin")

    listed = key_list(store)
    assert [(k["name"], k["tier"], k["status"], k["is_admin"]) for k in listed] == [
        ("root", "default", "active", True),
        ("alice", "gold", "active", False),
    ]
    assert all(k["id"].startswith("apikey_01") and k["last_used_at"] is None for k in listed)
    assert listed[1]["hint"].startswith("sk-parley-")
    assert datetime.fromisoformat(listed[0]["created_at"]) <= datetime.now(UTC)

    table = parley("keys", "list", *store)
    assert table.returncode == 0, table.stderr
    for key in listed:
        assert key["id"] in table.stdout
        assert key["name"] in table.stdout
        assert key["hint"] in table.stdout
    for output in (table.stdout, table.stderr, json.dumps(listed)):
        assert alice not in output
        assert root not in output
        # Not even the part of the secret after the prefix and hint.
        assert alice[len("sk-parley-") + 4 : -4] not in output


def test_keys_list_when_there_are_none(tmp_path: Path) -> None:
    assert key_list(["--data-dir", str(tmp_path)]) == []
    assert "No API keys" in ok("keys", "list", "--data-dir", str(tmp_path))


def test_browser_access_per_key_from_the_cli(tmp_path: Path) -> None:
    store = ["--data-dir", str(tmp_path)]
    create_key(store, "server only", "--no-browser-access")
    create_key(store, "byok")
    closed, opened = sorted(key_list(store), key=lambda k: k["name"] != "server only")
    assert (closed["browser_access"], opened["browser_access"]) == (False, True)

    assert ok("keys", "update", closed["id"], "--browser-access", *store) == f"{closed['id']}\n"
    assert ok("keys", "update", opened["id"], "--name", "renamed", *store) == f"{opened['id']}\n"
    after = {k["id"]: k for k in key_list(store)}
    assert after[closed["id"]]["browser_access"] is True
    assert after[opened["id"]]["name"] == "renamed"
    assert after[opened["id"]]["browser_access"] is True

    unknown = parley("keys", "update", "apikey_01nope", "--no-browser-access", *store)
    assert unknown.returncode != 0
    assert "no API key with id apikey_01nope" in unknown.stderr


def test_revoke_an_unknown_key_fails_clearly(tmp_path: Path) -> None:
    result = parley("keys", "revoke", "apikey_01nope", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "no API key with id apikey_01nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_revoke_refuses_the_key_at_once_on_a_running_server(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path / "data")
    store = ["--data-dir", str(settings.data_dir)]
    svc = await start_services(settings)
    try:
        secret = await asyncio.to_thread(create_key, store, "doomed")
        [listed] = await asyncio.to_thread(key_list, store)
        body = {
            "model": SCRIPTED_MODEL,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with asgi_client(svc, old_sdk_headers(secret)) as http:
            assert (await http.post("/v1/messages", json=body)).status_code == 200
            out = await asyncio.to_thread(ok, "keys", "revoke", listed["id"], *store)
            assert out == f"{listed['id']}\n"
            refused = await http.post("/v1/messages", json=body)
            assert refused.status_code == 401
            assert refused.json()["error"] == {
                "type": "authentication_error",
                "message": "invalid x-api-key",
            }
        [after] = await asyncio.to_thread(key_list, store)
        assert after["status"] == "archived"
        assert after["last_used_at"] is not None
    finally:
        await svc.aclose()


@pytest.mark.e2e
def test_a_key_revoked_from_the_cli_is_refused_by_a_real_server(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data", config=CONFIG).start()
    store = ["--data-dir", str(server.data_dir)]
    try:
        with anthropic.Anthropic(
            base_url=server.base_url, api_key=server.api_key, max_retries=0
        ) as client:
            messages: Any = [{"role": "user", "content": "say: ok"}]
            assert client.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=messages)
            [key] = key_list(store)
            assert ok("keys", "revoke", key["id"], *store) == f"{key['id']}\n"
            with pytest.raises(anthropic.AuthenticationError):
                client.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=messages)
    finally:
        server.stop()
