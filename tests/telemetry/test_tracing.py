"""Traces of the request path, collected by an in-memory exporter (no network)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from parley.config import Settings
from parley.services import Services, start_services
from parley.telemetry.tracing import OtelTracing, Tracing, TracingUnavailable
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
PIPELINE = ["auth", "budget", "prepare", "admit", "open", "generation", "settle"]


@asynccontextmanager
async def traced(
    settings: Settings,
) -> AsyncIterator[tuple[Services, httpx.AsyncClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    svc = await start_services(settings, tracing=OtelTracing.exporting_to(exporter))
    try:
        key = (await svc.keys.store.create("test")).secret
        async with asgi_client(svc, old_sdk_headers(key)) as http:
            yield svc, http, exporter
    finally:
        await svc.aclose()


def body(prompt: str = "say: hello there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "scripted",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


async def test_a_message_continues_the_clients_trace(tmp_path: Path) -> None:
    async with traced(scripted_settings(tmp_path)) as (_, http, exporter):
        response = await http.post(
            "/v1/messages", json=body(), headers={"traceparent": TRACEPARENT}
        )
        assert response.status_code == 200
    spans = by_name(exporter.get_finished_spans())
    assert sorted(spans) == sorted([*PIPELINE, "POST /v1/messages"])

    server = spans["POST /v1/messages"]
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None
    assert server.parent.is_remote
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/messages"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["parley.request_id"] == response.headers["request-id"]
    for span in spans.values():
        assert format(span.context.trace_id, "032x") == TRACE_ID
        if span is not server:
            assert span.parent is not None
            assert span.parent.span_id == server.context.span_id

    generation = spans["generation"]
    assert generation.attributes is not None
    usage = response.json()["usage"]
    assert generation.attributes["gen_ai.request.model"] == SCRIPTED_MODEL
    assert generation.attributes["gen_ai.response.id"] == response.json()["id"]
    assert generation.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert generation.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert generation.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    [first] = [e for e in generation.events if e.name == "first_token"]
    assert generation.start_time is not None
    assert server.start_time is not None
    assert generation.start_time <= first.timestamp <= (generation.end_time or 0)
    assert first.attributes is not None
    seconds = first.attributes["parley.time_to_first_token_s"]
    assert isinstance(seconds, float)
    assert 0 < seconds * 1e9 <= first.timestamp - server.start_time + 1e6
    # In order: each step starts after the previous one ended.
    steps = [spans[name] for name in PIPELINE]
    for before, after in itertools.pairwise(steps):
        assert (before.end_time or 0) <= (after.start_time or 0), (before.name, after.name)


async def test_a_stream_without_traceparent_starts_a_trace(tmp_path: Path) -> None:
    async with traced(scripted_settings(tmp_path)) as (_, http, exporter):
        response = await http.post("/v1/messages", json=body(stream=True))
        assert response.status_code == 200
    spans = by_name(exporter.get_finished_spans())
    assert sorted(spans) == sorted([*PIPELINE, "POST /v1/messages"])
    assert spans["POST /v1/messages"].parent is None
    assert [e.name for e in spans["generation"].events] == ["first_token"]


async def test_a_failure_after_the_start_marks_the_generation(tmp_path: Path) -> None:
    async with traced(scripted_settings(tmp_path)) as (_, http, exporter):
        response = await http.post(
            "/v1/messages", json=body("say: a b\nfail: overloaded_error", stream=True)
        )
        assert "event: error" in response.text
    spans = by_name(exporter.get_finished_spans())
    generation = spans["generation"]
    assert generation.status.status_code == StatusCode.ERROR
    assert [e.name for e in generation.events] == ["first_token", "exception"]
    # The HTTP answer itself was a 200: the error travelled inside it.
    assert spans["POST /v1/messages"].status.status_code == StatusCode.UNSET


async def test_a_refused_request_ends_where_it_was_refused(tmp_path: Path) -> None:
    async with traced(scripted_settings(tmp_path)) as (_, http, exporter):
        response = await http.post("/v1/messages", json=body(max_tokens=5000))
        assert response.status_code == 400
    spans = by_name(exporter.get_finished_spans())
    assert sorted(spans) == sorted(["auth", "budget", "prepare", "POST /v1/messages"])
    assert spans["prepare"].status.status_code == StatusCode.ERROR
    server = spans["POST /v1/messages"]
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 400


async def test_batch_work_is_not_traced(tmp_path: Path) -> None:
    async with traced(scripted_settings(tmp_path, batch_worker=False)) as (svc, http, exporter):
        created = await http.post(
            "/v1/messages/batches", json={"requests": [{"custom_id": "a", "params": body()}]}
        )
        assert created.status_code == 200
        exporter.clear()
        await svc.batch_worker.run_until_idle()
        assert exporter.get_finished_spans() == ()


async def test_tracing_is_off_without_an_endpoint() -> None:
    assert not Tracing.from_endpoint(None).enabled
    tracing = Tracing.from_endpoint("http://127.0.0.1:4318")
    try:
        assert isinstance(tracing, OtelTracing)
    finally:
        tracing.shutdown()  # nothing was traced, so nothing is sent


def test_an_endpoint_without_opentelemetry_installed_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the `otel` extra were not installed: the exporter cannot be imported.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(TracingUnavailable, match=r"pip install 'parley\[otel\]'"):
        Tracing.from_endpoint("http://127.0.0.1:4318")
