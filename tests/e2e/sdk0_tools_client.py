"""Drive tool use and images on a Parley server with the 0.x Python SDK (anthropic
0.121) and print what happened as one JSON object.

Not a test: tests/e2e/test_tools_sdk.py runs it in a subprocess with PYTHONPATH
pointing at the 0.x SDK, because the venv holds the newest SDK.

    python sdk0_tools_client.py BASE_URL API_KEY TEXT_MODEL VISION_MODEL
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import zlib
from typing import Any

import anthropic

WEATHER = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    base_url, api_key, text_model, vision_model = sys.argv[1:5]
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)
    results: dict[str, Any] = {"sdk_version": anthropic.__version__}

    messages: list[Any] = [
        {"role": "user", "content": 'tool: get_weather {"city": "Oslo", "unit": "celsius"}'}
    ]
    first = client.messages.create(
        model=text_model, max_tokens=100, messages=messages, tools=[WEATHER], temperature=0
    )
    call = first.content[0]
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "-3 C"}],
        },
    ]
    final = client.messages.create(
        model=text_model, max_tokens=100, messages=messages, tools=[WEATHER]
    )
    results["loop"] = {
        "first_stop": first.stop_reason,
        "call": {"id": call.id, "name": call.name, "input": call.input},
        "final_text": final.content[0].text,
        "final_stop": final.stop_reason,
    }

    prompt = [{"role": "user", "content": 'tool: get_weather {"city": "Lima", "unit": "celsius"}'}]
    with client.messages.stream(
        model=text_model, max_tokens=100, messages=prompt, tools=[WEATHER]
    ) as stream:
        fragments = [e.partial_json for e in stream if e.type == "input_json"]
        streamed = stream.get_final_message()
    raw = client.messages.create(
        model=text_model, max_tokens=100, messages=prompt, tools=[WEATHER], stream=True
    )
    results["stream"] = {
        "fragments": fragments,
        "final_input": streamed.content[0].input,
        "raw_types": [event.type for event in raw],
    }

    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(png(8, 8)).decode(),
        },
    }
    picture = [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]
    seen = client.messages.create(model=vision_model, max_tokens=50, messages=picture)
    results["image"] = {"text": seen.content[0].text}
    try:
        client.messages.create(model=text_model, max_tokens=50, messages=picture)
        results["image_refused"] = {"status": 200}
    except anthropic.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        results["image_refused"] = {
            "status": exc.status_code,
            "message": body.get("error", {}).get("message"),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
