"""Hypothesis strategies for hostile requests to every route Parley serves.

Bodies are built as JSON *text*, so that they can hold what a Python value cannot:
escaped lone surrogates, integers past CPython's digit limit, `NaN`, nesting deeper
than the parser's recursion limit. Each strategy mixes valid requests, valid ones
with one part replaced by something hostile, and plain garbage, because the bugs
live where almost-valid input reaches deeper code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

MODEL = "scripted-1"


class Raw(str):
    """JSON text placed into a body verbatim."""


def dumps(value: Any) -> bytes:
    return _dump(value).encode("utf-8", "surrogatepass")


def _dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dump(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int, inner: str = "1") -> Raw:
    return Raw("[" * depth + inner + "]" * depth)


def nested_objects(depth: int) -> Raw:
    return Raw('{"a":' * depth + "1" + "}" * depth)


# -- hostile scalars ------------------------------------------------------------------

SURROGATES = [Raw('"hi \\ud800"'), Raw('"\\udfff"'), Raw('"\\ud83d"'), Raw('"a\\ud800b\\ud800"')]
HUGE_NUMBERS = [
    Raw("9" * 5000),
    Raw("-" + "9" * 4301),
    Raw("1e999"),
    Raw("-1e999"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("1" + "0" * 400),
    Raw("0.000000000000000000000000000001"),
    Raw("-0"),
]
DEEP = [nested(d) for d in (64, 127, 128, 129, 300, 1000, 3000)] + [
    nested_objects(d) for d in (127, 129, 1000)
]
KEY_SHAPED = ["sk-ant-api03-" + "A" * 40, "sk-parley-" + "B" * 43]
NASTY_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "%00",
    "../../../etc/passwd",
    "' OR 1=1 --",
    "\\",
    "\u202e\ufeff",
    "a" * 257,
    "a" * 5000,
    "x" * 70,
    "msgbatch_" + "\x00",
    "apikey_01" + "0" * 22,
    "\U0001f600" * 10,
    *KEY_SHAPED,
]
DATES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999+14:00",
    "1970-01-01T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "2025-01-01T00:00:00",
    "2025-01-01",
    "yesterday",
    "1e9",
]

texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40))
# What broke before, on purpose and often: lone surrogates, huge numbers, deep nesting.
KNOWN_HOSTILE = [*SURROGATES, *HUGE_NUMBERS, *DEEP, "\x00", "a\x00b", "a" * 257]
numbers = st.one_of(
    st.sampled_from(HUGE_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(texts, numbers, st.sampled_from(SURROGATES), st.none(), st.booleans())
hostile = st.one_of(st.sampled_from(KNOWN_HOSTILE), scalars, st.just([]), st.just({}))
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(texts, st.sampled_from(SURROGATES)), inner, max_size=4)
    ),
    max_leaves=12,
)


# -- request bodies ---------------------------------------------------------------------

DIRECTIVES = st.one_of(
    st.builds(lambda v: f"count: {v}", st.one_of(texts, st.integers(-5, 10**12).map(str))),
    st.builds(lambda v: f"say: {v}", texts),
    st.builds(lambda v: f"tool: {v}", texts),
    st.builds(lambda v: f"fail: {v}", st.sampled_from(["overloaded_error", "api_error", "x"])),
    st.just("hello"),
    st.sampled_from(SURROGATES),
)

TOOL = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@st.composite
def message_body(draw: st.DrawFn, *, count_tokens: bool = False) -> dict[str, Any]:
    """A valid /v1/messages (or count_tokens) body, with parts replaced at random."""
    content: Any = draw(DIRECTIVES)
    if draw(st.booleans()):
        content = [{"type": "text", "text": content}]
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
    }
    if not count_tokens:
        body["max_tokens"] = draw(st.sampled_from([1, 5, 50]))
    if draw(st.booleans()):
        body["tools"] = [dict(TOOL)]
        body["tool_choice"] = draw(
            st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}])
        )
    if not count_tokens and draw(st.booleans()):
        body["stream"] = True
    for _ in range(draw(st.integers(0, 3))):
        _mutate(draw, body)
    return body


_PATHS = [
    ("model",),
    ("max_tokens",),
    ("messages",),
    ("messages", 0),
    ("messages", 0, "role"),
    ("messages", 0, "content"),
    ("system",),
    ("temperature",),
    ("top_k",),
    ("top_p",),
    ("stop_sequences",),
    ("metadata",),
    ("metadata", "user_id"),
    ("tools",),
    ("tool_choice",),
    ("thinking",),
    ("stream",),
    ("unknown_field",),
    ("tools", 0, "input_schema"),
    ("tools", 0, "input_schema", "properties"),
    ("tools", 0, "name"),
]

_BLOCKS = [
    {"type": "text", "text": "x"},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
    {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:1/x.png"}},
    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"},
    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
    {"type": "thinking", "thinking": "t", "signature": "s"},
]

_SCHEMAS = [
    {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]},
    {"$ref": "#", "type": "object"},
    {"type": "object", "properties": {"a": {"type": "array", "minItems": 10**9}}},
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 10**9}}},
    {"type": "object", "properties": {"a": {"pattern": "("}}},
    {"type": "object", "minimum": "x"},
]


def _mutate(draw: st.DrawFn, body: dict[str, Any]) -> None:
    path = draw(st.sampled_from(_PATHS))
    target: Any = body
    for part in path[:-1]:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return
    if not isinstance(target, dict | list):
        return
    last = path[-1]
    if isinstance(target, list) and (not isinstance(last, int) or last >= len(target)):
        return
    action = draw(st.sampled_from(["hostile", "json", "delete", "block", "schema"]))
    if action == "delete":
        if isinstance(target, dict):
            target.pop(last, None)
        return
    if action == "block" and path[-1] == "content":
        value: Any = [draw(st.sampled_from(_BLOCKS))]
    elif action == "schema" and path[-1] == "input_schema":
        value = draw(st.sampled_from(_SCHEMAS))
    elif action == "json":
        value = draw(json_values)
    else:
        value = draw(hostile)
    target[last] = value


@st.composite
def batch_body(draw: st.DrawFn) -> dict[str, Any]:
    requests = []
    for i in range(draw(st.integers(0, 3))):
        params = draw(message_body())
        params.pop("stream", None)
        custom_id: Any = f"r{i}" if draw(st.booleans()) else draw(hostile)
        requests.append({"custom_id": custom_id, "params": params})
    body: dict[str, Any] = {"requests": requests}
    if draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from([{"requests": draw(hostile)}, {"x": 1}, {}]))
    return body


# -- requests -----------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    query: str = ""
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False  # a streamed answer is expected if it is a 200
    admin: bool = False

    @property
    def injected(self) -> bool:
        """Asks the scripted engine to fail (fault injection): a 5xx is the answer."""
        return b"fail:" in (self.body or b"")

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


def _raw_text(value: Any) -> str:
    """A query or path value as text (Raw JSON values inlined as their text)."""
    return str(value) if isinstance(value, Raw | str) else _dump(value)


def encode(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


query_values = st.one_of(
    texts,
    st.sampled_from(DATES),
    st.integers(-5, 10**30).map(str),
    st.just("9" * 5000),
    st.just("%ED%A0%80"),  # an encoded surrogate: not UTF-8
)


@st.composite
def query(draw: st.DrawFn, names: list[str]) -> str:
    parts = []
    for name in draw(st.lists(st.sampled_from(names), max_size=4)):
        value = draw(query_values)
        encoded = value if value.startswith("%ED") else encode(value)
        parts.append(f"{encode(name)}={encoded}")
    return "&".join(parts)


path_ids = st.one_of(texts.filter(bool), st.sampled_from(["msgbatch_01x", "apikey_01x"]))

_USAGE_QUERY = [
    "starting_at",
    "ending_at",
    "bucket_width",
    "limit",
    "page",
    "group_by[]",
    "api_key_ids[]",
    "models[]",
    "group_by",
]


@st.composite
def api_call(draw: st.DrawFn) -> Call:
    """One request to one of Parley's API routes, hostile in some part."""
    kind = draw(
        st.sampled_from(
            [
                "messages",
                "messages",
                "count_tokens",
                "batch_create",
                "batch_read",
                "batch_list",
                "models",
                "admin_keys",
                "admin_key",
                "admin_update",
                "usage",
            ]
        )
    )
    headers: dict[str, str] = {}
    if draw(st.integers(0, 5)) == 0:
        headers["anthropic-version"] = draw(
            st.sampled_from(["2023-06-01", "2026-10-21", "", "1999-01-01", "2023-06-01, x"])
        )
    if draw(st.integers(0, 5)) == 0:
        # Any bytes a header may carry (no control characters: those never get here).
        value = draw(texts.filter(lambda t: all(c >= " " and not "\x7f" <= c <= "\x9f" for c in t)))
        headers["anthropic-beta"] = value.strip().encode("utf-8").decode("latin-1")
    if kind in ("messages", "count_tokens"):
        body = draw(message_body(count_tokens=kind == "count_tokens"))
        raw = dumps(body) if draw(st.integers(0, 9)) else dumps(draw(hostile))
        path = "/v1/messages" + ("/count_tokens" if kind == "count_tokens" else "")
        stream = kind == "messages" and body.get("stream") is True
        return Call("POST", path, body=raw, headers=headers, stream=stream)
    if kind == "batch_create":
        return Call("POST", "/v1/messages/batches", body=dumps(draw(batch_body())), headers=headers)
    if kind == "batch_read":
        suffix = draw(st.sampled_from(["", "/cancel", "/results", ""]))
        method = "POST" if suffix == "/cancel" else draw(st.sampled_from(["GET", "DELETE"]))
        if suffix == "/results":
            method = "GET"
        path = f"/v1/messages/batches/{encode(draw(path_ids))}{suffix}"
        return Call(method, path, headers=headers)
    if kind == "batch_list":
        q = draw(query(["limit", "after_id", "before_id", "beta"]))
        return Call("GET", "/v1/messages/batches", query=q, headers=headers)
    if kind == "models":
        if draw(st.booleans()):
            return Call("GET", f"/v1/models/{encode(draw(path_ids))}", headers=headers)
        q = draw(query(["limit", "after_id", "before_id"]))
        return Call("GET", "/v1/models", query=q, headers=headers)
    if kind == "admin_keys":
        q = draw(query(["limit", "after_id", "before_id", "status", "workspace_id"]))
        return Call("GET", "/v1/organizations/api_keys", query=q, headers=headers, admin=True)
    if kind == "admin_key":
        path = f"/v1/organizations/api_keys/{encode(draw(path_ids))}"
        return Call("GET", path, headers=headers, admin=True)
    if kind == "admin_update":
        path = "/v1/organizations/api_keys/" + (
            "{key_id}" if draw(st.booleans()) else encode(draw(path_ids))
        )
        update: Any = {
            "name": draw(st.one_of(texts, hostile)),
            "status": draw(st.sampled_from(["active", "inactive", None, "archived", "x"])),
        }
        if draw(st.booleans()):
            update.pop("status")
        return Call("POST", path, body=dumps(update), headers=headers, admin=True)
    q = draw(query(_USAGE_QUERY))
    if draw(st.booleans()):
        q = "starting_at=" + encode(draw(st.sampled_from(DATES))) + ("&" + q if q else "")
    return Call(
        "GET", "/v1/organizations/usage_report/messages", query=q, headers=headers, admin=True
    )


def _message(content: str, **extra: Any) -> bytes:
    body = f'{{"model":"{MODEL}","max_tokens":20,"messages":[{{"role":"user","content":{content}}}]'

    return (body + "".join(f',"{k}":{v}' for k, v in extra.items()) + "}").encode()


_USAGE = "/v1/organizations/usage_report/messages"
_DAY = "starting_at=2025-01-01T00:00:00Z"

# Every 500 the hardening issue listed, each as one request (plus close relatives).
KNOWN_CASES = [
    Call("POST", "/v1/messages", body=_message('"hi \\ud800"')),
    Call("POST", "/v1/messages", body=_message('"hi \\ud800"', stream="true"), stream=True),
    Call(
        "POST",
        "/v1/messages/count_tokens",
        body=_message('"\\udc00x"').replace(b'"max_tokens":20,', b""),
    ),
    Call("POST", "/v1/messages", body=b'{"a":' * 1000 + b"1" + b"}" * 1000),
    Call("POST", "/v1/messages", body=_message('"x"', metadata=str(nested(500)))),
    Call("POST", "/v1/messages", body=_message('"x"', max_tokens="9" * 5000)),
    Call("POST", "/v1/messages/count_tokens", body=b'{"model":' + b"1" * 4301 + b"}"),
    Call("POST", "/v1/messages", body=_message('"count: abc"')),
    Call("POST", "/v1/messages", body=_message('"count: 99999999999999999999"')),
    Call("POST", "/v1/messages", body=_message('"x"', temperature="NaN")),
    Call(
        "POST",
        "/v1/messages/batches",
        body=b'{"requests":[{"custom_id":"a","params":' + _message('"\\ud800"') + b"}]}",
    ),
    Call("POST", "/v1/messages/batches", body=b'{"requests":[' + b"[" * 2000 + b"]" * 2000 + b"]}"),
    Call("GET", _USAGE, query="starting_at=0001-01-01T00:00:00%2B01:00", admin=True),
    Call("GET", _USAGE, query="starting_at=9999-12-31T23:59:59-01:00", admin=True),
    Call("GET", _USAGE, query=f"{_DAY}&ending_at=0001-01-01T00:00:00%2B01:00", admin=True),
    Call(
        "GET",
        _USAGE,
        query=f"{_DAY}&page=" + encode("page_" + "MDAwMS0wMS0wMVQwMDowMDowMCswMTowMA=="),
        admin=True,
    ),
    Call("GET", _USAGE, query=f"{_DAY}&api_key_ids[]=a%00", admin=True),
    Call("GET", _USAGE, query=f"{_DAY}&models[]=a%00", admin=True),
    Call("GET", _USAGE, query=f"{_DAY}&limit=" + "9" * 5000, admin=True),
    Call("GET", "/v1/messages/batches/msgbatch_%00"),
    Call("POST", "/v1/messages/batches/msgbatch_%00/cancel"),
    Call("GET", "/v1/messages/batches", query="after_id=a%00"),
    Call("GET", "/v1/messages/batches", query="before_id=" + "a" * 100),
    Call("GET", "/v1/messages/batches", query="limit=" + "9" * 5000),
    Call("GET", "/v1/organizations/api_keys/apikey_%00", admin=True),
    Call("POST", "/v1/organizations/api_keys/apikey_%00", body=b'{"name":"x"}', admin=True),
    Call("POST", "/v1/organizations/api_keys/{key_id}", body=b'{"name":"a\\u0000b"}', admin=True),
    Call(
        "POST",
        "/v1/organizations/api_keys/{key_id}",
        body=b'{"name":"' + b"n" * 300 + b'"}',
        admin=True,
    ),
    Call("GET", "/v1/organizations/api_keys", query="after_id=a%00", admin=True),
    Call("GET", "/v1/models/a%00"),
]
