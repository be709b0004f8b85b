"""The worker and the time rules in-process: expiry, archiving, cancellation with work
in flight, claims that lapse, usage, and priority against interactive traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from parley.core.batches import EXPIRES_AFTER, RESULTS_KEPT
from parley.store.batch_leases import Outcome
from tests.batches.conftest import (
    BATCHES,
    App,
    batch_request,
    batch_settings,
    eventually,
    requests_,
    started,
)


def now_of(app: App) -> datetime:
    return datetime.fromtimestamp(app.clock.now, UTC)


async def claim_elsewhere(app: App, batch_id: str, token: str, n: int) -> list[int]:
    """Claim `n` requests as another worker would (one that may then die)."""
    record = await app.records.get(batch_id)
    assert record is not None
    lease = now_of(app) + timedelta(seconds=app.svc.settings.batch_lease_seconds)
    claimed = await app.leases.claim(record, token, n, now_of(app), lease)
    return [c.position for c in claimed]


def succeeded_json(text: str) -> str:
    return (
        '{"type":"succeeded","message":{"id":"msg_01x","type":"message","role":"assistant",'
        f'"model":"scripted-1","content":[{{"type":"text","text":"{text}"}}],'
        '"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,'
        '"output_tokens":1,"service_tier":"batch"}}}'
    )


# -- time rules ---------------------------------------------------------------------


async def test_a_batch_not_finished_in_24_hours_expires(app: App) -> None:
    batch = await app.create(requests_(3))
    [done] = await claim_elsewhere(app, batch["id"], "worker_a", 1)
    assert await app.leases.complete(
        "worker_a", [Outcome(batch["id"], done, "succeeded", succeeded_json("early"))]
    )
    app.clock.advance(EXPIRES_AFTER.total_seconds() - 1)
    await app.worker.housekeeping()
    assert (await app.get(batch["id"]))["processing_status"] == "in_progress"
    app.clock.advance(1)
    await app.worker.run_until_idle()  # nothing is claimed from an expired batch
    ended = await app.get(batch["id"])
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"] == {
        "processing": 0,
        "succeeded": 1,
        "errored": 0,
        "canceled": 0,
        "expired": 2,
    }
    results = {r["custom_id"]: r["result"] for r in await app.results(batch["id"])}
    assert results["r0"]["type"] == "succeeded"
    assert results["r0"]["message"]["content"][0]["text"] == "early"
    assert results["r1"] == results["r2"] == {"type": "expired"}


async def test_results_are_archived_29_days_after_creation(app: App) -> None:
    batch = await app.create(requests_(2))
    await app.worker.run_until_idle()
    app.clock.advance(RESULTS_KEPT.total_seconds() - 1)
    await app.worker.housekeeping()
    assert len(await app.results(batch["id"])) == 2
    app.clock.advance(1)
    await app.worker.housekeeping()
    archived = await app.get(batch["id"])
    assert archived["archived_at"] == now_of(app).isoformat()
    assert archived["processing_status"] == "ended"
    assert archived["request_counts"]["succeeded"] == 2  # the counts stay
    response = await app.http.get(f"{BATCHES}/{batch['id']}/results")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith(
        f"The results of Message Batch {batch['id']} are no longer available"
    )
    assert await app.records.state_counts(batch["id"]) == {}
    deleted = await app.http.delete(f"{BATCHES}/{batch['id']}")
    assert deleted.status_code == 200


# -- cancellation with work in flight -------------------------------------------------


async def test_cancel_lets_running_requests_finish(app: App) -> None:
    batch = await app.create(requests_(3))
    [running] = await claim_elsewhere(app, batch["id"], "worker_a", 1)
    cancel = await app.http.post(f"{BATCHES}/{batch['id']}/cancel")
    assert cancel.json()["processing_status"] == "canceling"
    await app.svc.drain()
    await app.worker.run_until_idle()  # nothing left to claim; still one running
    assert (await app.get(batch["id"]))["processing_status"] == "canceling"
    assert await app.leases.complete(
        "worker_a", [Outcome(batch["id"], running, "succeeded", succeeded_json("finished"))]
    )
    await app.worker.housekeeping()
    ended = await app.get(batch["id"])
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"]["succeeded"] == 1
    assert ended["request_counts"]["canceled"] == 2


async def test_a_dead_workers_claims_in_a_canceling_batch_are_canceled(app: App) -> None:
    batch = await app.create(requests_(2))
    await claim_elsewhere(app, batch["id"], "worker_dead", 1)
    await app.http.post(f"{BATCHES}/{batch['id']}/cancel")
    app.clock.advance(app.svc.settings.batch_lease_seconds + 1)
    await app.worker.housekeeping()
    ended = await app.get(batch["id"])
    assert ended["request_counts"]["canceled"] == 2


# -- claims ---------------------------------------------------------------------------


async def test_a_lapsed_claim_is_run_again_and_the_late_result_is_dropped(app: App) -> None:
    batch = await app.create(requests_(3))
    taken = await claim_elsewhere(app, batch["id"], "worker_dead", 2)
    assert taken == [0, 1]
    await app.worker.run_until_idle()  # runs r2; r0 and r1 are still claimed
    assert (await app.get(batch["id"]))["processing_status"] == "in_progress"
    app.clock.advance(app.svc.settings.batch_lease_seconds + 1)
    await app.worker.run_until_idle()
    ended = await app.get(batch["id"])
    assert ended["request_counts"]["succeeded"] == 3
    # The first worker comes back to life: its results are no longer wanted.
    late = [Outcome(batch["id"], p, "succeeded", succeeded_json("late")) for p in taken]
    assert await app.leases.complete("worker_dead", late) == 0
    results = await app.results(batch["id"])
    assert sorted(r["custom_id"] for r in results) == ["r0", "r1", "r2"]
    assert all(r["result"]["message"]["content"][0]["text"] == "ok" for r in results)
    assert await app.leases.claimed_by(batch["id"]) == {app.worker.token: 3}


async def test_claims_are_exclusive(app: App) -> None:
    batch = await app.create(requests_(10))
    first = await claim_elsewhere(app, batch["id"], "worker_a", 4)
    second = await claim_elsewhere(app, batch["id"], "worker_b", 10)
    assert first == [0, 1, 2, 3]
    assert second == [4, 5, 6, 7, 8, 9]
    assert await claim_elsewhere(app, batch["id"], "worker_c", 10) == []


async def test_batches_are_served_oldest_first(app: App) -> None:
    old = await app.create(requests_(2, prefix="old"))
    app.clock.advance(1)
    new = await app.create(requests_(2, prefix="new"))
    claimable = await app.leases.claimable_batches(now_of(app))
    assert [b.id for b in claimable] == [old["id"], new["id"]]


# -- usage and the worker's own loop --------------------------------------------------


async def test_usage_is_recorded_for_batch_requests(app: App) -> None:
    await app.create(
        [
            batch_request("a", "count: 4"),
            batch_request("b", "count: 2"),
            batch_request("bad", model="no-such-model"),
        ]
    )
    await app.worker.run_until_idle()
    await app.svc.drain()
    rows = await app.svc.usage.store.rows()
    assert len(rows) == 1
    assert rows[0].model == "scripted-1"
    assert rows[0].counts["requests"] == 2  # the unknown model never reached an engine
    assert rows[0].counts["output_tokens"] == 6
    assert rows[0].counts["input_tokens"] == 4


async def test_the_running_worker_finishes_batches_by_itself(tmp_path: Path) -> None:
    async with started(batch_settings(tmp_path, batch_worker=True)) as app:
        batches = [await app.create(requests_(5, prefix=f"b{i}-")) for i in range(3)]
        for batch in batches:
            ended = await app.wait_ended(batch["id"])
            assert ended["request_counts"]["succeeded"] == 5


async def test_a_clean_shutdown_hands_back_unfinished_claims(tmp_path: Path) -> None:
    slow = batch_settings(tmp_path, batch_worker=True, batch_concurrency=2)
    slow.models[0].token_delay = 0.05  # a minute per request: stopped mid-way
    async with started(slow) as app:
        batch = await app.create(
            [batch_request(f"r{i}", "count: 1000", max_tokens=1000) for i in range(4)]
        )
        records = app.records

        async def running() -> bool:
            return (await records.state_counts(batch["id"])).get("running", 0) > 0

        await eventually(running)
        secret = app.secret
    # Closed, with its database: nothing is left claimed, and a restart finishes the work.
    async with started(batch_settings(tmp_path), key=secret) as again:
        assert await again.records.state_counts(batch["id"]) == {"pending": 4}
        await again.worker.run_until_idle()
        ended = await again.get(batch["id"])
        assert ended["request_counts"]["succeeded"] == 4


async def test_interactive_requests_go_first_while_a_batch_runs(tmp_path: Path) -> None:
    # Two slots: the batch may hold one, never both, and interactive requests get the
    # other at once however many batch requests wait.
    settings = batch_settings(tmp_path, batch_worker=True, batch_concurrency=4)
    settings.models[0].slots = 2
    settings.models[0].token_delay = 0.002
    async with started(settings) as app:
        engine = app.svc.registry.resolve("scripted-1").engine
        pool = engine.pool  # type: ignore[attr-defined]
        batch = await app.create(
            [batch_request(f"r{i}", "count: 100", max_tokens=100) for i in range(6)]
        )

        async def batch_running() -> bool:
            return bool(pool.busy_background)

        await eventually(batch_running)
        for _ in range(3):
            reply = await app.http.post(
                "/v1/messages", json=batch_request("x", "count: 3")["params"]
            )
            assert reply.status_code == 200
            assert pool.busy_background <= 1
        assert (await app.get(batch["id"]))["processing_status"] == "in_progress"
        ended = await app.wait_ended(batch["id"])
        assert ended["request_counts"]["succeeded"] == 6


async def test_cancel_interrupts_requests_already_running(tmp_path: Path) -> None:
    # Each request would take about a minute; canceled, they end at once as canceled.
    settings = batch_settings(
        tmp_path, batch_worker=True, batch_concurrency=2, batch_poll_interval=0.05
    )
    settings.models[0].token_delay = 0.05
    async with started(settings) as app:
        batch = await app.create(
            [batch_request(f"r{i}", "count: 1000", max_tokens=1000) for i in range(5)]
        )
        records = app.records

        async def running() -> bool:
            return (await records.state_counts(batch["id"])).get("running", 0) > 0

        await eventually(running)
        await app.http.post(f"{BATCHES}/{batch['id']}/cancel")
        ended = await app.wait_ended(batch["id"])
    assert ended["request_counts"]["canceled"] == 5
    assert ended["request_counts"]["succeeded"] == 0


async def test_expiry_stops_requests_already_running(tmp_path: Path) -> None:
    settings = batch_settings(
        tmp_path, batch_worker=True, batch_concurrency=2, batch_poll_interval=0.05
    )
    settings.models[0].token_delay = 0.05
    async with started(settings) as app:
        batch = await app.create(
            [batch_request(f"r{i}", "count: 1000", max_tokens=1000) for i in range(3)]
        )
        records = app.records

        async def running() -> bool:
            return (await records.state_counts(batch["id"])).get("running", 0) > 0

        await eventually(running)
        app.clock.advance(EXPIRES_AFTER.total_seconds())
        ended = await app.wait_ended(batch["id"])
    assert ended["request_counts"]["expired"] == 3
