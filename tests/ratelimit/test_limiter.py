"""RateLimiter with an injected clock: headers, 429 wording and retry headers,
output reservations settled to the actual count, count_tokens' own bucket, the
monthly budget, per-model limits (api-spec §15, api-version §19.8, §19.9);
then the same seen through the app in-process."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from parley.config import Limits, Settings, Tier, load_settings
from parley.core.calendar import rfc3339_ceil
from parley.core.records import ApiKey, UsageRecord
from parley.errors import RateLimitError
from parley.ratelimit.backends import MemoryBackend
from parley.ratelimit.limiter import RateLimiter
from parley.services import Services, start_services
from tests.clock import T0, FakeClock
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings

NAMES = ("requests", "tokens", "input-tokens", "output-tokens")
SMALL = Tier(
    requests_per_minute=3,
    input_tokens_per_minute=100,
    output_tokens_per_minute=50,
    count_tokens_requests_per_minute=2,
)


def api_key(tier: str = "small", key_id: str = "apikey_01limitertest") -> ApiKey:
    return ApiKey(
        id=key_id,
        name="test",
        hint="sk-parley-abcd...wxyz",
        tier=tier,
        status="active",
        is_admin=False,
        created_at=datetime.now(UTC),
    )


class Spent:
    """A fake `tokens_since`: a fixed total, and the calls it was asked."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.calls: list[tuple[str, datetime]] = []

    async def __call__(self, key_id: str, since: datetime) -> int:
        self.calls.append((key_id, since))
        return self.total


def make_limiter(
    tmp_path: Path, clock: FakeClock, spent: Spent | None = None, **tiers: Tier
) -> RateLimiter:
    settings = scripted_settings(tmp_path, tiers={"default": Tier(), "small": SMALL, **tiers})
    return RateLimiter(MemoryBackend(), settings, spent or Spent(), clock)


def at(offset: float) -> str:
    return rfc3339_ceil(T0 + offset)


def limits(headers: dict[str, str] | httpx.Headers, name: str) -> tuple[int, int, str]:
    prefix = f"anthropic-ratelimit-{name}-"
    return (
        int(headers[prefix + "limit"]),
        int(headers[prefix + "remaining"]),
        headers[prefix + "reset"],
    )


def assert_ratelimit_headers(headers: dict[str, str] | httpx.Headers) -> None:
    """All twelve headers, numbers where numbers belong, resets in RFC 3339, and
    `tokens-*` equal to the more restrictive of the input and output buckets."""
    for name in NAMES:
        limit, remaining, reset = limits(headers, name)
        assert 0 <= remaining <= limit
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", reset), reset
    tightest = min(
        (limits(headers, "input-tokens"), limits(headers, "output-tokens")), key=lambda v: v[1]
    )
    assert limits(headers, "tokens") == tightest


# --- headers --------------------------------------------------------------------


async def test_admission_headers(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    admission = await limiter.admit_message(api_key(), SCRIPTED_MODEL, 10, 20)
    headers = admission.headers
    assert set(headers) == {
        f"anthropic-ratelimit-{n}-{f}" for n in NAMES for f in ("limit", "remaining", "reset")
    }
    # Each reset is when that bucket will be full again: 1 of 3 per minute is 20 s,
    # 10 of 100 is 6 s, 20 of 50 is 24 s.
    assert limits(headers, "requests") == (3, 2, at(20))
    assert limits(headers, "input-tokens") == (100, 90, at(6))
    assert limits(headers, "output-tokens") == (50, 30, at(24))
    assert limits(headers, "tokens") == (50, 30, at(24))
    assert_ratelimit_headers(headers)
    assert admission.taken[-1].amount == 20  # output reserved from max_tokens


async def test_tokens_headers_follow_the_most_restrictive_bucket(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    headers = (await limiter.admit_message(api_key(), SCRIPTED_MODEL, 95, 1)).headers
    assert limits(headers, "tokens") == limits(headers, "input-tokens") == (100, 5, at(57))
    assert_ratelimit_headers(headers)


async def test_reset_rounds_up_to_a_whole_second(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 0.25)
    limiter = make_limiter(tmp_path, clock)
    headers = (await limiter.admit_message(api_key(), SCRIPTED_MODEL, 1, 1)).headers
    # Full again at T0 + 20.25: the header says 20:21, never a moment too early.
    assert limits(headers, "requests")[2] == at(21)


# --- refusals -------------------------------------------------------------------


async def test_over_the_request_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = make_limiter(tmp_path, clock)
    key = api_key()
    for _ in range(3):
        await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)
    error = caught.value
    assert error.status == 429
    assert error.type == "rate_limit_error"
    assert error.message == (
        f"This request would exceed the rate limit for your API key ({key.id}) of 3 requests "
        "per minute. You can see the response headers for current usage. Please reduce the "
        "prompt length or the maximum tokens requested, or try again later."
    )
    assert error.headers["retry-after"] == "20"
    assert error.headers["x-should-retry"] == "true"
    assert limits(error.headers, "requests") == (3, 0, at(60))
    assert_ratelimit_headers(error.headers)
    assert error.details is None

    clock.advance(19.5)
    with pytest.raises(RateLimitError) as again:
        await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)
    assert again.value.headers["retry-after"] == "1"  # 0.5 s, in whole seconds
    clock.advance(0.5)
    await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)


@pytest.mark.parametrize(
    ("input_tokens", "max_tokens", "units", "limit", "retry_after"),
    [
        # One token short: 0.6 s at 100 per minute, 1.2 s at 50 per minute.
        (61, 1, "input tokens per minute", "100", "1"),
        (1, 31, "output tokens per minute", "50", "2"),
    ],
)
async def test_over_a_token_limit(
    tmp_path: Path, input_tokens: int, max_tokens: int, units: str, limit: str, retry_after: str
) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    key = api_key()
    await limiter.admit_message(key, SCRIPTED_MODEL, 40, 20)
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit_message(key, SCRIPTED_MODEL, input_tokens, max_tokens)
    assert f"of {limit} {units}." in caught.value.message
    assert caught.value.headers["x-should-retry"] == "true"
    assert caught.value.headers["retry-after"] == retry_after
    # Nothing was taken by the refused request: the same levels as before it.
    headers = (await limiter.admit_message(key, SCRIPTED_MODEL, 0, 0)).headers
    assert limits(headers, "requests")[1] == 1
    assert limits(headers, "input-tokens")[1] == 60
    assert limits(headers, "output-tokens")[1] == 30


async def test_retry_after_is_whole_seconds_and_always_enough(tmp_path: Path) -> None:
    clock = FakeClock()
    wide = Tier(requests_per_minute=100_000, output_tokens_per_minute=50)
    limiter = make_limiter(tmp_path, clock, wide=wide)
    key = api_key("wide")
    await limiter.admit_message(key, SCRIPTED_MODEL, 0, 50)
    rng = random.Random(7)
    seen: set[int] = set()
    for _ in range(300):
        max_tokens = rng.choice([1, 2, 7, 25, 49, 50])
        refusal: RateLimitError | None = None
        try:
            await limiter.admit_message(key, SCRIPTED_MODEL, 0, max_tokens)
        except RateLimitError as error:
            refusal = error
        if refusal is not None:
            value = refusal.headers["retry-after"]
            assert re.fullmatch(r"[1-9][0-9]?", value), value
            assert 1 <= int(value) <= 60
            assert refusal.headers["x-should-retry"] == "true"
            seen.add(int(value))
            # Waiting as long as the header says is enough: no retry in vain.
            clock.advance(int(value))
            await limiter.admit_message(key, SCRIPTED_MODEL, 0, max_tokens)
        clock.advance(rng.random() * 2)
    assert 60 in seen  # the whole bucket after emptying it: a full minute
    assert 1 in seen


async def test_a_request_larger_than_the_bucket_is_not_worth_retrying(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit_message(api_key(), SCRIPTED_MODEL, 1, 51)
    error = caught.value
    assert error.headers["x-should-retry"] == "false"
    assert "retry-after" not in error.headers
    assert "of 50 output tokens per minute" in error.message
    assert error.message.endswith(
        "Please reduce the prompt length or the maximum tokens requested."
    )
    assert_ratelimit_headers(error.headers)


# --- settlement -----------------------------------------------------------------


async def test_settle_refunds_the_unused_reservation(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    key = api_key()
    admission = await limiter.admit_message(key, SCRIPTED_MODEL, 1, 40)
    assert limits(admission.headers, "output-tokens")[1] == 10
    await limiter.settle(admission, 5)
    headers = await limiter.admit_count_tokens(key, SCRIPTED_MODEL)
    assert limits(headers, "output-tokens")[1] == 45
    # Settling twice gives nothing back twice.
    await limiter.settle(admission, 0)
    headers = await limiter.admit_count_tokens(key, SCRIPTED_MODEL)
    assert limits(headers, "output-tokens")[1] == 45


async def test_settle_with_everything_used_or_nothing_used(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    key = api_key()
    used = await limiter.admit_message(key, SCRIPTED_MODEL, 1, 20)
    await limiter.settle(used, 20)
    cut = await limiter.admit_message(key, SCRIPTED_MODEL, 1, 20)
    assert limits(cut.headers, "output-tokens")[1] == 10
    await limiter.settle(cut, 0)  # cut off before its first token
    headers = (await limiter.admit_message(key, SCRIPTED_MODEL, 1, 0)).headers
    assert limits(headers, "output-tokens")[1] == 30


async def test_settle_after_time_passed_is_capped_at_capacity(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = make_limiter(tmp_path, clock)
    key = api_key()
    admission = await limiter.admit_message(key, SCRIPTED_MODEL, 1, 50)
    clock.advance(30)  # half refilled while generating
    await limiter.settle(admission, 10)  # 40 back: 25 + 40 would pass 50
    headers = await limiter.admit_count_tokens(key, SCRIPTED_MODEL)
    assert limits(headers, "output-tokens")[1] == 50


# --- count_tokens ---------------------------------------------------------------


async def test_count_tokens_has_its_own_request_bucket(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    key = api_key()
    for remaining in (1, 0):
        headers = await limiter.admit_count_tokens(key, SCRIPTED_MODEL)
        assert limits(headers, "requests")[:2] == (2, remaining)
        assert limits(headers, "input-tokens")[1] == 100  # read, not charged
        assert_ratelimit_headers(headers)
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit_count_tokens(key, SCRIPTED_MODEL)
    assert "of 2 requests per minute" in caught.value.message
    assert caught.value.headers["retry-after"] == "30"
    assert caught.value.headers["x-should-retry"] == "true"
    # Messages still have all three requests, and using them up leaves count_tokens alone.
    for _ in range(3):
        await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)
    with pytest.raises(RateLimitError):
        await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)


async def test_count_tokens_answers_while_token_buckets_are_empty(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    key = api_key()
    await limiter.admit_message(key, SCRIPTED_MODEL, 100, 50)
    headers = await limiter.admit_count_tokens(key, SCRIPTED_MODEL)
    assert limits(headers, "tokens")[1] == 0
    assert limits(headers, "input-tokens")[1] == 0


# --- monthly budget -------------------------------------------------------------


async def test_budget_spent_is_a_429_not_worth_retrying(tmp_path: Path) -> None:
    spent = Spent(999)
    limiter = make_limiter(tmp_path, FakeClock(), spent, budget=Tier(monthly_token_budget=1000))
    key = api_key("budget")
    await limiter.check_budget(key)
    assert spent.calls == [(key.id, datetime(2027, 1, 1, tzinfo=UTC))]
    spent.total = 1000
    with pytest.raises(RateLimitError) as caught:
        await limiter.check_budget(key)
    error = caught.value
    assert error.status == 429
    assert error.headers == {"x-should-retry": "false"}  # and no retry-after
    assert error.details == {"error_code": "enforced_spend_limit_reached"}
    assert "monthly token budget of 1,000 tokens" in error.message
    assert "resets at 2027-02-01T00:00:00Z" in error.message


async def test_budget_refusal_carries_the_current_readings(tmp_path: Path) -> None:
    limiter = make_limiter(
        tmp_path, FakeClock(), Spent(1000), budget=Tier(monthly_token_budget=1000)
    )
    with pytest.raises(RateLimitError) as caught:
        await limiter.check_budget(api_key("budget"), "m")
    headers = caught.value.headers
    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert f"anthropic-ratelimit-{kind}-remaining" in headers
    # Reading the buckets takes nothing from them.
    assert limits(headers, "requests")[0] == limits(headers, "requests")[1]


async def test_budget_resets_in_january_after_december(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2027, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp())
    spent = Spent(5)
    limiter = make_limiter(tmp_path, clock, spent, budget=Tier(monthly_token_budget=5))
    with pytest.raises(RateLimitError) as caught:
        await limiter.check_budget(api_key("budget"))
    assert "resets at 2028-01-01T00:00:00Z" in caught.value.message
    assert spent.calls[0][1] == datetime(2027, 12, 1, tzinfo=UTC)


async def test_no_budget_reads_no_usage(tmp_path: Path) -> None:
    spent = Spent(10**12)
    limiter = make_limiter(tmp_path, FakeClock(), spent)
    await limiter.check_budget(api_key())
    assert spent.calls == []


# --- per-model limits -----------------------------------------------------------


async def test_per_model_limits_override_the_tier(tmp_path: Path) -> None:
    tier = Tier(requests_per_minute=10, models={"strict-1": Limits(requests_per_minute=1)})
    limiter = make_limiter(tmp_path, FakeClock(), per_model=tier)
    key = api_key("per_model")
    headers = (await limiter.admit_message(key, "strict-1", 1, 1)).headers
    assert limits(headers, "requests")[:2] == (1, 0)
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit_message(key, "strict-1", 1, 1)
    assert "of 1 requests per minute" in caught.value.message
    # Another model has the tier's limit, and its own buckets.
    for remaining in range(9, 4, -1):
        headers = (await limiter.admit_message(key, SCRIPTED_MODEL, 1, 1)).headers
        assert limits(headers, "requests")[:2] == (10, remaining)


async def test_a_model_override_inherits_the_limits_it_does_not_set(tmp_path: Path) -> None:
    """Overriding one limit for a model keeps the tier's other limits; it must not fall
    back to the far larger built-in defaults."""
    tier = Tier(
        requests_per_minute=10,
        input_tokens_per_minute=100,
        output_tokens_per_minute=50,
        models={"strict-1": Limits(requests_per_minute=2)},
    )
    limiter = make_limiter(tmp_path, FakeClock(), per_model=tier)
    headers = (await limiter.admit_message(api_key("per_model"), "strict-1", 10, 10)).headers
    assert limits(headers, "requests")[:2] == (2, 1)
    assert limits(headers, "input-tokens")[:2] == (100, 90)
    assert limits(headers, "output-tokens")[:2] == (50, 40)


def test_model_overrides_from_a_config_file_inherit_the_tier(tmp_path: Path) -> None:
    """The README's example: a free tier with one model's output limit lowered."""
    path = tmp_path / "parley.toml"
    path.write_text(
        "[tiers.free]\n"
        "requests_per_minute = 50\n"
        "input_tokens_per_minute = 50000\n"
        "output_tokens_per_minute = 10000\n"
        "[tiers.free.models.smollm2-135m-instruct]\n"
        "output_tokens_per_minute = 2000\n"
    )
    tier = load_settings(path).tier("free")
    assert tier.limits_for("smollm2-135m-instruct") == Limits(
        requests_per_minute=50, input_tokens_per_minute=50000, output_tokens_per_minute=2000
    )
    other = tier.limits_for("other")
    assert (
        other.requests_per_minute,
        other.input_tokens_per_minute,
        other.output_tokens_per_minute,
    ) == (50, 50000, 10000)


async def test_keys_have_separate_buckets(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    for _ in range(3):
        await limiter.admit_message(api_key(key_id="apikey_01a"), SCRIPTED_MODEL, 1, 1)
    with pytest.raises(RateLimitError):
        await limiter.admit_message(api_key(key_id="apikey_01a"), SCRIPTED_MODEL, 1, 1)
    await limiter.admit_message(api_key(key_id="apikey_01b"), SCRIPTED_MODEL, 1, 1)


async def test_unknown_tier_falls_back_to_default(tmp_path: Path) -> None:
    limiter = make_limiter(tmp_path, FakeClock())
    headers = (await limiter.admit_message(api_key("no-such-tier"), SCRIPTED_MODEL, 1, 1)).headers
    assert limits(headers, "requests")[0] == Tier().requests_per_minute


# --- through the app, in-process ------------------------------------------------


@asynccontextmanager
async def app_with(
    settings: Settings, clock: FakeClock, tier: str = "small"
) -> AsyncIterator[tuple[Services, httpx.AsyncClient, ApiKey]]:
    svc = await start_services(settings, clock=clock)
    try:
        created = await svc.keys.store.create("limited", tier=tier)
        async with asgi_client(svc, old_sdk_headers(created.secret)) as http:
            yield svc, http, created.key
    finally:
        await svc.aclose()


def limited_settings(tmp_path: Path, **tiers: Tier) -> Settings:
    return scripted_settings(tmp_path / "data", tiers={"default": Tier(), "small": SMALL, **tiers})


def body(text: str, max_tokens: int = 10, **extra: object) -> dict[str, object]:
    return {
        "model": SCRIPTED_MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


async def test_app_every_response_carries_the_headers(tmp_path: Path) -> None:
    async with app_with(limited_settings(tmp_path), FakeClock()) as (svc, http, _):
        # "<user>say: a b c</user>" is 4 scripted tokens in, "a b c" is 3 out.
        reply = await http.post("/v1/messages", json=body("say: a b c", 10))
        assert reply.status_code == 200
        assert_ratelimit_headers(reply.headers)
        assert limits(reply.headers, "input-tokens")[:2] == (100, 96)
        assert limits(reply.headers, "output-tokens")[:2] == (50, 40)  # reserved at admission
        await svc.drain()

        async with http.stream("POST", "/v1/messages", json=body("say: x y", 5, stream=True)) as s:
            assert s.status_code == 200
            assert_ratelimit_headers(s.headers)
            assert limits(s.headers, "requests")[:2] == (3, 1)
            # The first reply was settled to its 3 tokens: 50 - 3 - 5 reserved now.
            assert limits(s.headers, "output-tokens")[1] == 42
            await s.aread()
        await svc.drain()

        count_body = {"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]}
        counted = await http.post("/v1/messages/count_tokens", json=count_body)
        assert counted.status_code == 200
        assert_ratelimit_headers(counted.headers)
        assert limits(counted.headers, "requests")[:2] == (2, 1)
        assert limits(counted.headers, "output-tokens")[1] == 50 - 3 - 2


async def test_app_429_envelope_and_headers(tmp_path: Path) -> None:
    clock = FakeClock()
    async with app_with(limited_settings(tmp_path), clock) as (_, http, key):
        for _ in range(3):
            assert (await http.post("/v1/messages", json=body("hi", 1))).status_code == 200
        refused = await http.post("/v1/messages", json=body("hi", 1))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "20"
        assert refused.headers["x-should-retry"] == "true"
        assert_ratelimit_headers(refused.headers)
        payload = refused.json()
        assert payload["type"] == "error"
        assert payload["error"]["type"] == "rate_limit_error"
        assert payload["error"]["message"].startswith(
            f"This request would exceed the rate limit for your API key ({key.id}) of 3 "
            "requests per minute."
        )
        assert payload["request_id"] == refused.headers["request-id"]
        clock.advance(20)
        assert (await http.post("/v1/messages", json=body("hi", 1))).status_code == 200


async def test_app_refusal_costs_no_usage(tmp_path: Path) -> None:
    async with app_with(limited_settings(tmp_path), FakeClock()) as (svc, http, key):
        refused = await http.post("/v1/messages", json=body("hi", 51))
        assert refused.status_code == 429
        assert refused.headers["x-should-retry"] == "false"
        await svc.drain()
        assert await svc.usage.store.rows(key_ids=[key.id]) == []


async def test_app_budget_exhausted(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = limited_settings(tmp_path, budget=Tier(monthly_token_budget=10))
    async with app_with(settings, clock, tier="budget") as (svc, http, key):
        # Usage from last month does not count against this month's budget.
        last_month = datetime.fromtimestamp(T0, UTC) - timedelta(days=20)
        await svc.usage.store.add(UsageRecord(key.id, SCRIPTED_MODEL, last_month, 1, 500, 500))
        first = await http.post("/v1/messages", json=body("say: one two three four five", 10))
        assert first.status_code == 200
        await svc.drain()  # 6 in + 5 out recorded: 11 of 10
        refused = await http.post("/v1/messages", json=body("hi", 1))
        assert refused.status_code == 429
        assert refused.headers["x-should-retry"] == "false"
        assert "retry-after" not in refused.headers
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error"
        assert error["details"] == {"error_code": "enforced_spend_limit_reached"}
        assert "monthly token budget of 10 tokens" in error["message"]
        # Next month the budget is fresh.
        clock.now = datetime(2027, 2, 1, tzinfo=UTC).timestamp()
        assert (await http.post("/v1/messages", json=body("hi", 1))).status_code == 200


async def test_app_per_model_override(tmp_path: Path) -> None:
    tier = Tier(models={SCRIPTED_MODEL: Limits(requests_per_minute=1)})
    settings = limited_settings(tmp_path, strict=tier)
    async with app_with(settings, FakeClock(), tier="strict") as (_, http, _key):
        ok = await http.post("/v1/messages", json=body("hi", 1))
        assert limits(ok.headers, "requests")[:2] == (1, 0)
        # The alias resolves to the same model, so the same bucket.
        again = await http.post("/v1/messages", json={**body("hi", 1), "model": "scripted"})
        assert again.status_code == 429
        assert "of 1 requests per minute" in again.json()["error"]["message"]
