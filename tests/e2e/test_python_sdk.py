"""The newest Python SDK (anthropic 2.x: anthropic-version 2026-10-21, Bearer auth)
against a real `parley serve` process on the scripted engine."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.e2e.conftest import CATALOG_ORDER, LIMITS_MAX_BODY
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

MODEL = "scripted-1"


def user(text: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


def assert_request_id(value: str | None) -> None:
    assert value is not None
    assert value.startswith("req_"), value


def event_types_in_documented_order(types: list[str]) -> None:
    """One text block: message_start, block start, deltas, block stop, message_delta/stop
    (api-spec §6.2; the SDKs drop `ping`)."""
    assert types[0] == "message_start", types
    assert types[1] == "content_block_start", types
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"], types
    deltas = types[2:-3]
    assert deltas, types
    assert set(deltas) == {"content_block_delta"}, types


@pytest.fixture(scope="module")
def sdk(scripted_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:
        yield client


# --- messages.create -------------------------------------------------------------


def test_create_returns_the_scripted_reply(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model=MODEL, max_tokens=50, messages=user("say: Hello there"))
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.id.startswith("msg_")
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Hello there")
    ]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    # Scripted tokens are whitespace-delimited words; the prompt renders as
    # "<user>say: Hello there</user>" = 3 tokens.
    assert message.usage.input_tokens == 3
    assert message.usage.output_tokens == 2
    assert_request_id(message._request_id)


def test_every_response_carries_request_and_organization_ids(sdk: anthropic.Anthropic) -> None:
    raw = sdk.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=user("say: ok"))
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    assert_request_id(raw.headers.get("request-id"))
    assert (
        str(uuid.UUID(raw.headers["anthropic-organization-id"]))
        == (raw.headers["anthropic-organization-id"])
    )
    message = raw.parse()
    assert message._request_id == raw.headers["request-id"]
    other = sdk.messages.with_raw_response.create(
        model=MODEL, max_tokens=5, messages=user("say: ok")
    )
    assert other.headers["request-id"] != raw.headers["request-id"]
    assert other.headers["anthropic-organization-id"] == raw.headers["anthropic-organization-id"]


def test_create_by_alias_and_echo(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="scripted", max_tokens=50, messages=user("hi there"))
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: hi there"
    # Whether `model` echoes the alias or names the resolved id is not pinned down
    # by the spec; either is a name of this model.
    assert message.model in {"scripted", MODEL}


def test_create_stops_at_max_tokens(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model=MODEL, max_tokens=3, messages=user("count: 10"))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3
    assert message.content[0].type == "text"
    assert message.content[0].text.split() == ["1", "2", "3"]


def test_create_stops_at_stop_sequence(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=50,
        stop_sequences=["STOP"],
        messages=user("say: alpha beta STOP gamma"),
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert message.content[0].type == "text"
    assert message.content[0].text == "alpha beta "


def test_create_with_system_and_prefill(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=50,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "say: fine"}]},
            {"role": "assistant", "content": "Well,"},
        ],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "fine"
    with_system = sdk.messages.count_tokens(
        model=MODEL, system="You are terse.", messages=user("say: fine")
    )
    without = sdk.messages.count_tokens(model=MODEL, messages=user("say: fine"))
    assert with_system.input_tokens > without.input_tokens


# --- streaming ---------------------------------------------------------------------


def test_stream_helper_text_matches_final_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=50, messages=user("count: 6")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        assert_request_id(stream.response.headers.get("request-id"))
    assert len(texts) == 6  # one text_delta per scripted token
    assert final.content[0].type == "text"
    assert "".join(texts) == final.content[0].text == "1 2 3 4 5 6"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6
    counted = sdk.messages.count_tokens(model=MODEL, messages=user("count: 6"))
    assert final.usage.input_tokens == counted.input_tokens == 2


def test_stream_helper_stopped_by_max_tokens(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=4, messages=user("count: 20")) as stream:
        text = stream.get_final_text()
        final = stream.get_final_message()
    assert text.split() == ["1", "2", "3", "4"]
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 4


def test_stream_helper_stop_sequence(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=50,
        stop_sequences=["END", "gamma"],
        messages=user("say: alpha beta gamma delta"),
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "alpha beta "  # no part of the stop sequence leaks out
    assert final.stop_reason == "stop_sequence"
    assert final.stop_sequence == "gamma"


def test_raw_stream_events_in_documented_order(sdk: anthropic.Anthropic) -> None:
    stream = sdk.messages.create(
        model=MODEL, max_tokens=50, messages=user("say: one two three"), stream=True
    )
    events = list(stream)
    types = [e.type for e in events]
    event_types_in_documented_order(types)

    start = events[0]
    assert start.type == "message_start"
    assert start.message.id.startswith("msg_")
    assert start.message.content == []
    assert start.message.stop_reason is None
    assert start.message.usage.input_tokens == 4  # "<user>say: " "one " "two " "three</user>"

    deltas = [e for e in events if e.type == "content_block_delta"]
    assert all(e.index == 0 for e in deltas)
    assert "".join(e.delta.text for e in deltas if e.delta.type == "text_delta") == (
        "one two three"
    )

    message_delta = events[-2]
    assert message_delta.type == "message_delta"
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens == 3  # cumulative, not an increment
    assert_request_id(stream.response.headers.get("request-id"))


def test_raw_sse_frames_are_named_and_pinged(scripted_server: ParleyProcess) -> None:
    """On the wire: every frame has an `event:` line equal to its data's `type` (§6.1),
    and a ping follows the first content_block_start (§6.2)."""
    headers = {
        "authorization": f"Bearer {scripted_server.api_key}",
        "anthropic-version": "2026-10-21",
        "accept": "application/json",  # what the SDKs send, even when streaming (§1)
    }
    body = {"model": MODEL, "max_tokens": 20, "stream": True, "messages": user("say: a b")}
    with httpx.stream(
        "POST", f"{scripted_server.base_url}/v1/messages", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    frames = [f for f in raw.split("\n\n") if f]
    names = []
    for frame in frames:
        lines = frame.split("\n")
        assert len(lines) == 2, frame
        assert lines[0].startswith("event: "), frame
        assert lines[1].startswith("data: "), frame
        name = lines[0].removeprefix("event: ")
        assert json.loads(lines[1].removeprefix("data: "))["type"] == name
        names.append(name)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-1] == "message_stop"


def test_error_event_mid_stream_raises_api_status_error(sdk: anthropic.Anthropic) -> None:
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(
            model=MODEL, max_tokens=50, messages=user("say: a b c\nfail: overloaded_error")
        ) as stream,
    ):
        received.extend(stream.text_stream)
    err = caught.value
    # Built from the `event: error` frame with the stream's own status (§6.4).
    assert err.status_code == 200
    assert not isinstance(err, anthropic.OverloadedError)
    assert err.type == "overloaded_error"
    assert err.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert received == ["a "]  # the failure comes after the first token
    assert_request_id(err.request_id)


def test_error_event_mid_raw_stream(sdk: anthropic.Anthropic) -> None:
    stream = sdk.messages.create(
        model=MODEL, max_tokens=50, messages=user("fail: api_error"), stream=True
    )
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        seen.extend(event.type for event in stream)
    assert caught.value.type == "api_error"
    assert seen[0] == "message_start"
    assert "message_stop" not in seen


def test_failure_before_any_byte_is_an_http_error(sdk: anthropic.Anthropic) -> None:
    """Not streaming, the scripted failure happens before the response starts,
    so it is an ordinary 529 response."""
    with pytest.raises(anthropic.OverloadedError) as caught:
        sdk.messages.create(model=MODEL, max_tokens=50, messages=user("fail: overloaded_error"))
    assert caught.value.status_code == 529
    assert caught.value.type == "overloaded_error"
    assert_request_id(caught.value.request_id)


# --- count_tokens, models ------------------------------------------------------------


def test_count_tokens_matches_message_usage(sdk: anthropic.Anthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [
        {"role": "user", "content": "say: first answer"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "count: 3"},
    ]
    counted = sdk.messages.count_tokens(model="scripted", messages=messages)
    assert counted.input_tokens > 0
    message = sdk.messages.create(model=MODEL, max_tokens=10, messages=messages)
    assert message.usage.input_tokens == counted.input_tokens
    assert_request_id(counted._request_id)


def test_models_list_auto_paginates(catalog_server: ParleyProcess) -> None:
    with anthropic.Anthropic(
        base_url=catalog_server.base_url, api_key=catalog_server.api_key
    ) as client:
        first = client.models.list(limit=1)
        assert len(first.data) == 1
        assert first.has_more is True
        assert first.first_id == first.last_id == CATALOG_ORDER[0]
        assert [m.id for m in first] == CATALOG_ORDER  # iterating fetches the other pages
        assert len(list(first.iter_pages())) == len(CATALOG_ORDER)  # one request per page

        backwards = client.models.list(limit=1, before_id=CATALOG_ORDER[-1])
        assert [m.id for m in backwards] == CATALOG_ORDER[-2::-1]

        whole = client.models.list(limit=10)
        assert whole.has_more is False
        assert [m.id for m in whole.data] == CATALOG_ORDER


def test_models_retrieve_by_alias(sdk: anthropic.Anthropic) -> None:
    info = sdk.models.retrieve("scripted")
    assert info.id == MODEL
    assert info.type == "model"
    assert info.max_input_tokens == 2048
    assert info.max_tokens == 1024
    assert_request_id(info._request_id)
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.models.retrieve("no-such-model")
    assert caught.value.status_code == 404


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        ({"max_tokens": 5000}, "max_tokens: 5000 > 1024, which is the maximum allowed"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "assistant", "content": "hi"}]},
            'messages: first message must use the "user" role',
        ),
        ({"extra_body": {"bogus": 1}}, "bogus: Extra inputs are not permitted"),
        ({"extra_body": {"max_tokens": None}}, "max_tokens: Input should be a valid integer"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "messages: text content blocks must be non-empty",
        ),
    ],
    ids=["negative", "over-cap", "no-messages", "assistant-first", "extra", "null", "empty"],
)
def test_bad_request(sdk: anthropic.Anthropic, kwargs: dict[str, object], message: str) -> None:
    params: dict[str, object] = {"model": MODEL, "max_tokens": 10, "messages": user("hi")}
    params.update(kwargs)
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(**params)  # type: ignore[call-overload]
    err = caught.value
    assert err.status_code == 400
    assert err.type == "invalid_request_error"
    assert message in (err.api_message or ""), err.api_message
    assert_request_id(err.request_id)
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error"
    assert err.body["request_id"] == err.request_id


@pytest.mark.parametrize(("field", "value"), [("temperature", 0.5), ("top_p", 0.9), ("top_k", 5)])
def test_new_version_refuses_sampling_fields(
    sdk: anthropic.Anthropic, field: str, value: float
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(
            model=MODEL, max_tokens=10, messages=user("hi"), extra_body={field: value}
        )
    assert f"{field}: Extra inputs are not permitted" in str(caught.value)
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.count_tokens(model=MODEL, messages=user("hi"), extra_body={field: value})


def test_bearer_key_with_old_version_header_accepts_temperature(
    scripted_server: ParleyProcess,
) -> None:
    """api-version §19.1: a new SDK pinned to 2023-06-01 sends Bearer with the old version."""
    with anthropic.Anthropic(
        base_url=scripted_server.base_url,
        api_key=scripted_server.api_key,
        default_headers={"anthropic-version": "2023-06-01"},
        max_retries=0,
    ) as client:
        message = client.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=user("say: warm"),
            extra_body={"temperature": 0.5},
        )
        assert message.content[0].type == "text"
        assert message.content[0].text == "warm"
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(
                model=MODEL, max_tokens=10, messages=user("hi"), extra_body={"temperature": 1.5}
            )
        assert "temperature: Input should be less than or equal to 1" in str(caught.value)


def test_authentication_error(scripted_server: ParleyProcess) -> None:
    with (
        anthropic.Anthropic(
            base_url=scripted_server.base_url, api_key="sk-parley-wrong", max_retries=0
        ) as client,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    err = caught.value
    assert err.status_code == 401
    assert err.type == "authentication_error"
    assert err.api_message == "invalid x-api-key"
    assert_request_id(err.request_id)


def test_not_found_error(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.create(model="no-such-model", max_tokens=10, messages=user("hi"))
    err = caught.value
    assert err.status_code == 404
    assert err.type == "not_found_error"
    assert err.api_message == "model: no-such-model"
    assert_request_id(err.request_id)
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="no-such-model", messages=user("hi"))


@pytest.fixture
def limited(limits_server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=limits_server.base_url, api_key=limits_server.api_key, max_retries=0
    ) as client:
        yield client


def test_request_too_large(limited: anthropic.Anthropic) -> None:
    big = "x " * LIMITS_MAX_BODY
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        limited.messages.create(model="slow", max_tokens=10, messages=user(big))
    err = caught.value
    assert isinstance(err, anthropic.RequestTooLargeError)  # the old name is an alias
    assert err.status_code == 413
    # The edge 413 has no top-level type (api-spec §12).
    assert err.body == {
        "error": {"type": "request_too_large", "message": "Request exceeds the maximum size"}
    }
    assert_request_id(err.request_id)
    # Just under the limit is fine.
    ok = limited.messages.count_tokens(model="slow", messages=user("x " * 100))
    assert ok.input_tokens > 0


def test_overloaded_when_the_only_slot_is_busy(limited: anthropic.Anthropic) -> None:
    with limited.messages.stream(
        model="slow", max_tokens=200, messages=user("count: 200")
    ) as stream:
        texts = iter(stream.text_stream)
        assert next(texts) == "1 "  # the stream holds the model's only slot now
        with pytest.raises(anthropic.OverloadedError) as caught:
            limited.messages.create(model="slow", max_tokens=5, messages=user("say: hi"))
        err = caught.value
        assert err.status_code == 529
        assert err.type == "overloaded_error"
        assert_request_id(err.request_id)
        with pytest.raises(anthropic.OverloadedError):
            limited.messages.create(
                model="slow", max_tokens=5, messages=user("say: hi"), stream=True
            )
        # Counting tokens needs no slot.
        assert limited.messages.count_tokens(model="slow", messages=user("hi")).input_tokens
    # Closing the stream frees the slot: the server notices the disconnect.
    assert_slot_comes_back(limited)


def test_sdk_retries_a_529_until_the_slot_is_free(limits_server: ParleyProcess) -> None:
    """Default retries (api-spec §13): a 529 is retried with backoff, and succeeds once
    the busy slot frees up."""
    with (
        anthropic.Anthropic(
            base_url=limits_server.base_url, api_key=limits_server.api_key, max_retries=2
        ) as client,
        client.messages.stream(model="slow", max_tokens=10, messages=user("count: 4")) as busy,
    ):
        assert next(iter(busy.text_stream)) == "1 "  # holds the slot for ~0.3 s more
        refused_before = limits_server.logs().count('"POST /v1/messages HTTP/1.1" 529')
        message = client.messages.create(model="slow", max_tokens=5, messages=user("say: hi"))
        assert message.content[0].type == "text"
        assert message.content[0].text == "hi"
        refused_after = limits_server.logs().count('"POST /v1/messages HTTP/1.1" 529')
        assert refused_after > refused_before  # the first attempt really was refused
        assert busy.get_final_text() == "1 2 3 4"


def assert_slot_comes_back(client: anthropic.Anthropic) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            message = client.messages.create(model="slow", max_tokens=5, messages=user("say: hi"))
            break
        except anthropic.OverloadedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert message.content[0].type == "text"
    assert message.content[0].text == "hi"


def test_client_timeout_frees_the_slot_quietly(
    limited: anthropic.Anthropic, limits_server: ParleyProcess
) -> None:
    """A non-streaming client that gives up (SDK timeout) cancels its generation:
    the slot comes back, and the server does not log it as a server error."""
    with pytest.raises(anthropic.APITimeoutError):
        limited.with_options(timeout=0.5).messages.create(
            model="slow", max_tokens=200, messages=user("count: 200")
        )
    assert_slot_comes_back(limited)
    logs = limits_server.logs()
    assert "Traceback" not in logs, logs
    assert "ERROR" not in logs, logs


# --- the async client ----------------------------------------------------------------


async def test_async_client_round_trip(scripted_server: ParleyProcess) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:
        message = await client.messages.create(
            model=MODEL, max_tokens=20, messages=user("say: async hello")
        )
        assert message.content[0].type == "text"
        assert message.content[0].text == "async hello"
        assert_request_id(message._request_id)

        async with client.messages.stream(
            model=MODEL, max_tokens=20, messages=user("count: 5")
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        assert final.content[0].type == "text"
        assert "".join(texts) == final.content[0].text == "1 2 3 4 5"
        assert final.stop_reason == "end_turn"
        assert final.usage.output_tokens == 5

        raw = await client.messages.create(
            model=MODEL, max_tokens=2, messages=user("count: 5"), stream=True
        )
        types = [event.type async for event in raw]
        event_types_in_documented_order(types)

        counted = await client.messages.count_tokens(model=MODEL, messages=user("count: 5"))
        assert counted.input_tokens == final.usage.input_tokens

        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(model="nope", max_tokens=5, messages=user("hi"))
        with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs"):
            await client.messages.create(
                model=MODEL, max_tokens=5, messages=user("hi"), extra_body={"temperature": 0.5}
            )


async def test_async_concurrent_streams_interleave(scripted_server: ParleyProcess) -> None:
    """The scripted server has two slots: two streams run at once, not one after the other."""
    async with anthropic.AsyncAnthropic(
        base_url=scripted_server.base_url, api_key=scripted_server.api_key, max_retries=0
    ) as client:

        async def run(text: str) -> tuple[str, float]:
            started = time.monotonic()
            async with client.messages.stream(
                model=MODEL, max_tokens=50, messages=user(text)
            ) as stream:
                final = await stream.get_final_text()
            return final, time.monotonic() - started

        (a, took_a), (b, took_b) = await asyncio.gather(run("count: 30"), run("say: x y z"))
        assert a == " ".join(str(i) for i in range(1, 31))
        assert b == "x y z"
        # 30 tokens at 10 ms each: the short stream must not wait for the long one.
        assert took_b < took_a


async def test_async_models_list(catalog_server: ParleyProcess) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=catalog_server.base_url, api_key=catalog_server.api_key
    ) as client:
        ids = [m.id async for m in client.models.list(limit=1)]
        assert ids == CATALOG_ORDER
        info = await client.models.retrieve("cat-c")
        assert info.id == "cat-charlie"
        assert info.created_at.year == 2025
