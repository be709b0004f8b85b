"""One batch request through the message pipeline, as a non-streaming request at
batch priority."""

from __future__ import annotations

import logging

from parley.core.batches import errored_result, succeeded_result
from parley.core.bodies import parse_params
from parley.core.records import ApiKey
from parley.core.versions import APIVersion
from parley.errors import APIError, AuthenticationError, InternalServerError
from parley.pipeline.messages import MessagePipeline
from parley.protocol.requests import MessageCreateParams
from parley.store.batch_leases import ClaimedRequest, Outcome

log = logging.getLogger(__name__)


async def run_request(
    request: ClaimedRequest, key: ApiKey | None, pipeline: MessagePipeline
) -> Outcome:
    """Validate, generate and collect one request. Every failure becomes an `errored`
    result carrying the error envelope /v1/messages would have answered (api-spec §11);
    usage is recorded by the pipeline for every request that reached an engine."""
    try:
        if key is None:
            # The key that created the batch is gone from the store.
            raise AuthenticationError("invalid x-api-key")
        params = parse_params(
            request.params.encode(), MessageCreateParams, APIVersion(request.api_version)
        )
        run = await pipeline.open(key, params, priority="batch")
        state, result = "succeeded", succeeded_result(await run.message())
    except APIError as exc:
        state, result = "errored", errored_result(exc)
    except Exception:
        log.exception("batch request %s/%s failed", request.batch_id, request.custom_id)
        state, result = "errored", errored_result(InternalServerError("Internal server error"))
    return Outcome(request.batch_id, request.position, state, result)
