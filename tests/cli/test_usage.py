"""`parley usage` as a subprocess: its time options, the totals after requests through
a real server (which the Admin API reports alike), and keys and usage on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from parley.cli.usage import parse_when
from parley.core.records import UsageRecord
from parley.store.database import open_database
from parley.store.usage import UsageStore
from tests.cli.conftest import CONFIG, create_key, key_list, ok
from tests.conftest import SCRIPTED_MODEL
from tests.serverproc import ParleyProcess


def test_parse_when() -> None:
    now = datetime(2025, 5, 14, 12, tzinfo=UTC)
    assert parse_when("90m", now) == now - timedelta(minutes=90)
    assert parse_when("2d", now) == now - timedelta(days=2)
    assert parse_when("1w", now) == now - timedelta(weeks=1)
    assert parse_when("2025-05-01T10:00:00Z", now) == datetime(2025, 5, 1, 10, tzinfo=UTC)
    assert parse_when("2025-05-01T12:00:00+02:00", now) == datetime(2025, 5, 1, 10, tzinfo=UTC)
    assert parse_when("2025-05-01", now) == datetime(2025, 5, 1, tzinfo=UTC)  # UTC if no offset
    with pytest.raises(ValueError, match="neither a time"):
        parse_when("yesterday", now)


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
            # Closed, each: a client's pooled connection left to the garbage collector
            # is a ResourceWarning in whichever later test collects it.
            with anthropic.Anthropic(
                base_url=server.base_url, api_key=secret, max_retries=0
            ) as client:
                for text in texts:
                    reply = client.messages.create(
                        model=SCRIPTED_MODEL,
                        max_tokens=50,
                        messages=[{"role": "user", "content": text}],
                    )
                    sent[ids[name]].append((reply.usage.input_tokens, reply.usage.output_tokens))
        with (
            anthropic.Anthropic(base_url=server.base_url, api_key=second, max_retries=0) as client,
            client.messages.stream(
                model=SCRIPTED_MODEL,
                max_tokens=50,
                messages=[{"role": "user", "content": "count: 5"}],
            ) as stream,
        ):
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
        with anthropic.Anthropic(
            base_url=server.base_url, api_key=admin_secret, max_retries=0
        ) as admin:
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
