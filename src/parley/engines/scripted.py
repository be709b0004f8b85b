"""A deterministic engine without a model: for tests, demos and fault injection.

The reply is decided by directives in the last user turn's text, one per line:

- ``say: TEXT``: reply exactly TEXT.
- ``count: N``: reply ``1 2 3 ... N``.
- ``tool: NAME {JSON}``: call tool NAME with that input (``{}`` when omitted);
  several lines make several calls, after any ``say:`` text. Honoured as far as
  tool_choice allows: never under ``none``, only NAME's own under ``tool``.
- ``cite: TEXT``: reply TEXT as a text block that cites it, where TEXT is a
  verbatim quote from a document with citations enabled (a 400 if none holds
  it): a ``char_location``, ``page_location`` or ``content_block_location``
  citation, as the document's kind asks. Several lines make several blocks,
  after any ``say:`` text.
- ``think: TEXT``: reason TEXT first (a thinking block), when the request asks for
  thinking and the model's config says it thinks (`thinking = true`); cut at the
  request's `budget_tokens`.
- ``fail: ERROR_TYPE``: after the reply's first token, fail with that API error
  type (for example ``overloaded_error``), which a stream reports as an
  ``event: error`` frame.
- anything else: reply ``Echo: <the last user turn>``, where images read as
  ``[image/png 64x48]``, documents as the text the model is shown and tool
  results as their text.

Directives are read from the turn's own text blocks, never from its documents.

With tool_choice ``any`` or ``tool`` and no usable ``tool:`` line, the reply is
one call to the chosen (or first) tool whose input is the smallest value its
schema allows (`core.tool_schemas.minimal_instance`). With `output_config.format`
the reply is the ``say:`` text if it is JSON valid against the schema, else the
smallest valid value, so clients can test their parsing against it.

Tokens are whitespace-delimited words (each with its trailing space), so
token counts are easy to reason about in tests; a call counts one token for
its name and one per word of its input JSON, which streams word by word. The
prompt holds each tool as its name only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from parley.core.citations import find_citation
from parley.core.generation import (
    Citation,
    CitationChunk,
    DocumentPart,
    EngineCapabilities,
    EngineEvent,
    Finished,
    GenerationRequest,
    ImagePart,
    TextBlockStart,
    TextChunk,
    TextPart,
    ThinkingChunk,
    ToolCall,
    ToolCallStart,
    ToolInputChunk,
    ToolResult,
    Turn,
)
from parley.core.slots import Occupancy, SlotPool
from parley.core.tool_schemas import minimal_instance, value_errors
from parley.engines.base import Engine, Generation, PreparedGeneration
from parley.errors import ERROR_CLASSES_BY_TYPE, InternalServerError, InvalidRequestError

_TOKEN = re.compile(r"\s*\S+\s*|\s+")
_DIRECTIVE = re.compile(r"^(say|count|fail|tool|cite|think):\s?(.*)$", re.MULTILINE)
_TOOL = re.compile(r"^([a-zA-Z0-9_-]+)\s*(.*)$", re.DOTALL)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _image(image: ImagePart) -> str:
    size = f" {image.width}x{image.height}" if image.width is not None else ""
    return f"[{image.media_type}{size}]"


def _content(turn: Turn, *, calls: bool) -> str:
    """A turn in words. Text-only turns are exactly their text."""
    if all(isinstance(p, TextPart) for p in turn.parts):
        return turn.text
    pieces: list[str] = []
    for part in turn.parts:
        if isinstance(part, TextPart | DocumentPart):
            pieces.append(part.text)
        elif isinstance(part, ImagePart):
            pieces.append(_image(part))
        elif isinstance(part, ToolCall) and calls:
            pieces.append(f"[call {part.name} {part.input_json}]")
        elif isinstance(part, ToolResult):
            inner = [_image(p) if isinstance(p, ImagePart) else p.text for p in part.content]
            pieces.append(("[error] " if part.is_error else "") + " ".join(inner))
    return " ".join(p for p in pieces if p)


def render_prompt(request: GenerationRequest) -> str:
    parts = [f"<system>{request.system}</system>"] if request.system else []
    if request.tools:
        # One word per tool: agents send tens of KB of definitions (Claude Code does),
        # which would not fit a scripted model's context if counted in full.
        parts.append(f"<tools>{' '.join(t.name for t in request.tools)}</tools>")
    parts += [f"<{t.role}>{_content(t, calls=True)}</{t.role}>" for t in request.turns]
    return "".join(parts)


@dataclass
class Script:
    thinking: str | None = None
    text: str = ""
    # Blocks quoting a document: the quote, and where it is cited from.
    cited: list[tuple[str, Citation]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, input JSON)
    failure: Exception | None = None


class ScriptedEngine(Engine[Script]):
    # Tools, structured outputs and citations (the `cite:` directive) always; images
    # and thinking only when the model's config says so (`images = true`,
    # `thinking = true`), so a default scripted model stands in for a text-only one
    # that does not reason.
    capabilities = EngineCapabilities(
        images=False, tools=True, structured_outputs=True, thinking_budgets=True, citations=True
    )

    def __init__(
        self,
        *,
        context_window: int = 8192,
        slots: int = 2,
        max_waiting: int = 32,
        token_delay: float = 0.0,
    ) -> None:
        self._context_window = context_window
        self._pool: SlotPool[int] = SlotPool(list(range(slots)), max_waiting)
        self._token_delay = token_delay

    @property
    def context_window(self) -> int:
        return self._context_window

    @property
    def pool(self) -> SlotPool[int]:
        return self._pool

    def occupancy(self) -> Occupancy:
        return self._pool.occupancy()

    async def count_tokens(self, request: GenerationRequest) -> int:
        return len(tokenize(render_prompt(request)))

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[Script]:
        return PreparedGeneration(request, await self.count_tokens(request), write_script(request))

    async def open(self, prepared: PreparedGeneration[Script]) -> Generation:
        self._pool.admit()
        return Generation(prepared.input_tokens, self._generate(prepared))

    async def _generate(
        self, prepared: PreparedGeneration[Script]
    ) -> AsyncGenerator[EngineEvent, None]:
        request, script = prepared.request, prepared.state
        slot = await self._pool.acquire()
        try:
            produced = 0
            for event in _events(script):
                if isinstance(event, TextBlockStart):
                    yield TextBlockStart(produced)  # marks, not tokens
                    continue
                if isinstance(event, CitationChunk):
                    yield CitationChunk(event.citation, produced)
                    continue
                if produced >= request.max_tokens:
                    yield Finished("max_tokens", produced)
                    return
                if self._token_delay:
                    await asyncio.sleep(self._token_delay)
                produced += 1
                yield _counted(event, produced)
                if script.failure is not None:
                    raise script.failure
            yield Finished("tool_use" if script.calls else "end_turn", produced)
        finally:
            self._pool.release(slot)


_Scripted = (
    TextChunk | TextBlockStart | CitationChunk | ThinkingChunk | ToolCallStart | ToolInputChunk
)


def _events(script: Script) -> list[_Scripted]:
    events: list[_Scripted] = []
    if script.thinking is not None:
        # An empty thought is still a block (it carries a signature).
        events += [ThinkingChunk(t, 0) for t in tokenize(script.thinking) or [""]]
    events += [TextChunk(token, 0) for token in tokenize(script.text)]
    for quote, citation in script.cited:
        events += [TextBlockStart(0), CitationChunk(citation, 0)]
        events += [TextChunk(token, 0) for token in tokenize(quote)]
    for name, input_json in script.calls:
        events.append(ToolCallStart(name, 0))
        events += [ToolInputChunk(word, 0) for word in tokenize(input_json)]
    return events


_Counted = TextChunk | ThinkingChunk | ToolCallStart | ToolInputChunk


def _counted(event: _Counted, produced: int) -> _Counted:
    if isinstance(event, TextChunk):
        return TextChunk(event.text, produced)
    if isinstance(event, ThinkingChunk):
        return ThinkingChunk(event.text, produced)
    if isinstance(event, ToolCallStart):
        return ToolCallStart(event.name, produced)
    return ToolInputChunk(event.partial_json, produced)


def write_script(request: GenerationRequest) -> Script:
    last_user = next((t for t in reversed(request.turns) if t.role == "user"), Turn("user", ()))
    own_text = "\n\n".join(p.text for p in last_user.parts if isinstance(p, TextPart))
    directives = [(m.group(1), m.group(2)) for m in _DIRECTIVE.finditer(own_text)]
    found = dict(directives)
    script = Script()
    if "fail" in found:
        error_type = found["fail"].strip()
        cls = ERROR_CLASSES_BY_TYPE.get(error_type, InternalServerError)
        script.failure = cls(
            "Overloaded" if error_type == "overloaded_error" else f"Scripted {error_type}"
        )
    script.calls = _calls(request, [value for name, value in directives if name == "tool"])
    script.cited = [_citation(request, value) for name, value in directives if name == "cite"]
    if "say" in found:
        script.text = found["say"]
    elif "count" in found:
        raw = found["count"].strip() or "0"
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
            raise InvalidRequestError(f"scripted engine: count needs a whole number, not {raw!r}")
        # Words past max_tokens are never sent: they are not made either.
        n = min(int(raw), request.max_tokens + 1)
        script.text = " ".join(str(i) for i in range(1, n + 1))
    elif script.failure is not None:
        script.text = "Failing soon"
    elif not script.calls and not script.cited:
        script.text = f"Echo: {_content(last_user, calls=False)}"
    if request.output_schema is not None and not script.calls:
        script.text = _structured(request.output_schema, script.text)
    thinking = request.thinking
    if thinking.mode != "off" and "think" in found:
        words = tokenize(found["think"])
        if thinking.budget_tokens is not None:
            words = words[: thinking.budget_tokens]
        script.thinking = "".join(words)
    return script


def _citation(request: GenerationRequest, quote: str) -> tuple[str, Citation]:
    quote = quote.strip()
    citation = find_citation(request.documents, quote)
    if citation is None:
        raise InvalidRequestError(
            f"scripted engine: no document with citations enabled contains {quote!r}"
        )
    return quote, citation


def _structured(schema: Any, text: str) -> str:
    """The text if it is JSON valid against the schema, else the smallest valid value."""
    try:
        if not value_errors(schema, json.loads(text)):
            return text
    except ValueError:
        pass
    return json.dumps(minimal_instance(schema))


def _calls(request: GenerationRequest, lines: list[str]) -> list[tuple[str, str]]:
    allowed = {t.name for t in request.tool_choice.allowed(request.tools)}
    calls: list[tuple[str, str]] = []
    for line in lines:
        match = _TOOL.match(line.strip())
        if match is None:
            raise InvalidRequestError(f"scripted engine: bad tool directive {line!r}")
        name, raw = match.group(1), match.group(2).strip() or "{}"
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidRequestError(f"scripted engine: tool input is not JSON: {raw}") from None
        if not isinstance(value, dict):
            raise InvalidRequestError(f"scripted engine: tool input is not an object: {raw}")
        # A name the request does not define is still called (a client's handling of
        # unknown tools can be tested), unless tool_choice rules it out.
        if request.tool_choice.mode == "none":
            continue
        if request.tool_choice.mode == "tool" and name not in allowed:
            continue
        calls.append((name, json.dumps(value)))
    if not calls and request.tool_choice.required and allowed:
        tool = next(t for t in request.tools if t.name in allowed)
        calls.append((tool.name, json.dumps(minimal_instance(tool.input_schema))))
    return calls
