"""POST /v1/messages semantics through the scripted engine (api-spec §5, §8).

The scripted engine's tokens are whitespace-delimited words, each carrying its
trailing whitespace, so `count: 3` replies "1 ", "2 ", "3".
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL


def params(*content: Any, **overrides: Any) -> dict[str, Any]:
    """A body whose messages alternate user/assistant, starting with user."""
    roles = ["user", "assistant"]
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [{"role": roles[i % 2], "content": c} for i, c in enumerate(content)],
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    message: dict[str, Any] = response.json()
    return message


async def count(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    counted = {k: v for k, v in body.items() if k in ("model", "messages", "system")}
    response = await client.post("/v1/messages/count_tokens", json=counted)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"input_tokens"}
    tokens: int = response.json()["input_tokens"]
    return tokens


def text_of(message: dict[str, Any]) -> str:
    assert [block["type"] for block in message["content"]] == ["text"]
    text: str = message["content"][0]["text"]
    return text


async def test_message_shape(client: httpx.AsyncClient) -> None:
    message = await create(client, params("say: Hello there"))
    assert re.fullmatch(r"msg_[0-9A-Za-z]{24}", message["id"])
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == SCRIPTED_MODEL
    assert message["content"] == [{"type": "text", "text": "Hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    assert message["usage"]["output_tokens"] == 2
    assert message["usage"]["input_tokens"] > 0


async def test_message_ids_are_unique(client: httpx.AsyncClient) -> None:
    first = await create(client, params("hi"))
    second = await create(client, params("hi"))
    assert first["id"] != second["id"]


async def test_usage_carries_zero_cache_counts(client: httpx.AsyncClient) -> None:
    usage = (await create(client, params("hi")))["usage"]
    assert usage["cache_creation_input_tokens"] == 0
    assert usage["cache_read_input_tokens"] == 0
    assert usage["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    assert usage["service_tier"] == "standard"


async def test_default_reply_echoes_the_last_user_turn(client: httpx.AsyncClient) -> None:
    message = await create(client, params("what is up"))
    assert text_of(message) == "Echo: what is up"
    assert message["usage"]["output_tokens"] == 4


async def test_string_and_block_content_are_the_same(client: httpx.AsyncClient) -> None:
    as_string = params("say: same reply")
    as_blocks = params([{"type": "text", "text": "say: same reply"}])
    first, second = await create(client, as_string), await create(client, as_blocks)
    assert text_of(first) == text_of(second) == "same reply"
    assert first["usage"]["input_tokens"] == second["usage"]["input_tokens"]
    assert await count(client, as_string) == await count(client, as_blocks)


async def test_several_text_blocks_in_one_turn(client: httpx.AsyncClient) -> None:
    body = params([{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}])
    assert text_of(await create(client, body)) == "Echo: first part\n\nsecond"


async def test_cache_control_on_blocks_is_accepted(client: httpx.AsyncClient) -> None:
    body = params(
        [
            {
                "type": "text",
                "text": "say: cached",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    )
    message = await create(client, body)
    assert text_of(message) == "cached"
    assert message["usage"]["cache_creation_input_tokens"] == 0


async def test_system_prompt_counts_as_input(client: httpx.AsyncClient) -> None:
    bare = params("say: ok")
    with_string = params("say: ok", system="You are a terse assistant.")
    with_blocks = params(
        "say: ok",
        system=[
            {"type": "text", "text": "You are a"},
            {"type": "text", "text": "terse assistant."},
        ],
    )
    n_bare = await count(client, bare)
    n_string = await count(client, with_string)
    n_blocks = await count(client, with_blocks)
    assert n_string > n_bare
    assert n_blocks > n_bare
    # Joining the blocks adds no words, so the word-token count is the same.
    assert n_blocks == n_string
    message = await create(client, with_string)
    assert text_of(message) == "ok"
    assert message["usage"]["input_tokens"] == n_string


async def test_empty_system_is_no_system(client: httpx.AsyncClient) -> None:
    assert await count(client, params("hi", system="")) == await count(client, params("hi"))
    assert await count(client, params("hi", system=[])) == await count(client, params("hi"))


async def test_consecutive_user_turns_are_merged(client: httpx.AsyncClient) -> None:
    body = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    }
    # The reply echoes the last user turn, which is now both turns joined.
    assert text_of(await create(client, body)) == "Echo: first\n\nsecond"


async def test_consecutive_assistant_turns_are_merged(client: httpx.AsyncClient) -> None:
    body = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "say: merged"},
        ],
    }
    assert text_of(await create(client, body)) == "merged"


async def test_multi_turn_conversation(client: httpx.AsyncClient) -> None:
    body = params("say: first", "first", "say: second")
    assert text_of(await create(client, body)) == "second"
    assert await count(client, body) > await count(client, params("say: second"))


async def test_prefill_is_accepted(client: httpx.AsyncClient) -> None:
    body = params("say: world", "Well, hello there")
    message = await create(client, body)
    # The reply continues the prefill; the prefill itself is not repeated.
    assert text_of(message) == "world"
    assert message["usage"]["input_tokens"] == await count(client, body)
    assert message["usage"]["input_tokens"] > await count(client, params("say: world"))


@pytest.mark.parametrize("prefill", ["", []])
async def test_empty_final_assistant_turn_is_accepted(
    client: httpx.AsyncClient, prefill: object
) -> None:
    message = await create(client, params("say: fine", prefill))
    assert text_of(message) == "fine"


async def test_max_tokens_stop(client: httpx.AsyncClient) -> None:
    message = await create(client, params("count: 50", max_tokens=5))
    assert message["stop_reason"] == "max_tokens"
    assert message["stop_sequence"] is None
    assert message["usage"]["output_tokens"] == 5
    # Each word-token keeps its trailing space, so the fifth one ends with " ".
    assert text_of(message) == "1 2 3 4 5 "


async def test_reply_that_fits_exactly_ends_the_turn(client: httpx.AsyncClient) -> None:
    message = await create(client, params("count: 5", max_tokens=5))
    assert message["stop_reason"] == "end_turn"
    assert text_of(message) == "1 2 3 4 5"
    assert message["usage"]["output_tokens"] == 5


async def test_max_tokens_zero(client: httpx.AsyncClient) -> None:
    body = params("count: 5", max_tokens=0)
    message = await create(client, body)
    assert message["content"] == []
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 0
    assert message["usage"]["input_tokens"] == await count(client, body)


async def test_stop_sequence(client: httpx.AsyncClient) -> None:
    body = params("say: alpha beta STOP gamma", stop_sequences=["STOP"])
    message = await create(client, body)
    assert message["stop_reason"] == "stop_sequence"
    assert message["stop_sequence"] == "STOP"
    assert text_of(message) == "alpha beta "
    assert message["usage"]["output_tokens"] == 3


async def test_stop_sequence_spanning_two_tokens(client: httpx.AsyncClient) -> None:
    body = params("say: alpha beta gamma delta", stop_sequences=["beta gamma"])
    message = await create(client, body)
    assert message["stop_reason"] == "stop_sequence"
    assert message["stop_sequence"] == "beta gamma"
    assert text_of(message) == "alpha "


async def test_stop_sequence_inside_tokens(client: httpx.AsyncClient) -> None:
    body = params("say: alpha beta gamma delta", stop_sequences=["ta gam"])
    message = await create(client, body)
    assert message["stop_sequence"] == "ta gam"
    assert text_of(message) == "alpha be"


async def test_earliest_stop_sequence_wins(client: httpx.AsyncClient) -> None:
    body = params("say: one two three four", stop_sequences=["four", "two", "three"])
    message = await create(client, body)
    assert message["stop_sequence"] == "two"
    assert text_of(message) == "one "


async def test_stop_sequence_at_the_start_gives_no_content(client: httpx.AsyncClient) -> None:
    message = await create(client, params("say: halt now", stop_sequences=["halt"]))
    assert message["stop_reason"] == "stop_sequence"
    assert message["stop_sequence"] == "halt"
    assert message["content"] == []


async def test_unmatched_stop_sequence_prefix_is_not_lost(client: httpx.AsyncClient) -> None:
    # "bet" could start "beta" and is held back until the reply ends, then sent.
    message = await create(client, params("say: alpha bet", stop_sequences=["beta"]))
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    assert text_of(message) == "alpha bet"


async def test_stop_sequence_not_in_the_reply(client: httpx.AsyncClient) -> None:
    message = await create(client, params("count: 3", stop_sequences=["9", "x"]))
    assert message["stop_reason"] == "end_turn"
    assert text_of(message) == "1 2 3"


async def test_max_tokens_before_the_stop_sequence(client: httpx.AsyncClient) -> None:
    message = await create(client, params("count: 10", max_tokens=3, stop_sequences=["5"]))
    assert message["stop_reason"] == "max_tokens"
    assert message["stop_sequence"] is None
    assert text_of(message) == "1 2 3 "


@pytest.mark.parametrize("metadata", [{"user_id": "user-1234"}, {"user_id": None}, {}])
async def test_metadata_is_accepted(client: httpx.AsyncClient, metadata: dict[str, Any]) -> None:
    message = await create(client, params("say: ok", metadata=metadata))
    assert text_of(message) == "ok"


async def test_stream_false_gives_json(client: httpx.AsyncClient) -> None:
    message = await create(client, params("say: plain", stream=False))
    assert text_of(message) == "plain"


async def test_model_echoes_the_requested_alias(client: httpx.AsyncClient) -> None:
    message = await create(client, params("say: ok", model="scripted"))
    assert message["model"] == "scripted"
    assert text_of(message) == "ok"


async def test_count_tokens_matches_usage(client: httpx.AsyncClient) -> None:
    body = params(
        "say: one two",
        "an answer",
        [{"type": "text", "text": "a longer question with several words"}],
        system="Answer well.",
    )
    message = await create(client, body)
    assert message["usage"]["input_tokens"] == await count(client, body)


async def test_count_tokens_by_alias(client: httpx.AsyncClient) -> None:
    body = params("a few words here")
    assert await count(client, body) == await count(client, {**body, "model": "scripted"})


async def test_count_tokens_grows_with_the_prompt(client: httpx.AsyncClient) -> None:
    short = await count(client, params("one"))
    longer = await count(client, params("one two three four"))
    assert longer == short + 3


async def test_engine_failure_is_an_http_error(client: httpx.AsyncClient) -> None:
    # Without streaming, a failure mid-generation is an ordinary error response (§12).
    response = await client.post("/v1/messages", json=params("fail: overloaded_error"))
    assert response.status_code == 529
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": response.headers["request-id"],
    }


@pytest.mark.parametrize(
    ("error_type", "status"),
    [("api_error", 500), ("rate_limit_error", 429), ("invalid_request_error", 400)],
)
async def test_scripted_failures_map_to_statuses(
    client: httpx.AsyncClient, error_type: str, status: int
) -> None:
    response = await client.post("/v1/messages", json=params(f"fail: {error_type}"))
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type


async def test_failure_does_not_leak_the_slot(client: httpx.AsyncClient) -> None:
    # The scripted model has one slot and a queue of two: a leaked slot would show up
    # as later requests hanging or being refused.
    for _ in range(4):
        response = await client.post("/v1/messages", json=params("fail: overloaded_error"))
        assert response.status_code == 529
    assert text_of(await create(client, params("say: still serving"))) == "still serving"
