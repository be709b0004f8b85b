"""The operator's view of a real `parley serve`: probes, a scrape after known traffic,
JSON log lines carrying the request id, and traces sent over OTLP/HTTP to a
collector on loopback."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import SCRIPTED_CONFIG, SCRIPTED_MODEL
from tests.serverproc import ParleyProcess
from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: what Parley exported, decoded."""

    url: str = ""
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)

    def spans(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(trace id, span name, resource attributes) of every span received."""
        found = []
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append((span.trace_id.hex(), span.name, resource))
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["content-length"]))
            if self.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            if self.path == "/v1/traces":
                received.requests.append(ExportTraceServiceRequest.FromString(raw))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(tmp_path: Path, collector: Collector) -> Iterator[ParleyProcess]:
    env = {
        "PARLEY_LOG_FORMAT": "json",
        "PARLEY_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: spans leave soon after they end
    }
    process = ParleyProcess(tmp_path / "data", config=SCRIPTED_CONFIG, env=env).start()
    yield process
    process.stop()


def test_probes_metrics_json_logs_and_traces(server: ParleyProcess, collector: Collector) -> None:
    with httpx.Client(base_url=server.base_url) as anonymous:
        alive = anonymous.get("/healthz")
        ready = anonymous.get("/readyz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"

    client = anthropic.Anthropic(
        base_url=server.base_url,
        api_key=server.api_key,
        max_retries=0,
        default_headers={"traceparent": TRACEPARENT},
    )
    with client:
        raw = client.messages.with_raw_response.create(
            model="scripted",
            max_tokens=20,
            messages=[{"role": "user", "content": "say: one two three"}],
        )
        message = raw.parse()
        with client.messages.stream(
            model=SCRIPTED_MODEL,
            max_tokens=20,
            messages=[{"role": "user", "content": "say: four five"}],
        ) as stream:
            streamed = stream.get_final_message()
    request_id = raw.headers["request-id"]

    with httpx.Client(base_url=server.base_url) as anonymous:
        scraped = anonymous.get("/metrics")
    assert scraped.status_code == 200
    s = Scrape(scraped.text)
    messages = {"route": "/v1/messages", "method": "POST", "status": "200"}
    assert s.get("parley_http_requests_total", **messages, model=SCRIPTED_MODEL) == 2
    assert (
        s.get("parley_http_requests_total", route="/readyz", method="GET", status="200", model="")
        == 1
    )
    assert s.get("parley_time_to_first_token_seconds_count", model=SCRIPTED_MODEL) == 2
    tokens = {"model": SCRIPTED_MODEL, "priority": "interactive"}
    assert s.get("parley_tokens_total", **tokens, type="output") == (
        message.usage.output_tokens + streamed.usage.output_tokens
    )
    assert s.get("parley_tokens_total", **tokens, type="input") == (
        message.usage.input_tokens + streamed.usage.input_tokens
    )
    assert s.get("parley_engine_slots", model=SCRIPTED_MODEL) == 2
    assert s.get("process_resident_memory_bytes") > 0

    # Traces: the first message continued the client's trace; both were exported.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = {name for trace, name, _ in collector.spans() if trace == TRACE_ID}
        if {"POST /v1/messages", "generation", "settle"} <= names:
            break
        time.sleep(0.05)
    assert {"POST /v1/messages", "auth", "prepare", "admit", "open", "generation"} <= names
    assert {resource["service.name"] for _, _, resource in collector.spans()} == {"parley"}

    # Logs: JSON, one object a line; the access line of the message carries its id.
    lines = [json.loads(line) for line in server.stderr_path.read_text().splitlines() if line]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    access = [
        line
        for line in lines
        if line["logger"] == "uvicorn.access" and line.get("path") == "/v1/messages"
    ]
    # One line a request, written once it was answered (uvicorn's own is off).
    assert len(access) == 2
    assert [line["request_id"] for line in access][:1] == [request_id]
    assert access[0]["status"] == 200
    assert access[0]["method"] == "POST"
    # Lines logged outside any request carry no request id.
    ready_line = next(line for line in lines if "Parley ready on" in line["message"])
    assert "request_id" not in ready_line
