"""Parse a JSON request body into a protocol model, with the API's error wording.

Whatever a client sends, decoding ends in a value the rest of Parley can use or in
the API's 400 for invalid JSON, never in an exception of the parser's own:
- nesting deeper than `MAX_DEPTH` is refused (CPython's parser would otherwise raise
  RecursionError near 1,000 levels, and later stages recurse too);
- integer literals past CPython's digit limit (4,300) are invalid JSON here;
- `NaN` and `Infinity`, which the stdlib accepts, are not JSON and are refused;
- an escaped lone surrogate (`"\\ud800"`, what a JavaScript client produces by
  slicing an emoji in half) is legal JSON text but no Unicode character: it is
  replaced by U+FFFD, as a lenient UTF-8 decoder would, so that the request still
  works and nothing downstream (tokenizers, UTF-8 encoding, the store) meets it.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from parley.core.betas import check_beta_fields
from parley.core.threads import thread_unsupported_request, unthreadable_blocks
from parley.core.validation_errors import invalid_request_from
from parley.core.versions import APIVersion
from parley.errors import InvalidRequestError
from parley.protocol.content import DocumentBlockParam, TextBlockParam
from parley.protocol.requests import SAMPLING_FIELDS, MessageParam

M = TypeVar("M", bound=BaseModel)

# Levels of arrays and objects a body may nest (serde_json's default limit).
MAX_DEPTH = 128

# The escape of a UTF-16 surrogate, paired or not; only bodies holding one are walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def parse_error(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"There was an error parsing the body: {detail}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name}")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def raw_decode(text: str, pos: int) -> tuple[Any, int]:
    """`json.JSONDecoder.raw_decode` that fails only with JSONDecodeError (for the
    incremental batch reader); the value still needs `clean()`."""
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(_detail(exc), text, pos) from None


def _detail(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"nesting is deeper than {MAX_DEPTH} levels"
    return str(exc).split(";")[0]  # the digit-limit message names a sys call: not for clients


def clean(value: Any, surrogates: bool = True) -> Any:
    """`value` with lone surrogates replaced; raises InvalidRequestError past MAX_DEPTH.
    `surrogates=False` skips the string rewrite (the raw text held none)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            items: Any = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        if depth > MAX_DEPTH:
            raise parse_error(f"nesting is deeper than {MAX_DEPTH} levels")
        for name, child in items:
            if surrogates and isinstance(child, str):
                node[name] = _replace_surrogates(child)
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1))
        if surrogates and isinstance(node, dict) and any(_has_surrogate(k) for k in node):
            renamed = {_replace_surrogates(k): v for k, v in node.items()}
            node.clear()
            node.update(renamed)
    if surrogates and isinstance(value, str):
        return _replace_surrogates(value)
    return value


def _has_surrogate(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def _replace_surrogates(text: str) -> str:
    return _LONE_SURROGATE.sub(REPLACEMENT, text)


def may_hold_surrogates(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return _SURROGATE_ESCAPE_TEXT.search(raw) is not None
    return _SURROGATE_ESCAPE.search(raw) is not None


def decode_json(raw: bytes) -> Any:
    # api-spec §1: the Python SDK sends Content-Type: application/json with an empty
    # body on body-less POSTs; an empty body is an empty object, not malformed JSON.
    if not raw.strip():
        return {}
    try:
        value = _DECODER.decode(raw.decode(json.detect_encoding(raw)))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise parse_error(_detail(exc)) from None
    return clean(value, may_hold_surrogates(raw))


def parse_params(
    raw: bytes, model: type[M], version: APIVersion, betas: frozenset[str] | None = None
) -> M:
    """`betas`: the request's `anthropic-beta` values, which let beta fields in; None
    when there is no header to go by (a batch request's params, checked later)."""
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequestError("Input should be a valid dictionary or object")
    if betas is not None:
        check_beta_fields(data, betas)
    if version.refuses_sampling:
        # api-version §19.4: under 2026-10-21 these fields are gone; any presence is a 400.
        for name in SAMPLING_FIELDS:
            if name in data:
                raise InvalidRequestError(f"{name}: Extra inputs are not permitted")
    # Blocks this server does not read, in a request that asks for a thread: named the
    # way the threads beta names what it cannot thread, so the SDKs' tool runner resends
    # the turn without one (message-threads doc §1.5).
    unsupported = unthreadable_blocks(data) if "thread" in model.model_fields else []
    if unsupported:
        raise thread_unsupported_request(unsupported)
    try:
        params = model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
    messages = getattr(params, "messages", None)
    if version.refuses_sampling and isinstance(messages, list):
        check_2026_content(messages)
    return params


def check_2026_content(messages: list[MessageParam]) -> None:
    """api-version §19.4: under 2026-10-21 a document may not sit directly in an
    assistant turn, and text in a user turn may not carry citations (both 400s;
    wording unconfirmed)."""
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            continue
        for j, block in enumerate(message.content):
            if message.role == "assistant" and isinstance(block, DocumentBlockParam):
                raise InvalidRequestError(
                    f"messages.{i}.content.{j}: document blocks are not allowed in assistant "
                    "messages; put the document in a user message"
                )
            if message.role == "user" and isinstance(block, TextBlockParam) and block.citations:
                raise InvalidRequestError(
                    f"messages.{i}.content.{j}.text.citations: text blocks in user messages "
                    "cannot carry citations"
                )
