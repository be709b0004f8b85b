"""In process: once draining, API requests get a retryable 529 with `connection:
close`, other paths are still served, and `Services.draining` says so."""

from __future__ import annotations

import logging
import signal
import time

import httpx
import pytest
import uvicorn

from parley.server.app import create_app
from parley.server.serve import _Server
from parley.services import Services
from parley.telemetry.context import RequestContext, enter_request, leave_request
from parley.telemetry.logs import RequestIdFilter
from tests.waiting import eventually


async def test_a_draining_process_turns_api_requests_away(
    services: Services, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/v1/models")).status_code == 200
    assert not services.draining
    services.lifecycle.start_draining()
    assert services.draining
    response = await client.get("/v1/models")
    assert response.status_code == 529
    assert response.headers["x-should-retry"] == "true"
    assert response.headers["connection"] == "close"
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": response.headers["request-id"],
    }
    assert (await client.get("/")).status_code == 200  # not an API path: still served


async def test_a_signal_that_interrupts_a_request_drains_outside_it(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # A signal's handler runs inside whatever code it interrupted, often a request's
    # task; the drain it starts is no request's, and its log lines carry no id.
    server = _Server(uvicorn.Config(create_app(services)), services, (signal.SIGTERM,))
    server.started = True
    caplog.handler.addFilter(RequestIdFilter())
    token = enter_request(RequestContext("req_interrupted", time.perf_counter()))
    try:
        with caplog.at_level(logging.INFO, logger="parley"):
            server.handle_exit(signal.SIGTERM, None)
            await eventually(lambda: server.should_exit)
    finally:
        leave_request(token)
    draining = [r for r in caplog.records if r.getMessage().startswith("draining:")]
    assert len(draining) == 1
    assert getattr(draining[0], "request_id", "missing") is None
    assert services.draining
