"""Golden shapes of `/v1/models`: ModelInfo and a list page (api-spec §9, §10;
api-version §19.14).

ModelInfo comes from the model table's own `ModelEntry.info()` over a scripted
engine, which takes tools and no images, as `/v1/models` would report it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from parley.config import ModelConfig
from parley.core.pagination import paginate
from parley.engines.registry import ModelEntry
from parley.engines.scripted import ScriptedEngine
from parley.protocol.models import ModelInfo
from tests.protocol.golden import ASPECTS, Aspect, check_golden


def model_info() -> ModelInfo:
    config = ModelConfig(
        id="claude-sonnet-4-5-20250929",
        engine="scripted",
        display_name="Claude Sonnet 4.5",
        created_at="2025-09-29T00:00:00Z",
        max_output_tokens=64000,
    )
    return ModelEntry(config, ScriptedEngine(context_window=200000)).info()


def rendered(model: BaseModel) -> Any:
    # As routes/models.py renders it: JSONResponse(model.model_dump(mode="json")).
    return json.loads(json.dumps(model.model_dump(mode="json")))


CASES: dict[str, Callable[[], Any]] = {
    "model_info": lambda: rendered(model_info()),
    "models_page": lambda: rendered(paginate([model_info()], lambda m: m.id, limit=20)),
}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, aspect: Aspect) -> None:
    check_golden(name, CASES[name](), aspect)
