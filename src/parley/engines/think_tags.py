"""Reasoning models that think in `<think>...</think>` sections (Qwen3, DeepSeek-R1
distills, SmolLM3 and others): whether a chat template has them, and reading the
thinking back out of the model's output.

The prompt ends inside an opened `<think>` section when thinking is on (Parley
opens it if the template did not), so the output is thinking up to `</think>`,
then the answer. With thinking off the section is given closed and empty, as
Qwen3's own template does for `enable_thinking=False`.
"""

from __future__ import annotations

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
OPENED = f"{THINK_OPEN}\n"
CLOSED = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n"
# Appended when the budget runs out before the model closed its section itself.
FORCED_CLOSE = f"\n{THINK_CLOSE}\n\n"


def template_thinks(source: str | None) -> bool:
    return source is not None and THINK_OPEN in source and THINK_CLOSE in source


def with_thinking(prompt: str, *, on: bool) -> str:
    """The rendered prompt, ending inside an open section (on) or after a closed one."""
    tail = prompt.rstrip()
    if on:
        return prompt if tail.endswith(THINK_OPEN) else prompt + OPENED
    return prompt if tail.endswith(THINK_CLOSE) else prompt + CLOSED


class ThinkSplitter:
    """Splits streamed output into thinking (before `</think>`) and what follows it.

    A possible start of the closing tag is held back until it is known not to be one.
    """

    def __init__(self) -> None:
        self._held = ""
        self._started = False
        self.closed = False

    def feed(self, text: str) -> tuple[str, str | None]:
        """(thinking to pass on, the text after the closing tag once it came)."""
        pending = self._held + text
        if not self._started:
            pending = pending.lstrip("\n")
            self._started = bool(pending)
        end = pending.find(THINK_CLOSE)
        if end >= 0:
            self.closed = True
            self._held = ""
            return pending[:end].rstrip("\n"), pending[end + len(THINK_CLOSE) :]
        keep = _partial_suffix(pending, THINK_CLOSE)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep], None

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held.rstrip("\n")


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that may begin `tag`, with the newlines
    before it (a closing tag usually follows one, which is not thinking)."""
    size = next(
        (n for n in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-n:])), 0
    )
    body = text[: len(text) - size]
    return size + len(body) - len(body.rstrip("\n"))
