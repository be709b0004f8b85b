"""A request as the embedded model is given it: the rendered prompt's tokens, how tools
and output formats shape the reply (`ToolPlan`), the thinking section, and where the
caller's cache breakpoints fall in the tokens.

Usage follows the API's prompt-caching rules (api-spec §16) from those breakpoints
and what the prompt cache found (`cache_usage`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from parley.core.cache_marks import cache_marks
from parley.core.generation import CacheUsage, GenerationRequest
from parley.engines.chat_template import CacheMarks, ChatTemplate
from parley.engines.hermes import CALL_OPEN
from parley.engines.llamacpp.cache import Breakpoint, as_tokens, common_prefix
from parley.engines.llamacpp.grammar import NoGrammarError, call_grammar
from parley.engines.llamacpp.model import LlamaModel
from parley.engines.think_tags import FORCED_CLOSE, with_thinking
from parley.errors import InvalidRequestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolPlan:
    """How a request's tools shape its generation (see README "Tools and images").

    - no tools, or tool_choice none: free text, no grammar;
    - any / tool: the prompt ends in an opened `<tool_call>` and the grammar allows
      only a call to the allowed tool(s), with schema-valid input;
    - auto: the grammar allows a call (if the reply begins with `<tool_call>`) or
      any text that does not begin so; the model's first tokens decide.
    One call per turn: the grammar ends after the call, which also honours
    disable_parallel_tool_use.
    """

    grammar: str | None = None
    forced: bool = False
    calls: bool = False  # the grammar allows a call, which the output is split into

    @classmethod
    def of(cls, request: GenerationRequest) -> ToolPlan:
        """With `output_config.format` the reply's text is held to its schema too."""
        allowed = request.tool_choice.allowed(request.tools)
        schema = request.output_schema
        try:
            if not allowed:
                if schema is None:
                    return cls()
                return cls(call_grammar([], allow_text=True, output_schema=schema))
            forced = request.tool_choice.required
            tools = [(t.name, t.input_schema, t.strict) for t in allowed]
            grammar = call_grammar(tools, allow_text=not forced, output_schema=schema)
        except NoGrammarError as exc:
            # Checked against the API's subset already; what is left is a regex the
            # grammar converter cannot express.
            path = "output_config.format.schema" if schema is not None else "tools"
            raise InvalidRequestError(
                f"{path}: model {request.model} cannot enforce this schema ({exc})."
            ) from None
        return cls(grammar, forced, calls=True)


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    plan: ToolPlan
    # Thinking on: the prompt ends inside an open `<think>` section; once it closes,
    # `resume` (a forced call's opening) follows and the grammar applies.
    thinks: bool = False
    resume: tuple[int, ...] = ()
    forced_close: tuple[int, ...] = ()
    # The caller's cache breakpoints at or past the minimum cacheable length, as token
    # positions (the prompt's first `position` tokens), ascending.
    breakpoints: tuple[Breakpoint, ...] = ()


class PromptBuilder:
    """Renders requests with the model's chat template and tokenizes them.

    `thinks`: the model reasons in `<think>` sections. `min_cacheable`: a breakpoint
    closer to the prompt's start than this caches nothing (the API's per-model
    minimum: the request is served and reports no cache use)."""

    def __init__(
        self, template: ChatTemplate, model: LlamaModel, *, thinks: bool, min_cacheable: int
    ) -> None:
        self._template = template
        self._model = model
        self._thinks = thinks
        self._min_cacheable = min_cacheable

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        model = self._model
        return model.tokenize(text, add_bos=bos and model.add_bos, special=True)

    def count(self, request: GenerationRequest) -> int:
        text, _ = self._text(request, ToolPlan.of(request), None)
        return len(self.encode(text, bos=True))

    def build(self, request: GenerationRequest) -> Prompt:
        plan = ToolPlan.of(request)
        text, thinks = self._text(request, plan, None)
        tokens = self.encode(text, bos=True)
        breakpoints = self._breakpoints(request, plan, text, tokens) if cache_marks(request) else ()
        if not thinks:
            return Prompt(tokens, plan, breakpoints=breakpoints)
        return Prompt(
            tokens,
            plan,
            thinks=True,
            resume=tuple(self.encode(CALL_OPEN)) if plan.forced else (),
            forced_close=tuple(self.encode(FORCED_CLOSE)),
            breakpoints=breakpoints,
        )

    def _text(
        self, request: GenerationRequest, plan: ToolPlan, marks: CacheMarks | None
    ) -> tuple[str, bool]:
        """The prompt text, and whether it ends inside an open thinking section."""
        template = self._template
        if not self._thinks or request.prefill is not None:
            return template.render(request, open_call=plan.forced, marks=marks), False
        thinks = request.thinking.mode != "off"
        text = with_thinking(
            template.render(request, enable_thinking=thinks, marks=marks), on=thinks
        )
        if not thinks and plan.forced:
            text += CALL_OPEN
        return text, thinks

    def _breakpoints(
        self, request: GenerationRequest, plan: ToolPlan, text: str, tokens: list[int]
    ) -> tuple[Breakpoint, ...]:
        marks = CacheMarks()
        marked, _ = self._text(request, plan, marks)
        clean, found = marks.split(marked)
        if clean != text:
            # A template that reworks message text (trims it, say): no position is known
            # for sure, so the request caches nothing rather than something else.
            log.warning("cache breakpoints cannot be placed in this template's prompt")
            return ()
        full = as_tokens(tokens)
        ttls: dict[int, str] = {}
        for offset, ttl in found:
            # The tokens of the text before the mark, as far as the whole prompt's own
            # tokens agree with them (a token may span the mark).
            prefix = as_tokens(self.encode(text[:offset], bos=True))
            position = common_prefix(prefix, full)
            if position < self._min_cacheable:
                continue
            # Two marks at one place: the longer lifetime wins.
            ttls[position] = "1h" if "1h" in (ttl, ttls.get(position)) else "5m"
        return tuple(
            Breakpoint(position, "1h" if ttl == "1h" else "5m")
            for position, ttl in sorted(ttls.items())
        )


def cache_usage(
    breakpoints: tuple[Breakpoint, ...], total: int, read: int
) -> tuple[int, CacheUsage | None]:
    """`input_tokens` and the cache's part of a prompt of `total` tokens whose first
    `read` come from a cache entry (api-spec §16): what lies between the read and the
    last breakpoint is written (split by the lifetime of the breakpoint that ends
    each stretch); the rest, after the last breakpoint, is plain input. Without
    breakpoints nothing is cached (None)."""
    if not breakpoints:
        return total, None
    last = breakpoints[-1].position
    # A hit that covers the last breakpoint (at most the prompt less its last token,
    # which is always evaluated again) writes nothing.
    if read >= min(last, total - 1):
        return total - read, CacheUsage(read_input_tokens=read)
    written = {"5m": 0, "1h": 0}
    start = read
    for bp in breakpoints:
        if bp.position > start:
            written[bp.ttl] += bp.position - start
            start = bp.position
    creation = last - read
    return total - read - creation, CacheUsage(
        read_input_tokens=read,
        creation_input_tokens=creation,
        ephemeral_5m_input_tokens=written["5m"],
        ephemeral_1h_input_tokens=written["1h"],
    )
