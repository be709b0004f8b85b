"""The request fields beyond the conversation: each one honoured, or refused with a 400.

docs/fidelity.md has the table (field -> honoured / refused / documented no-op, and
why). The fields the engines act on (tools, thinking, output format, sampling) are
read where the neutral request is built; this module decides the rest, which no
engine can act on, and says what the response reports for them.
"""

from __future__ import annotations

from parley.core.generation import EngineCapabilities
from parley.errors import InvalidRequestError
from parley.protocol.requests import CountTokensParams, MessageCreateParams


def check_prompt_fields(
    params: MessageCreateParams | CountTokensParams, capabilities: EngineCapabilities
) -> None:
    """Fields that messages and count_tokens share."""
    model = params.model
    if params.mcp_servers:
        # Parley connects to no MCP server on a client's behalf.
        raise InvalidRequestError(f"mcp_servers: model {model} does not support MCP servers.")
    if params.billing_policy is not None and params.billing_policy.bill_to == "user_profile":
        # The API rejects the request rather than bill the caller when the profile's
        # customer has no linked organization; Parley links none.
        raise InvalidRequestError(
            "billing_policy: the user profile has no linked organization that allows "
            "your organization to bill it."
        )
    if params.speed == "fast":
        raise InvalidRequestError(f"speed: fast mode is not supported for model {model}.")
    config = params.output_config
    if config is not None and config.task_budget is not None:
        raise InvalidRequestError(
            f"output_config.task_budget: task budgets are not supported for model {model}."
        )


def check_message_fields(params: MessageCreateParams, capabilities: EngineCapabilities) -> None:
    check_prompt_fields(params, capabilities)
    model = params.model
    if params.compaction is not None:
        raise InvalidRequestError(f"compaction: model {model} does not support compaction.")
    if params.container is not None:
        # Containers hold code execution and skills, which run on Anthropic's side.
        raise InvalidRequestError(f"container: model {model} does not support containers.")
    if params.inference_geo not in (None, "global"):
        raise InvalidRequestError(
            f"inference_geo: '{params.inference_geo}' is not available for model {model}; "
            "only 'global' is."
        )
    if isinstance(params.fallbacks, list) and params.fallbacks:
        # The API: "Some models don't support fallbacks; on those models, a list of
        # fallback models returns a 400 error" ("default" runs the model alone).
        raise InvalidRequestError(f"fallbacks: model {model} does not support fallbacks.")
    if params.fallback_credit_token is not None:
        # Tokens come from a refusal's stop_details; Parley mints none, so none matches
        # (the API: "a mismatch is a 400").
        raise InvalidRequestError(
            "fallback_credit_token: the token does not match a refusal of this organization."
        )
