"""`parley keys list|revoke` and `parley usage`, as subprocesses against the same store
a server uses: SQLite in the data dir, or PostgreSQL when `database_url` is set."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from parley.core.records import UsageRecord
from parley.services import start_services
from parley.store.database import open_database
from parley.store.usage import UsageStore
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings
from tests.serverproc import ParleyProcess

CONFIG = f'[[models]]\nid = "{SCRIPTED_MODEL}"\nengine = "scripted"\n'


def parley(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def ok(*args: str) -> str:
    result = parley(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_key(store: list[str], name: str, *extra: str) -> str:
    return ok("keys", "create", "--name", name, *store, *extra).splitlines()[-1]


def key_list(store: list[str]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(ok("keys", "list", "--json", *store))
    return listed


# -- keys ------------------------------------------------------------------------------


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


# -- a real server, the official SDK, then `parley usage` --------------------------------


def usage_json(store: list[str], *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ok("usage", "--json", *store, *args))
    return report


def wait_for_requests(store: list[str], expected: int) -> dict[str, Any]:
    """Usage is written just after each response; poll until all of it is in."""
    deadline = time.monotonic() + 15
    while True:
        report = usage_json(store)
        if report["totals"]["requests"] >= expected or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


@pytest.mark.e2e
def test_usage_after_requests_through_a_real_server(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data", config=CONFIG).start()
    store = ["--data-dir", str(server.data_dir), "--config", str(server.data_dir / "parley.toml")]
    try:
        second = create_key(store, "second")
        admin_secret = create_key(store, "root", "--admin")
        ids = {k["name"]: k["id"] for k in key_list(store)}
        sent: dict[str, list[tuple[int, int]]] = {ids["default"]: [], ids["second"]: []}
        for name, secret, texts in [
            ("default", server.api_key, ["say: one two three", "count: 7"]),
            ("second", second, ["say: hello there"]),
        ]:
            client = anthropic.Anthropic(base_url=server.base_url, api_key=secret, max_retries=0)
            for text in texts:
                reply = client.messages.create(
                    model=SCRIPTED_MODEL,
                    max_tokens=50,
                    messages=[{"role": "user", "content": text}],
                )
                sent[ids[name]].append((reply.usage.input_tokens, reply.usage.output_tokens))
        with anthropic.Anthropic(
            base_url=server.base_url, api_key=second, max_retries=0
        ).messages.stream(
            model=SCRIPTED_MODEL, max_tokens=50, messages=[{"role": "user", "content": "count: 5"}]
        ) as stream:
            final = stream.get_final_message()
        sent[ids["second"]].append((final.usage.input_tokens, final.usage.output_tokens))

        report = wait_for_requests(store, 4)
        expected_in = sum(i for usages in sent.values() for i, _ in usages)
        expected_out = sum(o for usages in sent.values() for _, o in usages)
        assert report["by"] == "day"
        assert report["totals"] == {
            "requests": 4,
            "input_tokens": expected_in,
            "output_tokens": expected_out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "total_tokens": expected_in + expected_out,
        }
        per_key: dict[str, list[int]] = {}
        for row in report["rows"]:
            assert row["model"] == SCRIPTED_MODEL
            counts = per_key.setdefault(row["api_key_id"], [0, 0, 0])
            counts[0] += row["requests"]
            counts[1] += row["input_tokens"]
            counts[2] += row["output_tokens"]
            assert row["key_name"] in ("default", "second")
        assert per_key == {
            key: [len(usages), sum(i for i, _ in usages), sum(o for _, o in usages)]
            for key, usages in sent.items()
        }

        only_second = usage_json(store, "--key", ids["second"], "--since", "1h", "--by", "minute")
        assert only_second["by"] == "minute"
        assert {row["api_key_id"] for row in only_second["rows"]} == {ids["second"]}
        assert only_second["totals"]["requests"] == 2
        assert usage_json(store, "--until", "1h")["rows"] == []

        table = ok("usage", *store, "--since", "1h", "--by", "hour")
        assert "Total" in table
        assert ids["default"] in table
        assert ids["second"] in table
        assert SCRIPTED_MODEL in table
        assert f"{expected_in + expected_out:,}" in table
        for secret in (server.api_key, second, admin_secret):
            assert secret not in table

        # The Admin API tells the same story, through the official SDK and plain HTTP.
        admin = anthropic.Anthropic(base_url=server.base_url, api_key=admin_secret, max_retries=0)
        keys = list(admin.organization.api_keys.list())
        assert {k.name for k in keys} == {"default", "second", "root"}
        assert admin.organization.api_keys.retrieve(ids["second"]).partial_key_hint
        start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        response = httpx.get(
            f"{server.base_url}/v1/organizations/usage_report/messages",
            params={"starting_at": start, "group_by[]": "api_key_id"},
            headers={"x-api-key": admin_secret, "anthropic-version": "2023-06-01"},
        )
        assert response.status_code == 200, response.text
        results = [r for bucket in response.json()["data"] for r in bucket["results"]]
        assert sum(r["uncached_input_tokens"] for r in results) == expected_in
        assert sum(r["output_tokens"] for r in results) == expected_out
    finally:
        server.stop()


@pytest.mark.e2e
def test_a_key_revoked_from_the_cli_is_refused_by_a_real_server(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data", config=CONFIG).start()
    store = ["--data-dir", str(server.data_dir)]
    try:
        client = anthropic.Anthropic(
            base_url=server.base_url, api_key=server.api_key, max_retries=0
        )
        messages: Any = [{"role": "user", "content": "say: ok"}]
        assert client.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=messages)
        [key] = key_list(store)
        assert ok("keys", "revoke", key["id"], *store) == f"{key['id']}\n"
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=messages)
    finally:
        server.stop()


# -- PostgreSQL ------------------------------------------------------------------------


def test_keys_and_usage_against_postgresql(tmp_path: Path, pg_url: str) -> None:
    config = tmp_path / "parley.toml"
    config.write_text(f'database_url = "{pg_url}"\n')
    # A data dir of its own proves nothing is read from SQLite there.
    store = ["--config", str(config), "--data-dir", str(tmp_path / "empty")]
    create_key(store, "pg-user")
    [key] = key_list(store)
    assert key["name"] == "pg-user"

    async def record() -> None:
        engine = await open_database(pg_url)
        try:
            usage = UsageStore(engine)
            at = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
            await usage.add(UsageRecord(key["id"], "m", at, input_tokens=11, output_tokens=3))
            await usage.add(UsageRecord(key["id"], "m", at + timedelta(hours=2), input_tokens=5))
        finally:
            await engine.dispose()

    asyncio.run(record())
    report = usage_json(store, "--since", "2026-05-01T00:00:00Z", "--by", "hour")
    assert [(r["starting_at"], r["requests"], r["input_tokens"]) for r in report["rows"]] == [
        ("2026-05-01T09:00:00Z", 1, 11),
        ("2026-05-01T11:00:00Z", 1, 5),
    ]
    assert report["totals"]["total_tokens"] == 19
    assert not (tmp_path / "empty" / "parley.db").exists()

    assert ok("keys", "revoke", key["id"], *store) == f"{key['id']}\n"
    [after] = key_list(store)
    assert after["status"] == "archived"
