"""Read a live SSE response event by event, noting when each event arrived."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class TimedEvent:
    at: float
    name: str
    data: dict[str, Any]


def iter_events(response: httpx.Response) -> Iterator[TimedEvent]:
    name: str | None = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            assert name is not None, "data line without an event line"
            yield TimedEvent(time.monotonic(), name, json.loads(line[len("data: ") :]))
            name = None


def headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
