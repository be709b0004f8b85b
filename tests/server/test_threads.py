"""Message threads (beta) over raw HTTP on the scripted engine: create, continue,
streams, tools, every thread error code, expiry and clean-up, batches
(message-threads doc §1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import ModelConfig, Settings
from parley.pipeline.threads import CLAIM
from parley.services import Services, start_services
from tests.clock import FakeClock
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings
from tests.server.test_streaming import parse_sse

OTHER_MODEL = "scripted-2"
SLOW_MODEL = "slow-1"
BETA = {"anthropic-beta": "message-threads-2026-08-12"}
DAY = 86400.0
WEATHER = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def models() -> list[ModelConfig]:
    def scripted(id_: str, **extra: Any) -> ModelConfig:
        return ModelConfig(
            id=id_,
            engine="scripted",
            context_window=2048,
            max_output_tokens=1024,
            slots=2,
            **extra,
        )

    return [
        scripted(SCRIPTED_MODEL, aliases=["scripted"]),
        scripted(OTHER_MODEL),
        scripted(SLOW_MODEL, token_delay=0.05),
    ]


@asynccontextmanager
async def app(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    svc = await start_services(settings, clock=clock)
    try:
        key = (await svc.keys.store.create("test")).secret
        async with asgi_client(svc, {**old_sdk_headers(key), **BETA}) as http:
            yield svc, http
    finally:
        await svc.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def thread_settings(tmp_path: Path) -> Settings:
    return scripted_settings(tmp_path / "data", models=models(), batch_worker=False)


@pytest.fixture
async def running(
    thread_settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    async with app(thread_settings, clock) as pair:
        yield pair


@pytest.fixture
def svc(running: tuple[Services, httpx.AsyncClient]) -> Services:
    return running[0]


@pytest.fixture
def http(running: tuple[Services, httpx.AsyncClient]) -> httpx.AsyncClient:
    return running[1]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def create(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": list(messages),
        "thread": {"type": "create"},
        **fields,
    }


def cont(previous: str, *messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": list(messages),
        "thread": {"type": "continue", "previous_message_id": previous},
        **fields,
    }


async def ok(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


async def refused(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, error_code: str | None
) -> dict[str, Any]:
    """A thread error: an HTTP status before any byte of a reply, with the envelope the
    SDKs read `error.details.error_code` from (message-threads doc §1.4)."""
    response = await http.post("/v1/messages", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert error.get("details", {}).get("error_code") == error_code, error
    return error


async def claimed(svc: Services, message_id: str) -> None:
    """Wait until a turn continuing `message_id` holds its claim (it is generating)."""
    for _ in range(1000):
        found = await svc.threads.store.find(message_id)
        if found is not None and found.claim_token is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{message_id} was never claimed")


def text(message: dict[str, Any]) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


async def input_tokens(http: httpx.AsyncClient, body: dict[str, Any]) -> int:
    """What count_tokens says of the equivalent full-conversation request."""
    counted = {k: v for k, v in body.items() if k in ("model", "messages", "system", "tools")}
    response = await http.post("/v1/messages/count_tokens", json=counted)
    assert response.status_code == 200, response.text
    value: int = response.json()["input_tokens"]
    return value


# --- the happy paths ------------------------------------------------------------------


async def test_create_continue_continue_runs_the_whole_conversation(
    http: httpx.AsyncClient,
) -> None:
    system = "You are terse."
    first = await ok(http, create(user("say: Hello Ada."), system=system))
    assert first["id"].startswith("msg_")
    assert text(first) == "Hello Ada."
    second = await ok(http, cont(first["id"], user("one two three")))
    assert text(second) == "Echo: one two three"
    third = await ok(http, cont(second["id"], user("four")))
    assert text(third) == "Echo: four"
    # The continued turn is exactly the full-conversation request: same prompt, so the
    # same input tokens as counting (and as sending) the whole conversation.
    full = [
        user("say: Hello Ada."),
        {"role": "assistant", "content": first["content"]},
        user("one two three"),
        {"role": "assistant", "content": second["content"]},
        user("four"),
    ]
    whole = {"model": SCRIPTED_MODEL, "max_tokens": 64, "system": system, "messages": full}
    assert third["usage"]["input_tokens"] == await input_tokens(http, whole)
    unthreaded = await ok(http, whole)
    assert unthreaded["usage"]["input_tokens"] == third["usage"]["input_tokens"]
    assert text(unthreaded) == text(third)


async def test_a_stream_creates_and_continues_a_thread(http: httpx.AsyncClient) -> None:
    async def streamed(body: dict[str, Any]) -> tuple[str, str, int]:
        response = await http.post("/v1/messages", json={**body, "stream": True})
        assert response.status_code == 200, response.text
        events = parse_sse(response.text)
        assert events[-1].name == "message_stop"
        start = events[0].data["message"]
        deltas = [e.data["delta"]["text"] for e in events if e.name == "content_block_delta"]
        return start["id"], "".join(deltas), start["usage"]["input_tokens"]

    first_id, first_text, _ = await streamed(create(user("count: 3")))
    assert first_text == "1 2 3"
    second_id, second_text, tokens = await streamed(cont(first_id, user("and more")))
    assert second_text == "Echo: and more"
    # A plain continue from the streamed reply works too, and vice versa.
    third = await ok(http, cont(second_id, user("plain now")))
    assert text(third) == "Echo: plain now"
    whole = [
        user("count: 3"),
        {"role": "assistant", "content": first_text},
        user("and more"),
    ]
    assert tokens == await input_tokens(http, {"model": SCRIPTED_MODEL, "messages": whole})


async def test_tool_use_through_a_thread(http: httpx.AsyncClient) -> None:
    first = await ok(
        http,
        create(
            user('say: Looking.\ntool: get_weather {"city": "Oslo"}'),
            tools=[WEATHER],
            system="Use tools.",
        ),
    )
    assert first["stop_reason"] == "tool_use"
    call = first["content"][1]
    assert call["type"] == "tool_use"
    # The continue carries only the tool result: tools and system come from the thread.
    result = {"type": "tool_result", "tool_use_id": call["id"], "content": "-3 C"}
    second = await ok(http, cont(first["id"], {"role": "user", "content": [result]}))
    assert second["stop_reason"] == "end_turn"
    assert text(second) == "Echo: -3 C"
    # A forced call on a later turn still finds the thread's tools.
    forced = {"type": "tool", "name": "get_weather"}
    third = await ok(
        http,
        create(user("weather?"), tools=[WEATHER], tool_choice=forced),
    )
    result = {"type": "tool_result", "tool_use_id": third["content"][0]["id"], "content": "1 C"}
    fourth = await ok(
        http, cont(third["id"], {"role": "user", "content": [result]}, tool_choice=forced)
    )
    assert fourth["content"][0]["type"] == "tool_use"
    assert fourth["content"][0]["name"] == "get_weather"


async def test_an_alias_is_the_same_model(http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("hi")))
    second = await ok(http, cont(first["id"], user("again"), model="scripted"))
    assert text(second) == "Echo: again"


async def test_fields_other_than_the_fixed_ones_may_change_per_turn(
    http: httpx.AsyncClient,
) -> None:
    first = await ok(http, create(user("count: 9"), max_tokens=3))
    assert text(first).strip() == "1 2 3"
    second = await ok(
        http,
        cont(
            first["id"],
            user("count: 9"),
            max_tokens=100,
            stop_sequences=["5"],
            metadata={"user_id": "u-1"},
        ),
    )
    assert (second["stop_reason"], second["stop_sequence"]) == ("stop_sequence", "5")


async def test_cache_markers_are_not_kept_in_the_history(http: httpx.AsyncClient) -> None:
    marked = {
        "role": "user",
        "content": [{"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}],
    }
    first = await ok(http, create(marked, cache_control={"type": "ephemeral"}))
    for _ in range(5):  # more marked blocks than a request may carry, added turn by turn
        first = await ok(http, cont(first["id"], marked))
    assert text(first) == "Echo: cached"


async def test_continue_with_no_messages_continues_the_last_reply(
    http: httpx.AsyncClient,
) -> None:
    """How a `pause_turn` is resumed: the full conversation ends with the reply, which
    the model continues (a prefill on every engine here)."""
    first = await ok(http, create(user("say: Once upon")))
    second = await ok(http, cont(first["id"]))
    whole = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [user("say: Once upon"), {"role": "assistant", "content": "Once upon"}],
    }
    assert second["usage"]["input_tokens"] == await input_tokens(http, whole)
    assert text(second) == text(await ok(http, whole))


# --- thread_not_found -------------------------------------------------------------------


async def test_an_unknown_reply_is_not_found(http: httpx.AsyncClient) -> None:
    error = await refused(http, cont("msg_01nothing", user("hi")), 404, "thread_not_found")
    assert "msg_01nothing" in error["message"]
    assert "No usable Thread state was found" in error["message"]
    # A reply of an unthreaded request is not a thread either.
    plain = await ok(http, {"model": SCRIPTED_MODEL, "max_tokens": 9, "messages": [user("x")]})
    await refused(http, cont(plain["id"], user("hi")), 404, "thread_not_found")


async def test_another_keys_thread_is_not_found(svc: Services, http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("mine")))
    other = (await svc.keys.store.create("other")).secret
    async with asgi_client(svc, {**old_sdk_headers(other), **BETA}) as theirs:
        await refused(theirs, cont(first["id"], user("yours?")), 404, "thread_not_found")
    # The failed attempt did not use the reply up.
    assert text(await ok(http, cont(first["id"], user("still mine")))) == "Echo: still mine"


async def test_threads_expire_after_their_last_turn_and_are_swept(
    svc: Services, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await ok(http, create(user("one")))
    clock.advance(29 * DAY)
    second = await ok(http, cont(first["id"], user("two")))  # moves the expiry on
    clock.advance(29 * DAY)
    third = await ok(http, cont(second["id"], user("three")))
    assert await svc.threads.sweep() == 0
    clock.advance(30 * DAY + 1)
    await refused(http, cont(third["id"], user("four")), 404, "thread_not_found")
    other = await ok(http, create(user("fresh")))
    assert await svc.threads.store.count() == (2, 4)
    assert await svc.threads.sweep() == 1
    assert await svc.threads.store.count() == (1, 1)
    await refused(http, cont(third["id"], user("four")), 404, "thread_not_found")
    assert text(await ok(http, cont(other["id"], user("on")))) == "Echo: on"


async def test_the_lifetime_is_configurable(tmp_path: Path, clock: FakeClock) -> None:
    settings = scripted_settings(tmp_path / "d", models=models(), thread_lifetime_days=1)
    async with app(settings, clock) as (_svc, http):
        first = await ok(http, create(user("one")))
        clock.advance(DAY - 1)
        second = await ok(http, cont(first["id"], user("two")))
        clock.advance(DAY)
        await refused(http, cont(second["id"], user("three")), 404, "thread_not_found")


# --- thread_already_continued and thread_continue_in_flight ------------------------------


async def test_each_reply_is_continued_once(http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("one")))
    second = await ok(http, cont(first["id"], user("two")))
    error = await refused(
        http, cont(first["id"], user("two again")), 400, "thread_already_continued"
    )
    assert "has already been continued" in error["message"]
    # The newest reply is still open.
    assert text(await ok(http, cont(second["id"], user("three")))) == "Echo: three"


async def test_a_concurrent_continue_is_in_flight(svc: Services, http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("start"), model=SLOW_MODEL))
    running = asyncio.create_task(ok(http, cont(first["id"], user("count: 20"), model=SLOW_MODEL)))
    await claimed(svc, first["id"])
    error = await refused(
        http,
        cont(first["id"], user("me too"), model=SLOW_MODEL, stream=True),
        400,
        "thread_continue_in_flight",
    )
    assert "still continuing" in error["message"]
    second = await running
    assert text(second) == " ".join(str(i) for i in range(1, 21))
    await refused(http, cont(first["id"], user("late")), 400, "thread_already_continued")


async def test_a_claim_of_a_dead_replica_lapses(
    svc: Services, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await ok(http, create(user("start")))
    now = svc.threads.now()
    assert await svc.threads.store.claim(first["id"], "gone-replica", now, now + CLAIM)
    await refused(http, cont(first["id"], user("x")), 400, "thread_continue_in_flight")
    clock.advance(CLAIM.total_seconds() + 1)
    assert text(await ok(http, cont(first["id"], user("y")))) == "Echo: y"


# --- thread_fingerprint_mismatch -------------------------------------------------------


async def test_the_model_is_fixed_for_a_thread(http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("one")))
    error = await refused(
        http,
        cont(first["id"], user("two"), model=OTHER_MODEL),
        400,
        "thread_fingerprint_mismatch",
    )
    assert "`model`" in error["message"]
    assert "differing field: `model`" in error["message"]
    # Refused before it was claimed: the same reply continues with the right model.
    assert text(await ok(http, cont(first["id"], user("two")))) == "Echo: two"


async def test_tool_choice_and_output_config_are_fixed(http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("one"), tools=[WEATHER], tool_choice={"type": "auto"}))
    # No tool_choice means `auto`, and parallel calls are allowed by default.
    second = await ok(http, cont(first["id"], user("two")))
    third = await ok(
        http,
        cont(
            second["id"],
            user("three"),
            tool_choice={"type": "auto", "disable_parallel_tool_use": False},
        ),
    )
    error = await refused(
        http,
        cont(
            third["id"],
            user("four"),
            tool_choice={"type": "any"},
            output_config={"effort": "low"},
        ),
        400,
        "thread_fingerprint_mismatch",
    )
    assert "differing fields: `tool_choice`, `output_config`" in error["message"]


async def test_system_and_tools_come_from_the_thread(http: httpx.AsyncClient) -> None:
    first = await ok(http, create(user("one"), system="S", tools=[WEATHER]))
    for field, value in (("system", "S"), ("tools", [WEATHER])):
        error = await refused(http, cont(first["id"], user("two"), **{field: value}), 400, None)
        assert error["message"].startswith(f"{field}: not allowed with `thread.type` `continue`")


# --- thread_unsupported_request ---------------------------------------------------------


async def test_inline_tool_changes_are_unsupported_on_a_thread(http: httpx.AsyncClient) -> None:
    change = {
        "role": "system",
        "content": [
            {"type": "tool_addition", "tool": {"type": "tool_definition", "definition": WEATHER}},
            {"type": "tool_removal", "tool": {"type": "tool_reference", "name": "old"}},
        ],
    }
    first = await ok(http, create(user("one")))
    for body in (create(user("one"), change), cont(first["id"], change, user("two"))):
        error = await refused(http, body, 400, "thread_unsupported_request")
        assert error["details"]["unsupported"] == ["tool_addition", "tool_removal"]
    # Without a thread they are refused like any block this server does not read.
    plain = {"model": SCRIPTED_MODEL, "max_tokens": 9, "messages": [user("one"), change]}
    error = await refused(http, plain, 400, None)
    assert error["message"].startswith("messages.1.content.0")
    # The refused continue did not use the reply up.
    assert text(await ok(http, cont(first["id"], user("two")))) == "Echo: two"


async def test_count_tokens_takes_no_thread(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages/count_tokens",
        json={"model": SCRIPTED_MODEL, "messages": [user("x")], "thread": {"type": "create"}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "thread: Extra inputs are not permitted"


async def test_a_malformed_thread_is_refused(http: httpx.AsyncClient) -> None:
    for thread, message in (
        ({"type": "fork"}, "thread: Input tag 'fork' found using 'type' does not match"),
        ({"type": "continue"}, "thread.continue.previous_message_id: Field required"),
    ):
        body = {**create(user("x")), "thread": thread}
        error = await refused(http, body, 400, None)
        assert error["message"].startswith(message), error


# --- turns that are not kept -------------------------------------------------------------


async def test_a_failed_turn_is_not_kept_and_its_reply_stays_open(
    svc: Services, http: httpx.AsyncClient
) -> None:
    first = await ok(http, create(user("one")))
    response = await http.post(
        "/v1/messages", json={**cont(first["id"], user("fail: overloaded_error")), "stream": True}
    )
    events = parse_sse(response.text)
    assert events[-1].name == "error"
    failed_id = events[0].data["message"]["id"]
    await refused(http, cont(failed_id, user("x")), 404, "thread_not_found")
    # A plain request that fails after it started is not kept either.
    response = await http.post("/v1/messages", json=cont(first["id"], user("fail: api_error")))
    assert response.status_code == 500
    # A turn refused before it started (the context is too small) gives its claim back.
    await refused(http, cont(first["id"], user("x"), max_tokens=5000), 400, None)
    assert await svc.threads.store.count() == (1, 1)
    assert text(await ok(http, cont(first["id"], user("two")))) == "Echo: two"


async def test_a_failed_create_keeps_nothing(svc: Services, http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages", json=create(user("fail: overloaded_error")))
    assert response.status_code == 529
    await refused(http, create(user("x"), max_tokens=5000), 400, None)
    assert await svc.threads.store.count() == (0, 0)


# --- batches -----------------------------------------------------------------------------


async def test_threads_in_a_batch(svc: Services, http: httpx.AsyncClient) -> None:
    """A batch may start threads (continued later, through /v1/messages) and continue
    them; each request is a turn like any other."""
    first = await ok(http, create(user("one")))
    requests = [
        {"custom_id": "new", "params": create(user("say: from a batch"))},
        {"custom_id": "on", "params": cont(first["id"], user("two"))},
        {"custom_id": "gone", "params": cont("msg_01none", user("x"))},
    ]
    created = await http.post("/v1/messages/batches", json={"requests": requests})
    assert created.status_code == 200, created.text
    await svc.batch_worker.run_until_idle()
    results_url = f"/v1/messages/batches/{created.json()['id']}/results"
    lines = (await http.get(results_url)).text.splitlines()
    results = {r["custom_id"]: r["result"] for r in map(json.loads, lines)}
    assert results["gone"]["type"] == "errored"
    error = results["gone"]["error"]["error"]
    assert (error["type"], error["details"]["error_code"]) == (
        "not_found_error",
        "thread_not_found",
    )
    assert text(results["on"]["message"]) == "Echo: two"
    started = results["new"]["message"]
    assert text(await ok(http, cont(started["id"], user("later")))) == "Echo: later"
    assert text(await ok(http, cont(results["on"]["message"]["id"], user("3")))) == "Echo: 3"
