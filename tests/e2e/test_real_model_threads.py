"""Message threads on the real embedded model (SmolLM2 135M through llama.cpp), through
the newest Python SDK's own helpers with their default threading: the tool runner's
loop runs as a thread, and a continued turn is given exactly the prompt of the
equivalent full-conversation request (same tokens as count_tokens says, and as an
unthreaded request gets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest
from anthropic import beta_tool

from tests.e2e.test_threads_sdk import Recorder, only_tool_results
from tests.serverproc import ParleyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.model]

MODEL = "smollm2-135m-instruct"
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 30}},
    "required": ["city"],
}


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def sdk(model_server: ParleyProcess, recorder: Recorder) -> Iterator[anthropic.Anthropic]:
    http_client = anthropic.DefaultHttpxClient(event_hooks={"request": [recorder]})
    with anthropic.Anthropic(
        base_url=model_server.base_url,
        api_key=model_server.api_key,
        max_retries=0,
        http_client=http_client,
    ) as client:
        yield client


def count_tokens(sdk: anthropic.Anthropic, body: dict[str, Any]) -> int:
    fields = ("model", "messages", "system", "tools", "tool_choice")
    counted = sdk.messages.count_tokens(**{k: v for k, v in body.items() if k in fields})
    return counted.input_tokens


def test_tool_runner_two_steps_on_the_real_model(
    sdk: anthropic.Anthropic, recorder: Recorder
) -> None:
    """The runner with its default (threaded) arguments: a forced call, the tool's
    result sent as a `continue` carrying only that result, and a second reply on the
    whole conversation. The small model calls tools only when told to, and the choice
    is fixed for a thread, so the loop is bounded by `max_iterations`."""
    recorder.clear()
    calls: list[str] = []

    @beta_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city.

        Args:
            city: The city name.
        """
        calls.append(city)
        return f"It is sunny and 21 degrees in {city}."

    runner = sdk.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=60,
        system="You are a weather assistant.",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[get_weather],
        tool_choice={"type": "tool", "name": "get_weather"},
        max_iterations=2,
    )
    replies = list(runner)
    assert len(replies) == 2
    for reply in replies:
        assert reply.stop_reason == "tool_use"
        [call] = reply.content
        assert isinstance(call, anthropic.types.beta.BetaToolUseBlock)
        jsonschema.validate(call.input, CITY_SCHEMA)
    assert len(calls) >= 1
    create, resume = recorder.bodies
    assert (create["thread"], resume["thread"]["type"]) == ({"type": "create"}, "continue")
    assert resume["thread"]["previous_message_id"] == replies[0].id
    assert "system" not in resume
    assert "tools" not in resume
    assert only_tool_results(resume)

    # The continue ran on exactly the prompt of the full conversation.
    whole = {
        **create,
        "messages": [
            *create["messages"],
            {"role": "assistant", "content": [b.model_dump() for b in replies[0].content]},
            *resume["messages"],
        ],
    }
    assert replies[1].usage.input_tokens == count_tokens(sdk, whole)
    unthreaded = sdk.beta.messages.create(
        **{k: v for k, v in whole.items() if k not in ("thread", "stream")}
    )
    assert unthreaded.usage.input_tokens == replies[1].usage.input_tokens


def test_thread_turns_see_the_whole_conversation(
    sdk: anthropic.Anthropic, model_server: ParleyProcess
) -> None:
    thread = sdk.beta.messages.thread(
        model=MODEL, max_tokens=12, system="Answer in one short sentence."
    )
    first = thread.send({"role": "user", "content": "Name a colour."})
    second = thread.send({"role": "user", "content": "Name another one."})
    with thread.stream({"role": "user", "content": "And a third?"}) as stream:
        third = stream.get_final_message()
    whole = {
        "model": MODEL,
        "system": "Answer in one short sentence.",
        "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": "Name another one."},
            {"role": "assistant", "content": [b.model_dump() for b in second.content]},
            {"role": "user", "content": "And a third?"},
        ],
    }
    assert third.usage.input_tokens == count_tokens(sdk, whole)
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    # The same turn sent raw as a continue of a reply already continued is refused.
    again = httpx.post(
        f"{model_server.base_url}/v1/messages",
        headers={
            "x-api-key": model_server.api_key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "message-threads-2026-08-12",
        },
        json={
            "model": MODEL,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "Hi"}],
            "thread": {"type": "continue", "previous_message_id": first.id},
        },
        timeout=60,
    )
    assert again.status_code == 400
    assert json.loads(again.text)["error"]["details"]["error_code"] == "thread_already_continued"
