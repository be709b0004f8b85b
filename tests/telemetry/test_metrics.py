"""GET /metrics in-process: known traffic, then the scraped values it must have made."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import ProcessCollector

import parley
from parley.config import ModelConfig, Tier
from parley.server.app import create_app
from parley.services import start_services
from parley.telemetry.metrics import SHARED_GAUGE_MODES, _StateCollector
from tests.conftest import SCRIPTED_MODEL, old_sdk_headers, running_app, scripted_settings
from tests.engines.upstream.fake_openai import FakeState, serve_asgi, serving
from tests.telemetry.scrape import Scrape, scrape

MESSAGES = "/v1/messages"


def body(prompt: str = "say: ok", **extra: Any) -> dict[str, Any]:
    return {
        "model": "scripted",  # an alias: labels carry the model id it resolves to
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


def counting_body() -> dict[str, Any]:
    return {k: v for k, v in body().items() if k != "max_tokens"}


def http_count(s: Scrape, route: str, status: str, model: str, method: str = "POST") -> float:
    labels = {"route": route, "method": method, "status": status, "model": model}
    total = s.value("parley_http_requests_total", **labels) or 0.0
    # The latency histogram counts the same requests under the same labels.
    assert (s.value("parley_http_request_duration_seconds_count", **labels) or 0.0) == total
    return total


async def test_requests_latency_ttft_and_tokens_after_known_traffic(tmp_path: Path) -> None:
    async with running_app(scripted_settings(tmp_path)) as (_, http):
        plain = [await http.post(MESSAGES, json=body(f"say: {w} and more")) for w in ("a", "b")]
        streamed = await http.post(MESSAGES, json=body("say: x y z", stream=True))
        too_many = await http.post(MESSAGES, json=body(max_tokens=5000))
        no_model = await http.post(MESSAGES, json={**body(), "model": "nope"})
        unparsable = await http.post(MESSAGES, json={"model": "scripted"})
        bad_key = await http.post(MESSAGES, json=body(), headers={"x-api-key": "sk-wrong"})
        counted = await http.post(f"{MESSAGES}/count_tokens", json=counting_body())
        lost = await http.get("/no/such/path")
        statuses = [r.status_code for r in (*plain, streamed, too_many, no_model, unparsable)]
        assert statuses == [200, 200, 200, 400, 404, 400]
        assert (bad_key.status_code, counted.status_code, lost.status_code) == (401, 200, 404)

        s = await scrape(http)

    assert http_count(s, MESSAGES, "200", SCRIPTED_MODEL) == 3
    # Refused after the model resolved: labelled with it; before: with no model.
    assert http_count(s, MESSAGES, "400", SCRIPTED_MODEL) == 1
    assert http_count(s, MESSAGES, "400", "") == 1
    assert http_count(s, MESSAGES, "404", "") == 1
    assert http_count(s, MESSAGES, "401", "") == 1
    assert http_count(s, f"{MESSAGES}/count_tokens", "200", SCRIPTED_MODEL) == 1
    # Paths nobody routes are one label, not one series each.
    assert http_count(s, "other", "404", "", method="GET") == 1
    assert s.get("parley_http_requests_in_flight") == 1  # the scrape itself

    assert s.get("parley_time_to_first_token_seconds_count", model=SCRIPTED_MODEL) == 3
    assert s.get("parley_time_to_first_token_seconds_sum", model=SCRIPTED_MODEL) > 0
    # Every first token came after its request arrived and before its response ended.
    latency = s.total("parley_http_request_duration_seconds_sum", route=MESSAGES, status="200")
    assert s.get("parley_time_to_first_token_seconds_sum", model=SCRIPTED_MODEL) <= latency

    usages = [r.json()["usage"] for r in plain]
    stream_usage = _stream_usage(streamed.text)
    tokens = {"model": SCRIPTED_MODEL, "priority": "interactive"}
    assert s.get("parley_tokens_total", **tokens, type="input") == sum(
        u["input_tokens"] for u in [*usages, stream_usage]
    )
    assert s.get("parley_tokens_total", **tokens, type="output") == sum(
        u["output_tokens"] for u in [*usages, stream_usage]
    )
    assert s.get("parley_tokens_total", **tokens, type="output") == 3 + 3 + 3
    assert s.get("parley_tokens_total", **tokens, type="cache_read_input") == 0
    assert s.get("parley_build_info", version=parley.__version__) == 1


def _stream_usage(text: str) -> dict[str, int]:
    """The usage the stream's last message_delta reported."""
    deltas = [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and '"message_delta"' in line
    ]
    return dict(deltas[-1]["usage"])


async def test_failures_after_the_start_are_counted_by_type(tmp_path: Path) -> None:
    async with running_app(scripted_settings(tmp_path)) as (_, http):
        streamed = await http.post(
            MESSAGES, json=body("say: a b c\nfail: overloaded_error", stream=True)
        )
        assert "event: error" in streamed.text
        plain = await http.post(MESSAGES, json=body("say: a b c\nfail: api_error"))
        assert plain.status_code == 500
        s = await scrape(http)
    errors = {"model": SCRIPTED_MODEL}
    assert s.get("parley_generation_errors_total", **errors, type="overloaded_error") == 1
    assert s.get("parley_generation_errors_total", **errors, type="api_error") == 1
    assert http_count(s, MESSAGES, "200", SCRIPTED_MODEL) == 1  # the stream had its 200
    assert http_count(s, MESSAGES, "500", SCRIPTED_MODEL) == 1
    # What the failed messages produced still counts as tokens.
    tokens = {"model": SCRIPTED_MODEL, "priority": "interactive", "type": "output"}
    assert s.get("parley_tokens_total", **tokens) == 2


async def test_rate_limit_refusals_by_limit_name(tmp_path: Path) -> None:
    tiers = {
        "default": Tier(
            requests_per_minute=1, count_tokens_requests_per_minute=1, output_tokens_per_minute=100
        ),
        "budget": Tier(monthly_token_budget=1),
    }
    async with running_app(scripted_settings(tmp_path, tiers=tiers)) as (svc, http):
        too_big = await http.post(MESSAGES, json=body(max_tokens=500))
        first = await http.post(MESSAGES, json=body())
        second = await http.post(MESSAGES, json=body())
        counts = [await http.post(f"{MESSAGES}/count_tokens", json=counting_body()) for _ in "ab"]
        assert [r.status_code for r in (too_big, first, second, *counts)] == [
            429,
            200,
            429,
            200,
            429,
        ]
        spender = (await svc.keys.store.create("spender", tier="budget")).secret
        as_spender = old_sdk_headers(spender)
        spent = await http.post(MESSAGES, json=body(), headers=as_spender)
        over = await http.post(MESSAGES, json=body(), headers=as_spender)
        assert (spent.status_code, over.status_code) == (200, 429)
        s = await scrape(http)

    def refused(limit: str) -> float:
        return s.get("parley_rate_limited_total", limit=limit, model=SCRIPTED_MODEL)

    assert refused("output-tokens") == 1
    assert refused("requests") == 1
    assert refused("count-tokens-requests") == 1
    assert refused("monthly-budget") == 1
    assert http_count(s, MESSAGES, "429", SCRIPTED_MODEL) == 3


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The app behind a real HTTP server in this loop (streams arrive as they are sent,
    which the in-process transport does not do), one slot, a slow token."""
    model = ModelConfig(
        id=SCRIPTED_MODEL,
        aliases=["scripted"],
        engine="scripted",
        context_window=2048,
        max_output_tokens=1024,
        slots=1,
        token_delay=0.02,
    )
    svc = await start_services(scripted_settings(tmp_path, models=[model], queue_size=4))
    try:
        key = (await svc.keys.store.create("test")).secret
        async with (
            serve_asgi(create_app(svc)) as url,
            httpx.AsyncClient(base_url=url, headers=old_sdk_headers(key)) as api,
            httpx.AsyncClient(base_url=url) as scraper,
        ):
            yield api, scraper
    finally:
        await svc.aclose()


async def _until(lines: AsyncIterator[str], event: str) -> None:
    async for line in lines:
        if line == f"event: {event}":
            return
    raise AssertionError(f"no {event} event")


async def test_slot_occupancy_and_queue_depth_while_streams_run(
    served: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    api, scraper = served
    long = body("count: 500", max_tokens=600, stream=True)
    # Each response's lines are read through one iterator, held open: a dropped one
    # would close its response when collected.
    async with api.stream("POST", MESSAGES, json=long) as first:
        first_lines = first.aiter_lines()
        await _until(first_lines, "content_block_delta")  # it holds the only slot
        async with api.stream("POST", MESSAGES, json=long) as second:
            second_lines = second.aiter_lines()
            await _until(second_lines, "message_start")  # its generation waits for the slot
            await asyncio.sleep(0.05)
            s = await scrape(scraper)
    assert s.get("parley_engine_slots", model=SCRIPTED_MODEL) == 1
    assert s.get("parley_engine_slots_busy", model=SCRIPTED_MODEL, priority="interactive") == 1
    assert s.get("parley_engine_slots_busy", model=SCRIPTED_MODEL, priority="batch") == 0
    assert s.get("parley_engine_queue_depth", model=SCRIPTED_MODEL, priority="interactive") == 1
    assert s.get("parley_http_requests_in_flight") == 3  # two streams and the scrape
    assert s.get("parley_model_ready", model=SCRIPTED_MODEL) == 1

    # Both clients gone: the slot is free and nobody waits.
    for _ in range(100):
        s = await scrape(scraper)
        if s.get("parley_engine_slots_busy", model=SCRIPTED_MODEL, priority="interactive") == 0:
            break
        await asyncio.sleep(0.02)
    assert s.get("parley_engine_slots_busy", model=SCRIPTED_MODEL, priority="interactive") == 0
    assert s.get("parley_engine_queue_depth", model=SCRIPTED_MODEL, priority="interactive") == 0


async def test_batch_progress_from_the_store_and_batch_tokens(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path, batch_worker=False)
    async with running_app(settings) as (svc, http):
        requests = [{"custom_id": f"r{i}", "params": body(f"say: one two {i}")} for i in range(3)]
        created = await http.post(MESSAGES + "/batches", json={"requests": requests})
        assert created.status_code == 200, created.text
        before = await scrape(http)
        await svc.batch_worker.run_until_idle()
        after = await scrape(http)

    assert before.get("parley_batches", status="in_progress") == 1
    assert before.get("parley_batches", status="ended") == 0
    assert before.get("parley_batch_requests", state="pending") == 3
    assert before.get("parley_batch_requests", state="succeeded") == 0

    assert after.get("parley_batches", status="in_progress") == 0
    assert after.get("parley_batches", status="ended") == 1
    # Requests are counted while their batch is open; an ended one has its own counts.
    assert after.total("parley_batch_requests") == 0
    batch = {"model": SCRIPTED_MODEL, "priority": "batch"}
    assert after.get("parley_tokens_total", **batch, type="output") == 3 * 3
    # Batch work has no HTTP request: no time to first token, no interactive tokens.
    assert after.value("parley_time_to_first_token_seconds_count", model=SCRIPTED_MODEL) is None
    assert (
        after.value(
            "parley_tokens_total", model=SCRIPTED_MODEL, priority="interactive", type="output"
        )
        is None
    )


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upstream_model(model_id: str, backends: dict[str, str]) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "context_window": 4096,
            "max_output_tokens": 256,
            # Out at the first failure, and not health-checked back during the test.
            "routing": {"eject_after": 1, "health_check_interval": 3600},
            "backends": [
                {"engine": "openai", "name": name, "base_url": url, "model": "fake"}
                for name, url in backends.items()
            ],
        }
    )


async def test_backend_health_and_ejections(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    async with serving(FakeState(name="up")) as up:
        models = [
            upstream_model("mixed", {"up": up, "down": down}),
            upstream_model("dead", {"gone": down}),
        ]
        async with running_app(scripted_settings(tmp_path, models=models)) as (_, http):
            served = [
                await http.post(MESSAGES, json={**body("hello"), "model": "mixed"})
                for _ in range(3)
            ]
            assert [r.status_code for r in served] == [200, 200, 200]  # failed over
            refused = await http.post(MESSAGES, json={**body("hello"), "model": "dead"})
            assert refused.status_code >= 500
            s = await scrape(http)
            ready = await http.get("/readyz")

    def backend(name: str, model: str = "mixed") -> dict[str, str]:
        return {"model": model, "backend": name}

    assert s.get("parley_backend_up", **backend("up")) == 1
    assert s.get("parley_backend_up", **backend("down")) == 0
    assert s.get("parley_backend_ejections_total", **backend("down")) == 1
    assert s.get("parley_backend_ejections_total", **backend("up")) == 0
    assert s.get("parley_backend_consecutive_failures", **backend("down")) == 1
    assert s.get("parley_backend_in_flight", **backend("up")) == 0
    assert s.get("parley_backend_up", **backend("gone", "dead")) == 0
    assert s.get("parley_model_ready", model="mixed") == 1
    assert s.get("parley_model_ready", model="dead") == 0
    # Upstream-only models have no slots of Parley's own.
    assert s.value("parley_engine_slots", model="mixed") is None

    assert ready.status_code == 503
    assert ready.json()["models"] == {
        "mixed": "ok",
        "dead": "every backend (1) is out of rotation",
    }


async def test_metrics_off_serves_nothing(tmp_path: Path) -> None:
    async with running_app(scripted_settings(tmp_path, metrics="off")) as (svc, http):
        assert (await http.post(MESSAGES, json=body())).status_code == 200
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "Not found"}
    assert not svc.metrics.enabled


async def test_metrics_for_admin_keys_only(tmp_path: Path) -> None:
    async with running_app(scripted_settings(tmp_path, metrics="admin")) as (svc, http):
        admin = (await svc.keys.store.create("ops", admin=True)).secret
        anonymous = await http.get("/metrics", headers={"x-api-key": ""})
        ordinary = await http.get("/metrics")  # the client's own (ordinary) key
        # A scraper sends its key as Bearer and no anthropic-version.
        s = await scrape(http, **{"x-api-key": "", "authorization": f"Bearer {admin}"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert ordinary.status_code == 403
    assert ordinary.json()["error"]["type"] == "permission_error"
    assert s.total("parley_http_requests_total", route="/metrics", status="403") == 1


async def test_openmetrics_when_the_scraper_asks_for_it(tmp_path: Path) -> None:
    async with running_app(scripted_settings(tmp_path)) as (_, http):
        assert (await http.post(MESSAGES, json=body())).status_code == 200
        response = await http.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "parley_http_requests_total{" in response.text


def test_every_state_gauge_says_how_workers_add_up() -> None:
    # Under --workers, state a family has no mode for would be left out of the scrape.
    families = [*_StateCollector().engine_families(), *ProcessCollector(registry=None).collect()]
    assert families
    for family in families:
        assert family.type == "counter" or family.name in SHARED_GAUGE_MODES, family.name
