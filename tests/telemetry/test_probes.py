"""GET /healthz and /readyz in-process: what each says, and why /readyz says no."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from parley.services import Services
from parley.telemetry.readiness import check_readiness
from tests.conftest import SCRIPTED_MODEL, asgi_client, running_app, scripted_settings
from tests.telemetry.test_metrics import closed_port

READY = {
    "status": "ready",
    "draining": False,
    "store": "ok",
    "limiter": "ok",
    "models": {SCRIPTED_MODEL: "ok"},
}


async def test_probes_need_no_key(services: Services) -> None:
    async with asgi_client(services) as anonymous:
        alive = await anonymous.get("/healthz")
        ready = await anonymous.get("/readyz")
        head = await anonymous.head("/readyz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, READY)
    assert head.status_code == 200
    assert ready.headers["request-id"].startswith("req_")


async def test_draining_is_not_ready_but_alive(services: Services) -> None:
    services.lifecycle.start_draining()
    async with asgi_client(services) as anonymous:
        alive = await anonymous.get("/healthz")
        ready = await anonymous.get("/readyz")
    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {**READY, "status": "not ready", "draining": True}


async def test_ready_with_redis_buckets(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    settings = scripted_settings(tmp_path, redis_url=redis_url, redis_prefix=redis_prefix)
    async with running_app(settings) as (_, http):
        ready = await http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, READY)


async def test_unreachable_redis_is_not_ready(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with running_app(settings) as (_, http):
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["limiter"] == "unreachable (ConnectionError)"
    assert ready.json()["store"] == "ok"


async def test_unreachable_store_is_not_ready(services: Services) -> None:
    # A database nothing answers for (the URL is never shown: it may hold a password).
    gone = create_async_engine(f"postgresql+asyncpg://parley:secret@127.0.0.1:{closed_port()}/x")
    try:
        readiness = await check_readiness(gone, services.limiter, services.registry, draining=False)
    finally:
        await gone.dispose()
    assert not readiness.ready
    assert readiness.store.startswith("unreachable (")
    assert "secret" not in str(readiness.body())
    assert readiness.limiter == "ok"
