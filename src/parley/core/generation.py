"""The neutral request and event types that flow between core and the engines.

Core turns an API request into a `GenerationRequest`: the conversation as
structured turns (text, images, tool calls, tool results), the tools the model
may call and the caller's tool choice. Engines answer with a stream of
`EngineEvent`s; core turns those into the API's content blocks and SSE events.
Nothing here knows the wire format, so any backend (llama.cpp, an
OpenAI-compatible server, Anthropic itself) can be written against it.

Event order, per generation::

    ( ThinkingChunk* [ThinkingSignature] | RedactedThinking
      | [TextBlockStart] (TextChunk | CitationChunk)* | ToolCallStart ToolInputChunk* )*
    Finished

A run of `ThinkingChunk`s is one thinking block (core signs it, unless the engine
passes its upstream's own `ThinkingSignature`); a run of `TextChunk`s is one text
block, unless a `TextBlockStart` splits it: text that cites a document goes in a
block of its own, whose `CitationChunk`s say what it cites (api-spec §5.5); a
`ToolCallStart` opens a tool_use block, its `ToolInputChunk`s carry the input JSON
in fragments, and the block ends at the next event of another kind. The
concatenated fragments of a call must be one JSON object (core checks, and fails
the message if not); when the call was cut off by `max_tokens` it may be an
unfinished prefix of one.
`Finished` always comes last. Each event carries the running total of output
tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
# "tool_use" is what an engine reports when it stopped after its tool call(s); core
# also derives it when a generation that made calls ends its turn. "stop_sequence" is
# for engines that stop on a sequence themselves (then `Finished.stop_sequence` names
# it); the last three pass through what an Anthropic upstream reports.
EngineStopReason = Literal[
    "end_turn",
    "max_tokens",
    "tool_use",
    "stop_sequence",
    "refusal",
    "pause_turn",
    "model_context_window_exceeded",
]


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine's model can take in. Core refuses what it cannot (a 400 that
    names the model) instead of silently dropping content."""

    images: bool = False
    tools: bool = False
    # Whether the engine's answers can cite documents (`citations: {"enabled": true}`).
    citations: bool = False
    # Replies held to `output_config.format` and strict tools' inputs held to their
    # schemas (a grammar, or an upstream that enforces them).
    structured_outputs: bool = False
    # The model reasons before answering (thinking blocks), as `adaptive` asks.
    thinking: bool = False
    # ... and keeps to a caller's `budget_tokens` (`enabled`).
    thinking_budgets: bool = False
    # Thinking signatures are the upstream's own (Anthropic's): passed back to it
    # unchanged, for it to check, rather than checked by Parley.
    upstream_signatures: bool = False


# --- the conversation ---------------------------------------------------------------


@dataclass(frozen=True)
class CacheMark:
    """A prompt-caching breakpoint the caller set (`cache_control: {type: "ephemeral",
    ttl?}`, api-spec §16). Engines with automatic prefix caching need nothing from it;
    an Anthropic upstream is sent it as it came."""

    ttl: str | None = None


@dataclass(frozen=True)
class TextPart:
    text: str
    # Hints, not content: they take no part in equality.
    cache: CacheMark | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ImagePart:
    """An image, already decoded and checked: `media_type` matches the bytes.

    URL sources are fetched by core (when the server allows it) before the
    engine sees them; `url` then says where the bytes came from.
    """

    media_type: str
    data: bytes
    width: int | None = None
    height: int | None = None
    url: str | None = None
    cache: CacheMark | None = field(default=None, compare=False)


DocumentKind = Literal["text", "pdf", "content"]


@dataclass(frozen=True)
class DocumentPart:
    """A document block, read: its text in the units a citation points at.

    `chunks` holds the whole text of a `text` document (one chunk), each page of a
    `pdf`, or each block of a `content` document. `index` is the document's place
    among all documents of the request, counted from 0 in the order they appear (what
    citations call `document_index`). `pdf` keeps a PDF's own bytes for engines that
    read PDFs themselves (an Anthropic upstream); every other engine reads `text`.
    """

    kind: DocumentKind
    chunks: tuple[str, ...]
    index: int
    title: str | None = None
    context: str | None = None
    citations: bool = False
    file_id: str | None = None
    pdf: bytes | None = None
    cache: CacheMark | None = field(default=None, compare=False)

    @property
    def content(self) -> str:
        """The document's own text: what a `char_location` indexes into."""
        return self.chunks[0] if self.kind == "text" else "\n\n".join(self.chunks)

    @property
    def text(self) -> str:
        """The document as a text-reading model is shown it, the same in every engine
        and in `count_tokens`: title and context first, then the content, in the tags
        Anthropic's prompting guide uses for documents."""
        lines = [f'<document index="{self.index + 1}">']
        if self.title:
            lines.append(f"<source>{self.title}</source>")
        if self.context:
            lines.append(f"<document_context>{self.context}</document_context>")
        lines.append("<document_content>")
        if self.kind == "pdf":
            lines += [
                f'<page number="{n}">\n{page}\n</page>' for n, page in enumerate(self.chunks, 1)
            ]
        else:
            lines.append(self.content)
        lines += ["</document_content>", "</document>"]
        return "\n".join(lines)


@dataclass(frozen=True)
class ToolCall:
    """A call the assistant made in an earlier turn (an input `tool_use` block)."""

    id: str
    name: str
    input: Mapping[str, Any]
    cache: CacheMark | None = field(default=None, compare=False)

    @property
    def input_json(self) -> str:
        return json.dumps(self.input, ensure_ascii=False)


@dataclass(frozen=True)
class ToolResult:
    """The caller's answer to a `ToolCall` (an input `tool_result` block).

    `name` is the called tool's name, looked up from the call this answers
    (some prompt formats and upstream APIs want it).
    """

    tool_use_id: str
    name: str
    content: tuple[TextPart | ImagePart | DocumentPart, ...] = ()
    is_error: bool = False
    cache: CacheMark | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.content if not isinstance(p, ImagePart))


@dataclass(frozen=True)
class ThinkingPart:
    """Earlier reasoning passed back in an assistant turn: a thinking block
    (`thinking`, `signature`) or a redacted one (`data`). Engines that render a
    prompt leave it out (the API does not show earlier turns' thinking to the
    model); an Anthropic upstream gets it back unchanged."""

    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


Part = TextPart | ImagePart | DocumentPart | ToolCall | ToolResult | ThinkingPart


@dataclass(frozen=True)
class Turn:
    """One role's message. User turns hold text, images and tool results; assistant
    turns hold text and tool calls; a system turn (mid-conversation) holds text."""

    role: Role
    parts: tuple[Part, ...]

    @classmethod
    def of(cls, role: Role, *parts: str | Part) -> Turn:
        return cls(role, tuple(TextPart(p) if isinstance(p, str) else p for p in parts))

    @property
    def text(self) -> str:
        """The turn's text parts and documents joined, for engines and rules that read
        text only."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart | DocumentPart))

    @property
    def documents(self) -> tuple[DocumentPart, ...]:
        found: list[DocumentPart] = []
        for part in self.parts:
            if isinstance(part, DocumentPart):
                found.append(part)
            elif isinstance(part, ToolResult):
                found += [p for p in part.content if isinstance(p, DocumentPart)]
        return tuple(found)

    @property
    def images(self) -> tuple[ImagePart, ...]:
        found: list[ImagePart] = []
        for part in self.parts:
            if isinstance(part, ImagePart):
                found.append(part)
            elif isinstance(part, ToolResult):
                found += [p for p in part.content if isinstance(p, ImagePart)]
        return tuple(found)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolCall))

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolResult))


# --- tools ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """A custom tool the model may call. `input_schema` is a JSON Schema whose
    top-level type is "object" (checked by core); a call's input must match it."""

    name: str
    description: str | None
    input_schema: Mapping[str, Any]
    cache: CacheMark | None = field(default=None, compare=False)
    # `strict: true`: the input must validate against the schema (structured outputs).
    strict: bool = False


ToolChoiceMode = Literal["auto", "any", "tool", "none"]


@dataclass(frozen=True)
class ToolChoice:
    """How the model may use `GenerationRequest.tools` (api-spec §5.4).

    - auto: the model decides between text and calls;
    - any: at least one call, to any tool;
    - tool: at least one call, to the tool `name`;
    - none: no calls at all (the tools stay known to the model).

    With `parallel` False (the API's `disable_parallel_tool_use`) an engine makes
    at most one call; core also stops a generation at its second call.
    """

    mode: ToolChoiceMode = "auto"
    name: str | None = None
    parallel: bool = True

    @property
    def required(self) -> bool:
        return self.mode in ("any", "tool")

    def allowed(self, tools: tuple[ToolSpec, ...]) -> tuple[ToolSpec, ...]:
        """The tools a call may go to under this choice."""
        if self.mode == "none":
            return ()
        if self.mode == "tool":
            return tuple(t for t in tools if t.name == self.name)
        return tools


# --- the request ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


ThinkingMode = Literal["off", "enabled", "adaptive"]


@dataclass(frozen=True)
class Thinking:
    """Whether the model reasons first (api-spec §5.1 `thinking`).

    - off: no reasoning (`disabled`, `between_tools`, or no `thinking`);
    - enabled: reason, up to `budget_tokens` tokens;
    - adaptive: the model decides whether and how much, within `budget_tokens`.
    `effort` is `output_config.effort` as sent (None: the API's default, high).
    """

    mode: ThinkingMode = "off"
    budget_tokens: int | None = None
    effort: str | None = None
    # `display: omitted`: thinking text is withheld, only the signature is returned.
    omitted: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    """What an engine is asked to do: a conversation to continue, and limits.

    `turns` are already role-checked, merged and tool-paired; when the last turn
    is an assistant turn it is a prefill that the reply continues (api-spec
    §5.2). `tools` is empty when the request had none; `tool_choice` is then
    meaningless.
    """

    model: str
    system: str | None
    turns: tuple[Turn, ...]
    max_tokens: int
    stop_sequences: tuple[str, ...] = ()
    sampling: Sampling = field(default_factory=Sampling)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    # The system prompt as the caller's blocks, kept only when they were blocks (their
    # cache marks go to an Anthropic upstream); `system` is their text, for every engine.
    system_parts: tuple[TextPart, ...] = ()
    # The request's own top-level `cache_control` (automatic caching of the last block).
    cache: CacheMark | None = None
    # `output_config.format`: the reply's text is JSON valid against this schema.
    output_schema: Mapping[str, Any] | None = None
    thinking: Thinking = field(default_factory=Thinking)
    # Whose prompt-cache entries this request may read and write: the API key's id, set
    # by the pipeline (None: no caching). Entries are never shared between scopes, since
    # a cache hit is visible in timing to whoever shares it.
    cache_scope: str | None = None
    # Whether the client reads the reply as it is generated (`stream: true`); one read
    # whole may be asked of an upstream in one piece.
    streamed: bool = True

    @property
    def prefill(self) -> str | None:
        if self.turns and self.turns[-1].role == "assistant":
            return self.turns[-1].text
        return None

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def documents(self) -> tuple[DocumentPart, ...]:
        """Every document of the conversation, by `DocumentPart.index`."""
        return tuple(d for t in self.turns for d in t.documents)


# --- what engines emit ----------------------------------------------------------------


@dataclass(frozen=True)
class TextChunk:
    """Text the model produced; `output_tokens` is the running total so far."""

    text: str
    output_tokens: int


@dataclass(frozen=True)
class TextBlockStart:
    """Close the open block; the text that follows starts a new text block (cited
    text and the text around it are separate blocks)."""

    output_tokens: int


CitationKind = Literal["char_location", "page_location", "content_block_location"]


@dataclass(frozen=True)
class Citation:
    """Where the current text block's claim comes from. `start`/`end` are character
    offsets into the document's `content` (char_location), 1-based page numbers
    (page_location) or 0-based block indexes (content_block_location), end
    exclusive; `cited_text` is the document's own text there."""

    kind: CitationKind
    cited_text: str
    document_index: int
    document_title: str | None
    start: int
    end: int
    file_id: str | None = None


@dataclass(frozen=True)
class CitationChunk:
    """Adds a citation to the open text block (opening one if none is open)."""

    citation: Citation
    output_tokens: int


@dataclass(frozen=True)
class ThinkingChunk:
    """Reasoning the model produced, before its answer."""

    text: str
    output_tokens: int


@dataclass(frozen=True)
class ThinkingSignature:
    """The current thinking block's signature, from an upstream that signs its own
    (Anthropic); without one core signs the block itself."""

    signature: str
    output_tokens: int


@dataclass(frozen=True)
class RedactedThinking:
    """A whole redacted_thinking block from an upstream."""

    data: str
    output_tokens: int


@dataclass(frozen=True)
class ToolCallStart:
    """The model starts a call to tool `name`. `id` is None unless the backend has
    its own id to keep; core then assigns a `toolu_` id."""

    name: str
    output_tokens: int
    id: str | None = None


@dataclass(frozen=True)
class ToolInputChunk:
    """The next fragment of the current call's input JSON (may be empty)."""

    partial_json: str
    output_tokens: int


@dataclass(frozen=True)
class CacheUsage:
    """Prompt tokens a backend read from its prompt cache or wrote to it (api-spec §16).
    They are apart from `input_tokens`, as in the API's usage: the prompt is all three."""

    read_input_tokens: int = 0
    creation_input_tokens: int = 0
    # The writes by lifetime (`usage.cache_creation`), when the backend says.
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


@dataclass(frozen=True)
class Finished:
    """The end of a generation. `input_tokens`: the backend's own count of the prompt,
    when it only knows it at the end (it replaces the estimate from `prepare` in the
    final usage; `message_start` keeps the estimate); `cache`: the part of the prompt
    served from or written to a prompt cache, which `input_tokens` then leaves out."""

    reason: EngineStopReason
    output_tokens: int
    stop_sequence: str | None = None
    input_tokens: int | None = None
    # An upstream's own account of why it stopped (a refusal's category and text).
    stop_details: Mapping[str, Any] | None = None
    cache: CacheUsage | None = None


EngineEvent = (
    TextChunk
    | TextBlockStart
    | CitationChunk
    | ToolCallStart
    | ToolInputChunk
    | ThinkingChunk
    | ThinkingSignature
    | RedactedThinking
    | Finished
)
