"""Drive a Parley server with the 0.x Python SDK (anthropic 0.121: anthropic-version
2023-06-01, X-Api-Key) and print what happened as one JSON object.

Not a test: tests/e2e/test_python_sdk0.py runs it in a subprocess with
PYTHONPATH pointing at the 0.x SDK, because the venv holds the newest SDK.

    python sdk0_client.py BASE_URL API_KEY MODEL [--list-limit N] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import anthropic


def error_info(exc: BaseException) -> dict[str, Any]:
    info: dict[str, Any] = {"class": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, anthropic.APIStatusError):
        info.update(status=exc.status_code, request_id=exc.request_id, body=exc.body)
    return info


def usage(message: Any) -> dict[str, int]:
    return {
        "input_tokens": message.usage.input_tokens,
        "output_tokens": message.usage.output_tokens,
    }


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("model")
    parser.add_argument("--list-limit", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    client = anthropic.Anthropic(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    model = args.model

    def create_with_temperature() -> dict[str, Any]:
        message = client.messages.create(
            model=model,
            max_tokens=args.max_tokens,
            temperature=0.0,
            messages=[{"role": "user", "content": "say: old client"}],
        )
        return {
            "id": message.id,
            "model": message.model,
            "text": text_of(message),
            "stop_reason": message.stop_reason,
            "usage": usage(message),
            "request_id": message._request_id,
        }

    def stream() -> dict[str, Any]:
        with client.messages.stream(
            model=model,
            max_tokens=args.max_tokens,
            messages=[{"role": "user", "content": "count: 7"}],
        ) as s:
            texts = list(s.text_stream)
            final = s.get_final_message()
        return {
            "texts": texts,
            "final_text": text_of(final),
            "stop_reason": final.stop_reason,
            "usage": usage(final),
        }

    def raw_stream() -> dict[str, Any]:
        events = client.messages.create(
            model=model,
            max_tokens=args.max_tokens,
            messages=[{"role": "user", "content": "say: x y"}],
            stream=True,
        )
        return {"types": [event.type for event in events]}

    def count_tokens() -> dict[str, Any]:
        counted = client.messages.count_tokens(
            model=model, messages=[{"role": "user", "content": "count: 7"}]
        )
        return {"input_tokens": counted.input_tokens}

    def models_list() -> dict[str, Any]:
        first = client.models.list(limit=args.list_limit)
        return {
            "first_page": [m.id for m in first.data],
            "has_more": first.has_more,
            "all": [m.id for m in first],
            "pages": len(list(first.iter_pages())),
        }

    def models_retrieve() -> dict[str, Any]:
        return {"id": client.models.retrieve(model).id}

    def not_found() -> dict[str, Any]:
        client.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        return {}

    def authentication() -> dict[str, Any]:
        with anthropic.Anthropic(
            base_url=args.base_url, api_key="sk-parley-wrong", max_retries=0
        ) as bad:
            bad.models.list()
        return {}

    def temperature_too_high() -> dict[str, Any]:
        client.messages.create(
            model=model,
            max_tokens=5,
            temperature=1.5,
            messages=[{"role": "user", "content": "hi"}],
        )
        return {}

    def error_mid_stream() -> dict[str, Any]:
        received: list[str] = []
        with client.messages.stream(
            model=model,
            max_tokens=args.max_tokens,
            messages=[{"role": "user", "content": "say: a b\nfail: overloaded_error"}],
        ) as s:
            received.extend(s.text_stream)
        return {"received": received}

    cases: dict[str, Callable[[], dict[str, Any]]] = {
        "create": create_with_temperature,
        "stream": stream,
        "raw_stream": raw_stream,
        "count_tokens": count_tokens,
        "models_list": models_list,
        "models_retrieve": models_retrieve,
        "not_found": not_found,
        "authentication": authentication,
        "temperature_too_high": temperature_too_high,
        "error_mid_stream": error_mid_stream,
    }
    results: dict[str, Any] = {"sdk_version": anthropic.__version__}
    for name, case in cases.items():
        if args.only is not None and name not in args.only:
            continue
        try:
            results[name] = {"ok": True, **case()}
        except Exception as exc:  # reported, not raised: the test asserts on it
            results[name] = {"ok": False, "error": error_info(exc)}
    client.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
