"""The request being handled by this task, for the layers that observe it.

The edge middleware sets it once per HTTP request; the pipeline adds the model it
resolved; log lines, metrics and spans read it. Work outside a request (the batch
worker, start-up) sees None.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestContext", "current_request", "enter_request", "leave_request"]


@dataclass(slots=True, eq=False)
class RequestContext:
    request_id: str
    started: float  # time.perf_counter() when the edge took the request
    model: str = ""  # the model id the pipeline resolved (never the name the client sent)
    span: Any = None  # the request's trace span, when tracing is on


_CURRENT: ContextVar[RequestContext | None] = ContextVar("parley_request", default=None)


def current_request() -> RequestContext | None:
    return _CURRENT.get()


def enter_request(context: RequestContext) -> Token[RequestContext | None]:
    return _CURRENT.set(context)


def leave_request(token: Token[RequestContext | None]) -> None:
    _CURRENT.reset(token)
