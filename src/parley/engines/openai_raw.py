"""A prefill continued through a server's raw completions endpoint (`/v1/completions`),
for servers whose chat endpoint cannot continue a final assistant message.

Parley renders the prompt itself with the model's own chat template
(engines/chat_template.py), ending inside the assistant's turn after the prefill,
so the reply continues it (api-spec §5.2). Tools are written into that prompt the
way Parley's embedded engine writes them, and calls are read back from the text.
"""

from __future__ import annotations

from typing import Any

from parley.config import OpenAIBackendConfig
from parley.core.generation import GenerationRequest
from parley.engines.chat_template import ChatTemplate
from parley.engines.openai_flavors import Flavor, TemplateSource
from parley.engines.openai_wire import sampling_fields
from parley.errors import InvalidRequestError

RAW_PATH = "completions"


def raw_template(template: TemplateSource) -> ChatTemplate:
    # No BOS in the text: the server adds the model's own when it tokenizes a prompt
    # (llama.cpp and vLLM both do for completions), and a second one would hurt.
    return ChatTemplate(template.source, "", template.eos_token)


def check_raw(request: GenerationRequest) -> None:
    """What the raw path cannot carry, refused before anything is sent."""
    if any(turn.images for turn in request.turns):
        raise InvalidRequestError(
            f"{request.model} does not support assistant message prefill with image input."
        )
    if request.tools and request.tool_choice.required:
        raise InvalidRequestError(
            f"{request.model} does not support assistant message prefill with "
            f'tool_choice "{request.tool_choice.mode}".'
        )


def raw_body(
    request: GenerationRequest,
    config: OpenAIBackendConfig,
    flavor: Flavor,
    template: ChatTemplate,
) -> dict[str, Any]:
    return {
        "model": config.model,
        "prompt": template.render(request),
        **sampling_fields(request, config, flavor),
    }
