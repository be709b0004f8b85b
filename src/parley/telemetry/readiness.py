"""Whether this process should be sent requests: what `/readyz` answers.

Ready means: not draining, the store answers, the rate-limit buckets answer (Redis,
when configured), and every model has an engine that takes requests. Engines are
asked what they know without IO (an upstream's health comes from the router's
ejections and health checks), so a probe never sends traffic upstream; the store
and the buckets get one round trip each, at once, each within `within` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from parley.engines.base import Engine
from parley.engines.registry import ModelRegistry
from parley.engines.routing import RoutedEngine
from parley.ratelimit.limiter import RateLimiter
from parley.store.database import Database, ping

__all__ = ["Readiness", "check_readiness"]

OK = "ok"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    draining: bool
    store: str  # "ok", or why not
    limiter: str
    models: dict[str, str]

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "draining": self.draining,
            "store": self.store,
            "limiter": self.limiter,
            "models": self.models,
        }


async def check_readiness(
    database: Database,
    limiter: RateLimiter,
    models: ModelRegistry,
    *,
    draining: bool,
    within: float = 2.0,
) -> Readiness:
    store, buckets = await asyncio.gather(
        _check(ping(database), within), _check(limiter.ping(), within)
    )
    engines = {entry.id: _engine_state(entry.engine) for entry in models.entries}
    ready = (
        not draining and store == OK and buckets == OK and all(v == OK for v in engines.values())
    )
    return Readiness(ready, draining, store, buckets, engines)


def _engine_state(engine: Engine[Any]) -> str:
    if engine.is_ready():
        return OK
    if isinstance(engine, RoutedEngine):
        return f"every backend ({len(engine.backends)}) is out of rotation"
    return "not started"


async def _check(work: Awaitable[None], within: float) -> str:
    try:
        async with asyncio.timeout(within):
            await work
    except TimeoutError:
        return f"no answer within {within:g} s"
    except Exception as exc:
        # The class only: messages can name hosts, users or URLs with passwords.
        return f"unreachable ({type(exc).__name__})"
    return OK
