"""Tool use and images through the official Python SDKs against a real `parley serve`
on the scripted engine: the newest SDK (2.x) in-process, the 0.x SDK in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import beta_tool

from tests.e2e.test_python_sdk0 import SDK0_PATH, SDK0_VERSION
from tests.images import b64, image_block, png
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

TEXT_MODEL = "scripted-1"
VISION_MODEL = "vision-1"
CONFIG = f"""
[[models]]
id = "{TEXT_MODEL}"
engine = "scripted"
slots = 2

[[models]]
id = "{VISION_MODEL}"
engine = "scripted"
slots = 2
images = true
"""
SCRIPT = Path(__file__).with_name("sdk0_tools_client.py")

WEATHER: anthropic.types.ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    process = ParleyProcess(tmp_path_factory.mktemp("tools"), config=CONFIG)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sdk(server: ParleyProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=server.base_url, api_key=server.api_key, max_retries=0
    ) as client:
        yield client


def user(text: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


def test_tool_call_then_result_then_answer(sdk: anthropic.Anthropic) -> None:
    messages = user(
        'say: Checking the weather.\ntool: get_weather {"city": "Oslo", "unit": "celsius"}'
    )
    first = sdk.messages.create(
        model=TEXT_MODEL, max_tokens=100, messages=messages, tools=[WEATHER]
    )
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use"]
    call = first.content[1]
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert call.id.startswith("toolu_")
    assert (call.name, call.input) == ("get_weather", {"city": "Oslo", "unit": "celsius"})

    # The client runs the tool and sends its result back with the conversation so far.
    messages = [
        *messages,
        first.to_param(),  # the assistant turn exactly as returned (api-version §19.6)
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "-3 C, snow"}],
        },
    ]
    final = sdk.messages.create(
        model=TEXT_MODEL, max_tokens=100, messages=messages, tools=[WEATHER]
    )
    assert final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "Echo: -3 C, snow"  # type: ignore[union-attr]


def test_stream_helper_accumulates_the_tool_input(sdk: anthropic.Anthropic) -> None:
    prompt = 'tool: get_weather {"city": "São Paulo", "unit": "fahrenheit"}'
    with sdk.messages.stream(
        model=TEXT_MODEL, max_tokens=100, messages=user(prompt), tools=[WEATHER]
    ) as stream:
        fragments = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert len(fragments) > 2
    assert json.loads("".join(fragments)) == {"city": "São Paulo", "unit": "fahrenheit"}
    call = final.content[0]
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert call.input == {"city": "São Paulo", "unit": "fahrenheit"}
    assert final.stop_reason == "tool_use"
    plain = sdk.messages.create(
        model=TEXT_MODEL, max_tokens=100, messages=user(prompt), tools=[WEATHER]
    )
    assert plain.content[0].input == call.input  # type: ignore[union-attr]
    assert plain.usage.output_tokens == final.usage.output_tokens


def test_forced_tool_choice(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model=TEXT_MODEL,
        max_tokens=100,
        messages=user("How cold is it?"),
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    [call] = message.content
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert call.input == {"city": "", "unit": "celsius"}  # the smallest valid input


def test_tool_runner_helper_runs_the_loop(sdk: anthropic.Anthropic) -> None:
    calls: list[dict[str, str]] = []

    @beta_tool
    def get_weather(city: str, unit: str) -> str:
        """Current weather for a city.

        Args:
            city: The city.
            unit: celsius or fahrenheit.
        """
        calls.append({"city": city, "unit": unit})
        return f"21 degrees {unit} in {city}"

    runner = sdk.beta.messages.tool_runner(
        model=TEXT_MODEL,
        max_tokens=100,
        messages=user('tool: get_weather {"city": "Rome", "unit": "celsius"}'),
        tools=[get_weather],
    )
    final = runner.until_done()
    assert calls == [{"city": "Rome", "unit": "celsius"}]
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "Echo: 21 degrees celsius in Rome"  # type: ignore[union-attr]


def test_pairing_error_reaches_the_sdk(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(
            model=TEXT_MODEL,
            max_tokens=10,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {}}
                    ],
                },
                {"role": "user", "content": "never mind"},
            ],
        )
    assert caught.value.message.startswith("Error code: 400")
    assert "messages.1: `tool_use` ids were found without `tool_result` blocks" in str(
        caught.value.body
    )


# --- images -----------------------------------------------------------------------------


def picture(data: bytes, media_type: str, text: str = "What is this?") -> list[Any]:
    return [
        {"role": "user", "content": [image_block(data, media_type), {"type": "text", "text": text}]}
    ]


def bad_request(sdk: anthropic.Anthropic, model: str, messages: list[Any]) -> str:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(model=model, max_tokens=10, messages=messages)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    message: str = body["error"]["message"]
    return message


def test_image_to_a_model_that_reads_images(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model=VISION_MODEL, max_tokens=50, messages=picture(png(64, 48), "image/png")
    )
    assert message.content[0].text == "Echo: [image/png 64x48] What is this?"  # type: ignore[union-attr]


def test_image_errors(sdk: anthropic.Anthropic) -> None:
    assert bad_request(sdk, TEXT_MODEL, picture(png(4, 4), "image/png")) == (
        f"messages.0.content.0: model {TEXT_MODEL} does not support image input."
    )
    assert bad_request(sdk, VISION_MODEL, picture(png(4, 4), "image/gif")) == (
        "messages.0.content.0.image.source.base64: The image was specified using the "
        "image/gif media type, but the image appears to be a image/png image"
    )
    big = png(4, 4) + b"\x00" * (4 * 1024 * 1024)
    assert bad_request(sdk, VISION_MODEL, picture(big, "image/png")) == (
        "messages.0.content.0.image.source.base64.data: image exceeds 5 MB maximum: "
        f"{len(b64(big))} bytes > 5242880 bytes"
    )
    url = [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
            ],
        }
    ]
    assert bad_request(sdk, VISION_MODEL, url) == (
        "messages.0.content.0.image.source.url: this server does not fetch images from URLs; "
        "send the image as a base64 source instead"
    )


def test_models_report_capabilities(sdk: anthropic.Anthropic) -> None:
    models = {m.id: m for m in sdk.models.list()}
    assert models[VISION_MODEL].capabilities.image_input.supported is True  # type: ignore[union-attr]
    assert models[TEXT_MODEL].capabilities.image_input.supported is False  # type: ignore[union-attr]


# --- the 0.x SDK ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk0(server: ParleyProcess) -> dict[str, Any]:
    if not (SDK0_PATH / "anthropic").is_dir():
        pytest.fail(f"the 0.x SDK is not installed in {SDK0_PATH} (run `make install`)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHONPATH"] = str(SDK0_PATH)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), server.base_url, server.api_key, TEXT_MODEL, VISION_MODEL],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    assert results["sdk_version"] == SDK0_VERSION
    return results


def test_old_sdk_tool_loop(sdk0: dict[str, Any]) -> None:
    loop = sdk0["loop"]
    assert loop["first_stop"] == "tool_use"
    assert loop["call"]["name"] == "get_weather"
    assert loop["call"]["input"] == {"city": "Oslo", "unit": "celsius"}
    assert loop["call"]["id"].startswith("toolu_")
    assert loop["final_text"] == "Echo: -3 C"
    assert loop["final_stop"] == "end_turn"


def test_old_sdk_streamed_tool_input(sdk0: dict[str, Any]) -> None:
    stream = sdk0["stream"]
    assert len(stream["fragments"]) > 2
    assert json.loads("".join(stream["fragments"])) == stream["final_input"]
    assert stream["final_input"] == {"city": "Lima", "unit": "celsius"}
    assert stream["raw_types"][:2] == ["message_start", "content_block_start"]
    assert stream["raw_types"][-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_old_sdk_images(sdk0: dict[str, Any]) -> None:
    assert sdk0["image"]["text"] == "Echo: [image/png 8x8] What is this?"
    assert sdk0["image_refused"]["status"] == 400
    assert sdk0["image_refused"]["message"] == (
        f"messages.0.content.0: model {TEXT_MODEL} does not support image input."
    )
