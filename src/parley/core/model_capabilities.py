"""An engine's capabilities as the `capabilities` object of `/v1/models`
(api-spec §9, api-version §19.14). Each entry says what the request fields do on
this model, as docs/fidelity.md tabulates them."""

from __future__ import annotations

from parley.core.generation import EngineCapabilities
from parley.protocol.models import (
    ContextManagementCapability,
    EffortCapability,
    ModelCapabilities,
    ServerToolsCapability,
    Supported,
    ThinkingCapability,
    ThinkingTypes,
)


def model_capabilities(engine: EngineCapabilities) -> ModelCapabilities:
    no, yes = Supported(supported=False), Supported(supported=True)
    # Above `high`, effort needs thinking (the API refuses it with thinking off).
    deep = Supported(supported=engine.thinking)
    return ModelCapabilities(
        batch=yes,
        # Only engines that can point at what they quote: an Anthropic upstream (natively)
        # and the scripted engine (`cite:`). A small local model cannot cite reliably,
        # so documents with citations enabled are refused there, never silently uncited.
        citations=Supported(supported=engine.citations),
        code_execution=no,
        # Edits are applied by Parley itself, before the prompt is built, on any engine.
        context_management=ContextManagementCapability(
            supported=True,
            clear_tool_uses_20250919=yes,
            clear_thinking_20251015=yes,
            compact_20260112=no,
        ),
        effort=EffortCapability(
            supported=True, low=yes, medium=yes, high=yes, xhigh=deep, max=deep
        ),
        image_input=Supported(supported=engine.images),
        # Every engine reads PDFs: Parley extracts their text page by page for models
        # that read text, and an Anthropic upstream is sent the PDF itself.
        pdf_input=yes,
        server_tools=ServerToolsCapability(supported=False, code_execution=no, web_search=no),
        structured_outputs=Supported(supported=engine.structured_outputs),
        # `adaptive` lets the model decide, so every model takes it (one that cannot
        # think never does); `between_tools` and `disabled` turn thinking off.
        thinking=ThinkingCapability(
            supported=engine.thinking,
            types=ThinkingTypes(
                adaptive=yes,
                enabled=Supported(supported=engine.thinking and engine.thinking_budgets),
                between_tools=yes,
                disabled=yes,
            ),
        ),
        tool_use=Supported(supported=engine.tools),
    )
