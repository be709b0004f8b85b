"""tool_use / tool_result pairing across the messages (api-spec §5.3), checked on the
messages as sent, before same-role turns are merged, with the API's wording."""

from __future__ import annotations

from parley.errors import InvalidRequestError
from parley.protocol.content import ToolResultBlockParam, ToolUseBlockParam
from parley.protocol.requests import MessageParam


def _calls(message: MessageParam) -> list[tuple[int, ToolUseBlockParam]]:
    if isinstance(message.content, str):
        return []
    return [(j, b) for j, b in enumerate(message.content) if isinstance(b, ToolUseBlockParam)]


def _results(message: MessageParam) -> list[tuple[int, ToolResultBlockParam]]:
    if isinstance(message.content, str):
        return []
    return [(j, b) for j, b in enumerate(message.content) if isinstance(b, ToolResultBlockParam)]


def check_tool_pairing(messages: list[MessageParam]) -> dict[str, str]:
    """Raise on the first pairing problem; return the called tools' names by call id.

    Every call in an assistant message must be answered in the message right after
    it (a user message), each result must answer a call of the message right before
    it, call ids are unique in the conversation and each call has one result.
    """
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        _check_roles(message, i)
        calls = _calls(message)
        for j, call in calls:
            if call.id in names:
                raise InvalidRequestError(
                    f"messages.{i}.content.{j}: `tool_use` ids must be unique"
                )
            names[call.id] = call.name
        if message.role == "user":
            _check_results(messages, i)
        if calls:
            _check_answered(messages, i, [c.id for _, c in calls])
    return names


def _check_roles(message: MessageParam, i: int) -> None:
    # Wording unconfirmed: calls belong to the assistant, results to the user.
    if message.role != "assistant" and (calls := _calls(message)):
        raise InvalidRequestError(
            f"messages.{i}.content.{calls[0][0]}: `tool_use` blocks may only appear in "
            "assistant messages"
        )
    if message.role != "user" and (results := _results(message)):
        raise InvalidRequestError(
            f"messages.{i}.content.{results[0][0]}: `tool_result` blocks may only appear "
            "in user messages"
        )


def _check_results(messages: list[MessageParam], i: int) -> None:
    previous = messages[i - 1] if i > 0 and messages[i - 1].role == "assistant" else None
    expected = {c.id for _, c in _calls(previous)} if previous is not None else set()
    answered: set[str] = set()
    for j, result in _results(messages[i]):
        if result.tool_use_id not in expected:
            raise InvalidRequestError(
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {result.tool_use_id}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
        if result.tool_use_id in answered:
            raise InvalidRequestError(
                f"messages.{i}.content.{j}: each tool_use must have a single result. Found "
                f"multiple `tool_result` blocks with id: {result.tool_use_id}"
            )
        answered.add(result.tool_use_id)


def _check_answered(messages: list[MessageParam], i: int, ids: list[str]) -> None:
    following = messages[i + 1] if i + 1 < len(messages) else None
    answered: set[str] = set()
    if following is not None and following.role == "user":
        answered = {r.tool_use_id for _, r in _results(following)}
    missing = [id_ for id_ in ids if id_ not in answered]
    if missing:
        # Also for a final assistant message: a call cannot be continued as a prefill.
        raise InvalidRequestError(
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
            "corresponding `tool_result` block in the next message."
        )
