"""Extended thinking: the request's rules, and the signatures on thinking blocks.

A thinking block Parley returns carries a signature, an HMAC-SHA256 of the block's
thinking text under a server key (kept in the data dir, or shared by replicas
through the config). A block sent back in a later turn must carry a signature
that matches its text, as the real API checks its own (api-spec §5.3: "must be
passed back unchanged"); a tampered one is the API's 400. Blocks from an
Anthropic upstream carry Anthropic's signatures: they go back to it unchanged, for
it to check.

The request's rules, with the API's wording:
- `budget_tokens` is at least 1024 (schema) and below `max_tokens`;
- a model that cannot think refuses `enabled` and points at `adaptive`, which
  every model accepts: the model decides whether and how much to think, and one
  that cannot think never does;
- with thinking off, effort above `high` is refused, and a final assistant turn
  may not hold thinking;
- with `enabled`, an assistant turn answered by tool results must start with its
  thinking (the API asks for it back to continue the reasoning).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from parley.core.generation import EngineCapabilities, Thinking
from parley.errors import InvalidRequestError
from parley.protocol.content import (
    RedactedThinkingBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
)
from parley.protocol.requests import (
    CountTokensParams,
    MessageCreateParams,
    MessageParam,
    ThinkingAdaptive,
    ThinkingEnabled,
)

DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_SIGNATURE_VERSION = b"\x01"
# Share of `max_tokens` an adaptive model may spend thinking, by effort.
_ADAPTIVE_SHARE = {"low": 0.125, "medium": 0.25, "high": 0.5, "xhigh": 0.75, "max": 0.9}
MIN_BUDGET = 1024


class ThinkingSigner:
    """Signs thinking text and checks signatures sent back, with one server key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a thinking key needs at least 16 bytes")
        self._key = key

    def sign(self, thinking: str) -> str:
        mac = hmac.new(self._key, thinking.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(_SIGNATURE_VERSION + mac).decode("ascii")

    def verify(self, thinking: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(thinking), signature)


def thinking_of(
    params: MessageCreateParams | CountTokensParams,
    capabilities: EngineCapabilities,
    max_tokens: int | None,
) -> Thinking:
    """The neutral thinking request; `max_tokens` is None for count_tokens."""
    config = params.thinking
    effort = params.output_config.effort if params.output_config else None
    if isinstance(config, ThinkingEnabled):
        if not (capabilities.thinking and capabilities.thinking_budgets):
            raise InvalidRequestError(
                '"thinking.type.enabled" is not supported for this model. Use '
                '"thinking.type.adaptive" and "output_config.effort" to control thinking '
                "behavior."
            )
        if max_tokens is not None and config.budget_tokens >= max_tokens:
            raise InvalidRequestError(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                f"our documentation at {DOCS}#max-tokens-and-context-window-size"
            )
        return Thinking("enabled", config.budget_tokens, effort, config.display == "omitted")
    thinks = isinstance(config, ThinkingAdaptive) and capabilities.thinking
    if not thinks and effort in ("xhigh", "max"):
        raise InvalidRequestError(
            f"output_config.effort '{effort}' is not supported when thinking is disabled on "
            "this model. Use effort 'high' or below, or enable thinking."
        )
    if not thinks:
        return Thinking("off", None, effort)
    assert isinstance(config, ThinkingAdaptive)
    budget = None
    if max_tokens is not None:
        budget = int(max_tokens * _ADAPTIVE_SHARE[effort or "high"])
    return Thinking("adaptive", budget, effort, config.display == "omitted")


def check_thinking_turns(messages: list[MessageParam], thinking: Thinking) -> None:
    """The API's rules on thinking blocks sent back (see the module docstring)."""
    if not messages:
        return
    last = len(messages) - 1
    final = messages[last]
    if thinking.mode == "off" and final.role == "assistant" and not isinstance(final.content, str):
        for j, block in enumerate(final.content):
            if isinstance(block, ThinkingBlockParam | RedactedThinkingBlockParam):
                raise InvalidRequestError(
                    f"messages.{last}.content.{j}: When thinking is disabled, an `assistant` "
                    "message in the final position cannot contain `thinking`. To use thinking "
                    "blocks, enable `thinking` in your request."
                )
    if thinking.mode != "enabled" or final.role != "user" or isinstance(final.content, str):
        return
    if not any(isinstance(b, ToolResultBlockParam) for b in final.content):
        return
    i = last - 1
    if i < 0 or messages[i].role != "assistant":
        return
    content = messages[i].content
    first = content[0] if not isinstance(content, str) and content else None
    if isinstance(first, ThinkingBlockParam | RedactedThinkingBlockParam):
        return
    found = "text" if first is None else first.type
    raise InvalidRequestError(
        f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        f"`{found}`. When `thinking` is enabled, a final `assistant` message must start with a "
        "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
        "We recommend you include thinking blocks from previous turns. To avoid this "
        f"requirement, disable `thinking`. Please consult our documentation at {DOCS}"
    )


def invalid_signature(path: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}: Invalid `signature` in `thinking` block")
