"""A deterministic engine without a model: for tests, demos and fault injection.

The reply is decided by directives in the last user turn, one per line:

- ``say: TEXT``: reply exactly TEXT.
- ``count: N``: reply ``1 2 3 ... N``.
- ``fail: ERROR_TYPE``: after the reply's first token, fail with that API error
  type (for example ``overloaded_error``), which a stream reports as an
  ``event: error`` frame.
- anything else: reply ``Echo: <the last user turn>``.

Tokens are whitespace-delimited words (each with its trailing space), so
token counts are easy to reason about in tests.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from parley.core.generation import EngineEvent, Finished, GenerationRequest, TextChunk
from parley.core.slots import SlotPool
from parley.engines.base import Engine, PreparedGeneration
from parley.errors import ERROR_CLASSES_BY_TYPE, InternalServerError

_TOKEN = re.compile(r"\s*\S+\s*|\s+")
_DIRECTIVE = re.compile(r"^(say|count|fail):\s?(.*)$", re.MULTILINE)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def render_prompt(request: GenerationRequest) -> str:
    parts = [f"<system>{request.system}</system>"] if request.system else []
    parts += [f"<{t.role}>{t.text}</{t.role}>" for t in request.turns]
    return "".join(parts)


class ScriptedEngine(Engine):
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

    async def count_tokens(self, request: GenerationRequest) -> int:
        return len(tokenize(render_prompt(request)))

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        self._pool.admit()
        return PreparedGeneration(request, await self.count_tokens(request), None)

    async def generate(self, prepared: PreparedGeneration) -> AsyncGenerator[EngineEvent, None]:
        request = prepared.request
        reply, failure = _script(request)
        slot = await self._pool.acquire()
        try:
            produced = 0
            for token in tokenize(reply):
                if produced >= request.max_tokens:
                    yield Finished("max_tokens", produced)
                    return
                if self._token_delay:
                    await asyncio.sleep(self._token_delay)
                produced += 1
                yield TextChunk(token, produced)
                if failure is not None:
                    raise failure
            yield Finished("end_turn", produced)
        finally:
            self._pool.release(slot)


def _script(request: GenerationRequest) -> tuple[str, Exception | None]:
    last_user = next((t.text for t in reversed(request.turns) if t.role == "user"), "")
    directives = dict((m.group(1), m.group(2)) for m in _DIRECTIVE.finditer(last_user))
    failure: Exception | None = None
    if "fail" in directives:
        error_type = directives["fail"].strip()
        cls = ERROR_CLASSES_BY_TYPE.get(error_type, InternalServerError)
        failure = cls(
            "Overloaded" if error_type == "overloaded_error" else f"Scripted {error_type}"
        )
    if "say" in directives:
        return directives["say"], failure
    if "count" in directives:
        n = int(directives["count"].strip() or "0")
        return " ".join(str(i) for i in range(1, n + 1)), failure
    if failure is not None:
        return "Failing soon", failure
    return f"Echo: {last_user}", None
