"""Property-based fuzzing of every API route: messages (plain and streamed),
count_tokens, batches, models and the admin API, with their query parameters.

Whatever the request, the answer is never a 5xx, always carries a `request-id`, is an
error envelope when it is an error, and (against a real process) never drops a
keep-alive connection without `connection: close`.

The number of examples is modest in `make test`; `PARLEY_FUZZ_EXAMPLES=N` runs N per
test, and `PARLEY_FUZZ_RANDOM=1` draws new examples each run instead of the same
derandomized ones (bench/hardening.py runs the large campaign).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings

from parley.config import Settings
from parley.services import Services, start_services
from tests.conftest import asgi_client, scripted_settings
from tests.fuzz.checks import Answer, RawConnection, check
from tests.fuzz.strategies import KNOWN_CASES, Call, api_call
from tests.serverproc import ParleyProcess


def _examples(default: int) -> int:
    return int(os.environ.get("PARLEY_FUZZ_EXAMPLES", default))


def known_cases(test: Any) -> Any:
    """The listed cases first, every run, then what hypothesis draws."""
    for call in KNOWN_CASES:
        test = example(call=call)(test)
    return test


def fuzz_settings(default_examples: int) -> settings:
    return settings(
        max_examples=_examples(default_examples),
        deadline=None,
        database=None,
        derandomize=not os.environ.get("PARLEY_FUZZ_RANDOM"),
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


@dataclass
class Keys:
    user: str
    admin: str
    victim_id: str  # a key the admin updates may change at will

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        headers["x-api-key"] = self.admin if call.admin else self.user
        headers.update(call.headers)
        return headers

    def target(self, call: Call) -> str:
        return call.target.replace("{key_id}", self.victim_id)


def label(call: Call, keys: Keys) -> str:
    body = (call.body or b"")[:400]
    return f"{call.method} {keys.target(call)} {call.headers} {body!r}"


# -- in process ------------------------------------------------------------------------


async def _keys(svc: Services) -> Keys:
    user = await svc.keys.store.create("user")
    admin = await svc.keys.store.create("admin", admin=True)
    victim = await svc.keys.store.create("victim")
    return Keys(user.secret, admin.secret, victim.key.id)


def _fuzz_settings_for(tmp_path: Path, database_url: str | None) -> Settings:
    # Queue and slots roomy enough that sequential requests are never refused as
    # overloaded; no batch worker (batches are created, listed, read, not run).
    return scripted_settings(
        tmp_path / "data", database_url=database_url, queue_size=64, batch_worker=False
    )


@pytest.fixture
async def sqlite_app(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    svc = await start_services(_fuzz_settings_for(tmp_path, None))
    try:
        async with asgi_client(svc) as http:
            yield http, await _keys(svc)
    finally:
        await svc.aclose()


@pytest.fixture
async def postgres_app(
    tmp_path: Path, pg_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    svc = await start_services(_fuzz_settings_for(tmp_path, pg_url))
    try:
        async with asgi_client(svc) as http:
            yield http, await _keys(svc)
    finally:
        await svc.aclose()


async def _send(http: httpx.AsyncClient, call: Call, keys: Keys) -> None:
    response = await http.request(
        call.method,
        keys.target(call),
        content=call.body,
        headers={k: v.encode("latin-1") for k, v in keys.headers(call).items()},
    )
    answer = Answer(response.status_code, dict(response.headers), response.content)
    check(answer, stream=call.stream, label=label(call, keys), injected=call.injected)


@fuzz_settings(500)
@known_cases
@given(call=api_call())
async def test_fuzz_in_process_sqlite(
    sqlite_app: tuple[httpx.AsyncClient, Keys], call: Call
) -> None:
    http, keys = sqlite_app
    await _send(http, call, keys)


@fuzz_settings(300)
@known_cases
@given(call=api_call())
async def test_fuzz_in_process_postgres(
    postgres_app: tuple[httpx.AsyncClient, Keys], call: Call
) -> None:
    # PostgreSQL refuses what SQLite stores (NUL bytes, values longer than a column).
    http, keys = postgres_app
    await _send(http, call, keys)


# -- a real process, over one keep-alive connection ------------------------------------

FUZZ_CONFIG = """
queue_size = 64
batch_worker = false
database_url = "{database_url}"

[[models]]
id = "scripted-1"
engine = "scripted"
context_window = 2048
max_output_tokens = 1024
slots = 2
"""


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ParleyProcess, Keys]]:
    from tests.pg import fresh_database
    from tests.serverproc import create_key

    with fresh_database() as url:
        server = ParleyProcess(
            tmp_path_factory.mktemp("fuzz"), config=FUZZ_CONFIG.format(database_url=url)
        )
        server.start()
        try:
            admin = create_key(server, "admin", admin=True)
            victim_id = create_key(server, "victim", want_id=True)
            yield server, Keys(server.api_key, admin, victim_id)
        finally:
            server.stop()


@pytest.fixture(scope="module")
def connection(fuzz_server: tuple[ParleyProcess, Keys]) -> Iterator[RawConnection]:
    server, _ = fuzz_server
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    raw = RawConnection(host, int(port))
    yield raw
    raw.close()


@fuzz_settings(300)
@known_cases
@given(call=api_call())
def test_fuzz_real_process(
    fuzz_server: tuple[ParleyProcess, Keys], connection: RawConnection, call: Call
) -> None:
    _, keys = fuzz_server
    answer = connection.request(
        call.method, keys.target(call), keys.headers(call), call.body or b""
    )
    check(answer, stream=call.stream, label=label(call, keys), injected=call.injected)
