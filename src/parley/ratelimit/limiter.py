"""Admission by tier: requests, input and output tokens per minute, a monthly budget.

Input tokens are charged at admission; output tokens are reserved from
`max_tokens` at admission and the unused part is given back at the end
(`settle`), also when the client goes away mid-stream.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from parley.config import Settings
from parley.core.calendar import month_start, next_month_start, rfc3339_ceil
from parley.core.records import ApiKey
from parley.errors import RateLimitError, ServiceUnavailableError
from parley.ratelimit.backends import BucketBackend, BucketsUnavailable
from parley.ratelimit.buckets import Decision, Demand, Reading

Clock = Callable[[], float]
TokensSince = Callable[[str, datetime], Awaitable[int]]
# Told of each refusal: the limit's name (`requests`, `input-tokens`, `output-tokens`,
# `count-tokens-requests`, `monthly-budget`) and the model id.
OnRefusal = Callable[[str, str], None]


def _ignore(limit: str, model: str) -> None:
    return None


_UNITS = {
    "requests": "requests per minute",
    "input-tokens": "input tokens per minute",
    "output-tokens": "output tokens per minute",
}


@dataclass
class Admission:
    headers: dict[str, str]
    # What was taken: the request, its input tokens, and output tokens reserved
    # from max_tokens (last).
    taken: tuple[Demand, ...] = ()
    settled: bool = field(default=False)


def ratelimit_headers(names: list[str], readings: tuple[Reading, ...]) -> dict[str, str]:
    """`anthropic-ratelimit-*` headers (api-spec §15). `tokens-*` reports whichever of
    the input and output buckets is most restrictive now."""
    headers: dict[str, str] = {}
    tightest: tuple[Reading, int] | None = None
    for name, reading in zip(names, readings, strict=True):
        remaining = reading.remaining
        _reading_headers(headers, name, reading, remaining)
        if name.endswith("tokens") and (tightest is None or remaining < tightest[1]):
            tightest = (reading, remaining)
    if tightest is not None:
        _reading_headers(headers, "tokens", *tightest)
    return headers


def _reading_headers(headers: dict[str, str], name: str, reading: Reading, remaining: int) -> None:
    limit, left, reset = _header_names(name)
    headers[limit] = str(reading.capacity)
    headers[left] = str(remaining)
    headers[reset] = rfc3339_ceil(reading.reset_at)


@functools.cache
def _header_names(name: str) -> tuple[str, str, str]:
    prefix = f"anthropic-ratelimit-{name}"
    return f"{prefix}-limit", f"{prefix}-remaining", f"{prefix}-reset"


class RateLimiter:
    def __init__(
        self,
        backend: BucketBackend,
        settings: Settings,
        tokens_since: TokensSince,
        clock: Clock = time.time,
        on_refusal: OnRefusal = _ignore,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._tokens_since = tokens_since
        self._clock = clock
        self._on_refusal = on_refusal

    def now(self) -> float:
        return self._clock()

    async def ping(self) -> None:
        """Raise when the bucket backend cannot be reached."""
        await self._backend.ping()

    async def _take(self, demands: list[Demand]) -> Decision | None:
        """The backend's decision; None when it is down and the policy is to admit
        (`redis_down = "open"`). Closed (the default) refuses with a retryable 503:
        limits are never exceeded, and clients retry once Redis is back."""
        try:
            return await self._backend.take(demands, self._clock())
        except BucketsUnavailable:
            if self._settings.redis_down == "open":
                return None
            raise ServiceUnavailableError() from None

    async def _give(self, demand: Demand, now: float) -> None:
        # A reservation that cannot be given back while Redis is down is lost; the
        # bucket refills by itself within the minute (the outage is logged once).
        with contextlib.suppress(BucketsUnavailable):
            await self._backend.give(demand, now)

    async def check_budget(self, key: ApiKey, model: str | None = None) -> None:
        """Refuse when this month's budget is spent. With `model`, the refusal carries
        the current `anthropic-ratelimit-*` readings like every other answer (§15)."""
        budget = self._settings.tier(key.tier).monthly_token_budget
        if budget is None:
            return
        now = datetime.fromtimestamp(self._clock(), UTC)
        since = month_start(now)
        if await self._tokens_since(key.id, since) < budget:
            return
        self._on_refusal("monthly-budget", model or "")
        resets = next_month_start(now)
        headers: dict[str, str] = {}
        if model is not None:
            names, demands = self._message_demands(key, model, 0, 0, 0)
            decision = await self._take(demands)
            if decision is not None:
                headers = ratelimit_headers(names, decision.readings)
        # Waiting a minute will not help: x-should-retry false and no retry-after, so
        # SDKs do not retry in vain (api-spec §15, api-version §19.8).
        raise RateLimitError(
            f"This request would exceed the monthly token budget of {budget:,} tokens for "
            f"your API key ({key.id}). The budget resets at {rfc3339_ceil(resets.timestamp())}.",
            headers={**headers, "x-should-retry": "false"},
            details={"error_code": "enforced_spend_limit_reached"},
        )

    def _message_demands(
        self, key: ApiKey, model: str, input_tokens: int, output_tokens: int, requests: int
    ) -> tuple[list[str], list[Demand]]:
        limits = self._settings.tier(key.tier).limits_for(model)
        base = f"{key.id}:{model}"
        names = ["requests", "input-tokens", "output-tokens"]
        demands = [
            Demand(f"{base}:requests", limits.requests_per_minute, requests),
            Demand(f"{base}:input-tokens", limits.input_tokens_per_minute, input_tokens),
            Demand(f"{base}:output-tokens", limits.output_tokens_per_minute, output_tokens),
        ]
        return names, demands

    async def admit_message(
        self, key: ApiKey, model: str, input_tokens: int, max_tokens: int
    ) -> Admission:
        names, demands = self._message_demands(key, model, input_tokens, max_tokens, 1)
        decision = await self._take(demands)
        if decision is None:
            return Admission({})  # nothing taken, nothing to give back
        headers = ratelimit_headers(names, decision.readings)
        if not decision.allowed:
            raise self._refusal(key, model, names, demands, decision, headers)
        return Admission(headers, tuple(demands))

    async def admit_count_tokens(self, key: ApiKey, model: str) -> dict[str, str]:
        """count_tokens has its own request bucket; the token buckets are only read."""
        names, demands = self._message_demands(key, model, 0, 0, 0)
        tier = self._settings.tier(key.tier)
        demands[0] = Demand(
            f"{key.id}:count_tokens:requests", tier.count_tokens_requests_per_minute, 1
        )
        decision = await self._take(demands)
        if decision is None:
            return {}
        headers = ratelimit_headers(names, decision.readings)
        if not decision.allowed:
            raise self._refusal(key, model, names, demands, decision, headers, counting=True)
        return headers

    async def settle(self, admission: Admission, output_tokens: int) -> None:
        """Give back the part of the output reservation that was not used."""
        unused = _unused(admission, output_tokens)
        admission.settled = True
        if unused is not None:
            await self._give(unused, self._clock())

    def settle_now(self, admission: Admission, output_tokens: int) -> bool:
        """`settle` without waiting, where the buckets allow it (they are in this
        process); False where only `settle` can (nothing was settled)."""
        unused = _unused(admission, output_tokens)
        if unused is not None and not self._backend.give_now(unused, self._clock()):
            return False
        admission.settled = True
        return True

    async def refund(self, admission: Admission) -> None:
        """Give back everything: the request was admitted but never ran (its engine
        refused it), so it costs nothing."""
        if admission.settled:
            return
        admission.settled = True
        now = self._clock()
        for demand in admission.taken:
            if demand.amount > 0:
                await self._give(demand, now)

    def _refusal(
        self,
        key: ApiKey,
        model: str,
        names: list[str],
        demands: list[Demand],
        decision: Decision,
        headers: dict[str, str],
        *,
        counting: bool = False,
    ) -> RateLimitError:
        assert decision.blocking is not None
        name, demand = names[decision.blocking], demands[decision.blocking]
        self._on_refusal(
            "count-tokens-requests" if counting and name == "requests" else name, model
        )
        message = (
            f"This request would exceed the rate limit for your API key ({key.id}) of "
            f"{demand.capacity:,} {_UNITS[name]}. You can see the response headers for "
            "current usage. "
        )
        if decision.wait is None:
            # Larger than the bucket itself: no amount of waiting admits it.
            return RateLimitError(
                message + "Please reduce the prompt length or the maximum tokens requested.",
                headers={**headers, "x-should-retry": "false"},
            )
        retry_after = min(60, max(1, math.ceil(decision.wait)))
        return RateLimitError(
            message + "Please reduce the prompt length or the maximum tokens requested, "
            "or try again later.",
            headers={**headers, "retry-after": str(retry_after), "x-should-retry": "true"},
        )


def _unused(admission: Admission, output_tokens: int) -> Demand | None:
    """The part of an admission's output reservation to give back, if any is left to."""
    if admission.settled or not admission.taken:
        return None
    reserved = admission.taken[-1]
    unused = reserved.amount - output_tokens
    return Demand(reserved.key, reserved.capacity, unused) if unused > 0 else None
