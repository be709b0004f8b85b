"""Log lines as text or JSON, with the request id of the request being handled."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from parley.services import Services
from parley.telemetry.context import RequestContext, enter_request, leave_request
from parley.telemetry.logs import JsonFormatter, RequestIdFilter, TextFormatter
from tests.conftest import asgi_client, old_sdk_headers


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, logging.Handler, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("parley.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler, out
    logger.removeHandler(handler)


def test_json_lines_carry_the_request_id_inside_a_request_only(
    captured: tuple[logging.Logger, logging.Handler, io.StringIO],
) -> None:
    logger, handler, out = captured
    handler.setFormatter(JsonFormatter())
    logger.info("outside %s", "any request")
    token = enter_request(RequestContext("req_011abc", 0.0))
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed: %d", 42)
    finally:
        leave_request(token)
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert outside["message"] == "outside any request"
    assert outside["level"] == "INFO"
    assert outside["logger"] == "parley.test_logs"
    assert outside["time"].endswith("Z")
    assert "request_id" not in outside
    assert inside["request_id"] == "req_011abc"
    assert inside["message"] == "failed: 42"
    assert inside["level"] == "ERROR"
    assert "ValueError: boom" in inside["exception"]


def test_text_lines_name_the_request_id_at_the_end(
    captured: tuple[logging.Logger, logging.Handler, io.StringIO],
) -> None:
    logger, handler, out = captured
    handler.setFormatter(TextFormatter())
    logger.warning("plain")
    token = enter_request(RequestContext("req_011xyz", 0.0))
    try:
        logger.warning("during")
    finally:
        leave_request(token)
    plain, during = out.getvalue().splitlines()
    assert plain.endswith("WARNING parley.test_logs: plain")
    assert during.endswith("WARNING parley.test_logs: during request_id=req_011xyz")


async def test_parleys_own_lines_during_a_request_carry_its_id(
    services: Services,
    api_key: str,
    captured: tuple[logging.Logger, logging.Handler, io.StringIO],
) -> None:
    # A tool call whose input does not match its schema is logged while the message
    # is made, inside the request.
    _, handler, out = captured
    handler.setFormatter(JsonFormatter())
    messages_log = logging.getLogger("parley.core.messages")
    messages_log.addHandler(handler)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    try:
        async with asgi_client(services, old_sdk_headers(api_key)) as http:
            response = await http.post(
                "/v1/messages",
                json={
                    "model": "scripted",
                    "max_tokens": 20,
                    "tools": [{"name": "count", "input_schema": schema}],
                    "messages": [{"role": "user", "content": 'tool: count {"n": "two"}'}],
                },
            )
    finally:
        messages_log.removeHandler(handler)
    assert response.status_code == 200, response.text
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["message"].startswith("tool count input does not match its schema")
    assert line["request_id"] == response.headers["request-id"]


@pytest.mark.parametrize("msecs", [0.0, 5.7, 999.9])
def test_text_lines_keep_the_logging_default_time_stamp(msecs: float) -> None:
    # The stamp's seconds are formatted once a second; the text must not change.
    formatter = TextFormatter()
    standard = logging.Formatter("%(asctime)s")
    for created in (1_700_000_000.0, 1_700_000_000.5, 1_700_000_061.0):
        record = logging.LogRecord("parley", logging.INFO, __file__, 1, "hi", (), None)
        record.created, record.msecs = created, msecs
        assert formatter.formatTime(record) == standard.formatTime(record)
