"""An engine's capabilities as the `capabilities` object of `/v1/models`
(api-spec §9, api-version §19.14)."""

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
    return ModelCapabilities(
        batch=yes,
        # Only engines that can point at what they quote: an Anthropic upstream (natively)
        # and the scripted engine (`cite:`). A small local model cannot cite reliably,
        # so documents with citations enabled are refused there, never silently uncited.
        citations=Supported(supported=engine.citations),
        code_execution=no,
        # `context_management` and `output_config.effort` are accepted as no-ops only.
        context_management=ContextManagementCapability(supported=False),
        effort=EffortCapability(supported=False, low=no, medium=no, high=no, max=no),
        image_input=Supported(supported=engine.images),
        # Every engine reads PDFs: Parley extracts their text page by page for models
        # that read text, and an Anthropic upstream is sent the PDF itself.
        pdf_input=yes,
        server_tools=ServerToolsCapability(supported=False, code_execution=no, web_search=no),
        structured_outputs=no,
        # Thinking is not produced; `{"type": "disabled"}` is the one setting honoured.
        thinking=ThinkingCapability(
            supported=False,
            types=ThinkingTypes(adaptive=no, enabled=no, between_tools=no, disabled=yes),
        ),
        tool_use=Supported(supported=engine.tools),
    )
