"""One batch request through the same pipeline as `POST /v1/messages` (non-streaming)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from parley.core.batches import errored_result, succeeded_result
from parley.core.bodies import parse_params
from parley.core.generation import Meter
from parley.core.image_sources import ImageFetcher
from parley.core.messages import collect_message, message_events, prepare_message
from parley.core.versions import APIVersion
from parley.engines.registry import ModelRegistry
from parley.errors import APIError, InternalServerError
from parley.protocol.requests import MessageCreateParams
from parley.ratelimit.limiter import Clock, RateLimiter
from parley.store.batch_leases import ClaimedRequest, Outcome
from parley.store.keys import ApiKey
from parley.store.usage import UsageRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ran:
    outcome: Outcome
    usage: UsageRecord | None  # None when the request never reached an engine


async def run_request(
    request: ClaimedRequest,
    key: ApiKey | None,
    registry: ModelRegistry,
    limiter: RateLimiter,
    clock: Clock,
    images: ImageFetcher | None = None,
) -> Ran:
    """Validate, generate and collect one request. Every failure becomes an `errored`
    result carrying the error envelope /v1/messages would have answered (api-spec §11)."""
    meter: Meter | None = None
    model = ""
    try:
        params = parse_params(
            request.params.encode(), MessageCreateParams, APIVersion(request.api_version)
        )
        entry = registry.resolve(params.model)
        model = entry.id
        if key is not None:
            await limiter.check_budget(key)
        prepared = await prepare_message(
            entry.engine, params, entry.max_output_tokens, images=images
        )
        meter = Meter()
        message = await collect_message(message_events(entry.engine, prepared, meter=meter))
        state, result = "succeeded", succeeded_result(message)
    except APIError as exc:
        state, result = "errored", errored_result(exc)
    except Exception:
        log.exception("batch request %s/%s failed", request.batch_id, request.custom_id)
        state, result = "errored", errored_result(InternalServerError("Internal server error"))
    usage = None
    if meter is not None:
        usage = UsageRecord(
            key_id=request.key_id,
            model=model,
            at=datetime.fromtimestamp(clock(), UTC),
            input_tokens=meter.input_tokens,
            output_tokens=meter.output_tokens,
        )
    return Ran(Outcome(request.batch_id, request.position, state, result), usage)
