"""Message threads (beta `message-threads-2026-08-12`): the rules, the errors and the
stored form, without any IO (message-threads doc §1).

A thread is a conversation the server keeps under each reply's id. A `create` turn
is an ordinary request whose conversation (system, tools, messages and the reply) is
kept; a `continue` names the reply it follows and sends only the new messages: the
server puts the kept `system`, `tools` and history in front of them, so the request
that runs is exactly the full-conversation request the client would otherwise have
sent (same prompt, same tokens, same errors).

Fixed for a thread's lifetime (`thread_fingerprint_mismatch` when a turn differs):
the model (by its resolved id, so an alias and its model are the same), `tool_choice`
(the SDK's own tests expect a changed one to be refused) and `output_config` (the
SDKs let every other field change per turn, but not this one). `system` and `tools`
come from the thread and may not be sent again on a `continue`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from parley.errors import InvalidRequestError, NotFoundError
from parley.protocol.requests import MessageCreateParams
from parley.protocol.responses import Message

THREADS_BETA = "message-threads-2026-08-12"
FINGERPRINT_FIELDS = ("model", "tool_choice", "output_config")
# Taken from the thread on a `continue` (the SDK leaves them out, `_thread_state.py`).
CREATE_ONLY_FIELDS = ("system", "tools")
# Blocks of the inline-tools beta (tool changes in a `system` message): not served.
UNTHREADABLE_BLOCKS = ("tool_addition", "tool_removal")
_CREATE = '`thread: {"type": "create"}`'


# --- the errors (message-threads doc §1.4; wording from the SDK's descriptions) -------


def thread_not_found(previous_message_id: str) -> NotFoundError:
    return NotFoundError(
        f"thread.previous_message_id: No usable Thread state was found for "
        f"`{previous_message_id}`. Replay the full conversation with {_CREATE} to start "
        "a new Thread.",
        details={"error_code": "thread_not_found"},
    )


def thread_already_continued(previous_message_id: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"thread.previous_message_id: The response `{previous_message_id}` has already "
        "been continued, and each response can be continued only once. Continue from the "
        "Thread's most recent response `id`.",
        details={"error_code": "thread_already_continued"},
    )


def thread_continue_in_flight(previous_message_id: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"thread.previous_message_id: Another request is still continuing from "
        f"`{previous_message_id}`. Wait for it to complete and continue from its response "
        f"`id`, or replay the full conversation with {_CREATE}.",
        details={"error_code": "thread_continue_in_flight"},
    )


def thread_fingerprint_mismatch(fields: Sequence[str]) -> InvalidRequestError:
    plural = len(fields) > 1
    return InvalidRequestError(
        f"thread: A field that must stay the same across a Thread's turns differs from the "
        f"value stored with the Thread; differing field{'s' if plural else ''}: "
        f"{', '.join(f'`{f}`' for f in fields)}. Send the stored value"
        f"{'s' if plural else ''}, or replay the full conversation with {_CREATE} to "
        "change them.",
        details={"error_code": "thread_fingerprint_mismatch"},
    )


def thread_unsupported_request(unsupported: Sequence[str]) -> InvalidRequestError:
    names = ", ".join(f"`{u}`" for u in unsupported)
    return InvalidRequestError(
        f"thread: Threads do not support {names} on this server. Send the full "
        "conversation without `thread`.",
        details={"error_code": "thread_unsupported_request", "unsupported": list(unsupported)},
    )


def create_only_field_sent(field: str) -> InvalidRequestError:
    # The SDKs never send these on a `continue`; another client that does learns why.
    return InvalidRequestError(
        f"{field}: not allowed with `thread.type` `continue`: the Thread keeps the "
        f"`{field}` it was created with. Replay the full conversation with {_CREATE} to "
        "change it."
    )


def unthreadable_blocks(data: Any) -> list[str]:
    """Which inline-tools blocks a raw request body that asks for a thread holds: they
    are named with `thread_unsupported_request`, so the SDK's tool runner can resend
    the turn without a thread (message-threads doc §1.5)."""
    if not isinstance(data, dict) or not data.get("thread"):
        return []
    found: set[str] = set()
    messages = data.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            kind = block.get("type") if isinstance(block, dict) else None
            if kind in UNTHREADABLE_BLOCKS:
                found.add(kind)
    return [kind for kind in UNTHREADABLE_BLOCKS if kind in found]


# --- the fingerprint ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return value


def fingerprint(params: MessageCreateParams, model_id: str) -> dict[str, Any]:
    """The fields fixed for a thread's lifetime, in a form that compares by meaning:
    no `tool_choice` is `auto`, and `disable_parallel_tool_use: false` is its default."""
    choice = _plain(params.tool_choice) or {"type": "auto"}
    if choice.get("disable_parallel_tool_use") is False:
        choice = {k: v for k, v in choice.items() if k != "disable_parallel_tool_use"}
    return {
        "model": model_id,
        "tool_choice": choice,
        "output_config": _plain(params.output_config) or None,
    }


def differing_fields(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [f for f in FINGERPRINT_FIELDS if stored.get(f) != current.get(f)]


# --- the stored form ------------------------------------------------------------------


def _without_cache_control(value: Any) -> Any:
    """Cache markers were set for the request that first sent a block; a whole history
    sent again carries none (the SDKs' own replay drops them the same way). Only keys
    that hold blocks are followed, so a tool's `input` stays as it is."""
    if isinstance(value, dict):
        return {
            k: _without_cache_control(v) if k in ("content", "source") else v
            for k, v in value.items()
            if k != "cache_control"
        }
    if isinstance(value, list):
        return [_without_cache_control(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def new_messages_json(params: MessageCreateParams) -> str:
    """A turn's own messages, as the client sent them, without cache markers."""
    sent = [m.model_dump(mode="json", exclude_unset=True) for m in params.messages]
    return dumps([_without_cache_control(m) for m in sent])


def reply_json(message: Message) -> str:
    return dumps([block.model_dump(mode="json") for block in message.content])


def system_json(params: MessageCreateParams) -> str | None:
    if params.system is None:
        return None
    if isinstance(params.system, str):
        return dumps(params.system)
    return dumps([b.model_dump(mode="json", exclude_unset=True) for b in params.system])


def tools_json(params: MessageCreateParams) -> str | None:
    if params.tools is None:
        return None
    return dumps([t.model_dump(mode="json", exclude_unset=True) for t in params.tools])


@dataclass(frozen=True)
class StoredTurn:
    """One kept turn: its messages (JSON list) and its reply's content (JSON list)."""

    messages: str
    reply: str


def history(turns: Sequence[StoredTurn]) -> list[dict[str, Any]]:
    """The kept conversation: each turn's messages followed by its reply."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        messages += json.loads(turn.messages)
        messages.append({"role": "assistant", "content": json.loads(turn.reply)})
    return messages


def continued_params(
    params: MessageCreateParams,
    system: str | None,
    tools: str | None,
    turns: Sequence[StoredTurn],
) -> MessageCreateParams:
    """The full-conversation request a `continue` stands for: the thread's system,
    tools and history, then the turn's own messages and every other field as sent."""
    for field in CREATE_ONLY_FIELDS:
        if field in params.model_fields_set:
            raise create_only_field_sent(field)
    data = params.model_dump(mode="json", exclude_unset=True, exclude={"thread"})
    data["messages"] = history(turns) + data["messages"]
    if system is not None:
        data["system"] = json.loads(system)
    if tools is not None:
        data["tools"] = json.loads(tools)
    return MessageCreateParams.model_validate(data)
