"""Keys, limits and usage through real `parley serve` processes sharing a real
PostgreSQL and Redis: the official SDK's view of a 429 (with and without retries),
two replicas enforcing one limit and one revocation, usage after a cut-off
stream, and logs free of secrets (api-spec §13, §15)."""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
import pytest

from parley.store.database import open_database
from parley.store.keys import SECRET_PREFIX, CreatedKey, KeyStore
from parley.store.usage import UsageRow, UsageStore
from tests.e2e.sse import iter_events
from tests.pg import REDIS_URL, fresh_database, fresh_redis_prefix, require_redis, run_sync
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

T = TypeVar("T")

FAST = "scripted-1"
SLOW = "slow-1"
SLOW_TOKEN_DELAY = 0.05

# Each test uses keys of its own tier, so buckets never leak between tests.
TIERS = """
[tiers.default]
requests_per_minute = 1000

[tiers.tiny]
requests_per_minute = 2

[tiers.per_second]
input_tokens_per_minute = 60

[tiers.shared]
requests_per_minute = 5

[tiers.budget]
monthly_token_budget = 10

[tiers.metered]
output_tokens_per_minute = 1000
"""

MODELS = f"""
[[models]]
id = "{FAST}"
engine = "scripted"
context_window = 4096
max_output_tokens = 1000
slots = 8

[[models]]
id = "{SLOW}"
engine = "scripted"
context_window = 4096
max_output_tokens = 1000
slots = 2
token_delay = {SLOW_TOKEN_DELAY}
"""


def config(database_url: str, redis_prefix: str) -> str:
    return (
        f'log_level = "debug"\n'
        f'database_url = "{database_url}"\n'
        f'redis_url = "{REDIS_URL}"\n'
        f'redis_prefix = "{redis_prefix}"\n' + TIERS + MODELS
    )


@dataclass
class Cluster:
    """Two replicas on different ports sharing one database and one Redis."""

    database_url: str
    a: ParleyProcess
    b: ParleyProcess
    secrets: list[str] = field(default_factory=list)

    @property
    def replicas(self) -> tuple[ParleyProcess, ParleyProcess]:
        return self.a, self.b

    def create_key(self, name: str, tier: str = "default") -> CreatedKey:
        created = run_sync(_with_keys(self.database_url, lambda keys: keys.create(name, tier=tier)))
        self.secrets.append(created.secret)
        return created

    def revoke(self, key_id: str) -> None:
        run_sync(_with_keys(self.database_url, lambda keys: keys.revoke(key_id)))

    def usage(self, key_id: str) -> list[UsageRow]:
        return run_sync(_usage_rows(self.database_url, key_id))

    def wait_for_usage(self, key_id: str, requests: int, timeout: float = 10.0) -> list[UsageRow]:
        """Usage is written in the background after a reply ends: poll for it."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.usage(key_id)
            if sum(r.counts["requests"] for r in rows) >= requests or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


async def _with_keys(url: str, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    engine = await open_database(url)
    try:
        return await work(KeyStore(engine))
    finally:
        await engine.dispose()


async def _usage_rows(url: str, key_id: str) -> list[UsageRow]:
    engine = await open_database(url)
    try:
        return await UsageStore(engine).rows(key_ids=[key_id])
    finally:
        await engine.dispose()


def start_all(*servers: ParleyProcess) -> None:
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda s: s.start(timeout=60), servers))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis()
    with fresh_database() as database_url, fresh_redis_prefix() as prefix:
        text = config(database_url, prefix)
        a = ParleyProcess(tmp_path_factory.mktemp("replica-a"), config=text)
        b = ParleyProcess(tmp_path_factory.mktemp("replica-b"), config=text)
        # One key exists before either starts, so neither prints a bootstrap key.
        run_sync(_with_keys(database_url, lambda keys: keys.create("operator")))
        try:
            start_all(a, b)
            yield Cluster(database_url, a, b)
        finally:
            a.stop()
            b.stop()


def user(text: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


def sdk(server: ParleyProcess, secret: str, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=secret, **options)


def post_message(
    server: ParleyProcess,
    secret: str,
    *,
    model: str = FAST,
    text: str = "say: ok",
    max_tokens: int = 5,
    bearer: bool = False,
) -> httpx.Response:
    auth = {"authorization": f"Bearer {secret}"} if bearer else {"x-api-key": secret}
    return httpx.post(
        server.base_url + "/v1/messages",
        headers={**auth, "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": max_tokens, "messages": user(text)},
        timeout=30,
    )


# --- the official SDK and 429s --------------------------------------------------


def test_sdk_without_retries_raises_rate_limit_error(cluster: Cluster) -> None:
    key = cluster.create_key("no-retries", tier="tiny")
    with sdk(cluster.a, key.secret, max_retries=0) as client:
        first = client.messages.with_raw_response.create(
            model=FAST, max_tokens=5, messages=user("say: one")
        )
        assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
        client.messages.create(model=FAST, max_tokens=5, messages=user("say: two"))
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=FAST, max_tokens=5, messages=user("say: three"))
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["x-should-retry"] == "true"
    retry_after = error.response.headers["retry-after"]
    assert re.fullmatch(r"\d+", retry_after)
    # 2 per minute: the next request fits in about 30 s.
    assert 25 <= int(retry_after) <= 30
    assert error.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert isinstance(error.body, dict)
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.body["error"]["message"].startswith(
        f"This request would exceed the rate limit for your API key ({key.key.id}) of 2 "
        "requests per minute."
    )
    assert error.request_id is not None


def test_sdk_with_retries_waits_retry_after_then_succeeds(cluster: Cluster) -> None:
    """60 input tokens per minute refill at one a second. A first request of 60 tokens
    empties the bucket (a full bucket would allow a burst of 60, so a plain 60
    requests per minute would take 60 requests to reach); the next one-token request
    is refused with retry-after 1, and the SDK waits that second and succeeds."""
    key = cluster.create_key("retries", tier="per_second")
    attempts: list[tuple[str | None, int]] = []

    def note(response: Any) -> None:  # an httpx2.Response, the SDK's own httpx
        retry_count = response.request.headers.get("x-stainless-retry-count")
        attempts.append((retry_count, response.status_code))

    sixty = " ".join(f"w{i}" for i in range(60))  # 60 scripted tokens once wrapped
    http_client = anthropic.DefaultHttpxClient(event_hooks={"response": [note]})
    with sdk(cluster.b, key.secret, max_retries=2, http_client=http_client) as client:
        first = client.messages.create(model=FAST, max_tokens=5, messages=user(sixty))
        assert first.usage.input_tokens == 60
        started = time.monotonic()
        message = client.messages.create(model=FAST, max_tokens=5, messages=user("say:"))
        waited = time.monotonic() - started
    assert message.usage.input_tokens == 1
    assert attempts == [("0", 200), ("0", 429), ("1", 200)]
    # It slept for the retry-after second (not an instant retry, not a long backoff).
    assert 0.9 <= waited < 5


def test_spent_budget_is_not_retried(cluster: Cluster) -> None:
    key = cluster.create_key("budget", tier="budget")
    statuses: list[int] = []
    http_client = anthropic.DefaultHttpxClient(
        event_hooks={"response": [lambda response: statuses.append(response.status_code)]}
    )
    with sdk(cluster.a, key.secret, max_retries=2, http_client=http_client) as client:
        # 6 tokens in, 5 out: over the budget of 10 once recorded.
        client.messages.create(model=FAST, max_tokens=5, messages=user("say: a b c d e"))
        rows = cluster.wait_for_usage(key.key.id, requests=1)
        assert sum(r.counts["input_tokens"] + r.counts["output_tokens"] for r in rows) == 11
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=FAST, max_tokens=5, messages=user("say: more"))
    error = caught.value
    assert isinstance(error, anthropic.EnforcedSpendLimitReachedError)
    assert statuses == [200, 429]  # x-should-retry: false, so only one attempt
    assert error.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in error.response.headers
    assert isinstance(error.body, dict)
    assert error.body["error"]["details"] == {"error_code": "enforced_spend_limit_reached"}


# --- two replicas ---------------------------------------------------------------


def test_two_replicas_enforce_one_limit(cluster: Cluster) -> None:
    """5 per minute across both replicas: of 16 requests sent at once, half to each,
    exactly 5 pass (plus one per 12 s the burst took, which is none in practice)."""
    key = cluster.create_key("shared", tier="shared")
    servers = [cluster.replicas[i % 2] for i in range(16)]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda server: post_message(server, key.secret), servers))
    elapsed = time.monotonic() - started
    statuses = [reply.status_code for reply in replies]
    assert set(statuses) <= {200, 429}, statuses
    allowed = statuses.count(200)
    assert 5 <= allowed <= 5 + math.floor(elapsed * 5 / 60), (allowed, elapsed)
    # Had each replica kept its own bucket, each would have let 5 of its 8 through.
    for server in cluster.replicas:
        mine = [r for r, s in zip(replies, servers, strict=True) if s is server]
        assert any(r.status_code == 429 for r in mine)
    if allowed == 5:
        remaining = sorted(
            int(r.headers["anthropic-ratelimit-requests-remaining"])
            for r in replies
            if r.status_code == 200
        )
        assert remaining == [0, 1, 2, 3, 4]
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 12
    # Usage from both replicas adds up in the one database.
    rows = cluster.wait_for_usage(key.key.id, requests=allowed)
    assert sum(r.counts["requests"] for r in rows) == allowed


@pytest.mark.parametrize("bearer", [False, True])
def test_a_key_revoked_via_one_replica_is_refused_by_both(cluster: Cluster, bearer: bool) -> None:
    key = cluster.create_key(f"revoked-{bearer}")
    for server in cluster.replicas:
        assert post_message(server, key.secret, bearer=bearer).status_code == 200
    cluster.revoke(key.key.id)
    for server in cluster.replicas:
        refused = post_message(server, key.secret, bearer=bearer)
        assert refused.status_code == 401
        assert refused.json()["error"] == {
            "type": "authentication_error",
            "message": "invalid x-api-key",
        }
        models = httpx.get(
            server.base_url + "/v1/models",
            headers={"x-api-key": key.secret, "anthropic-version": "2023-06-01"},
        )
        assert models.status_code == 401


# --- usage after a cut-off stream -----------------------------------------------


def test_usage_adds_up_after_a_cut_off_stream(cluster: Cluster) -> None:
    key = cluster.create_key("cut-off", tier="metered")
    body = {
        "model": SLOW,
        "max_tokens": 1000,  # the whole output bucket is reserved at admission
        "stream": True,
        "messages": user("count: 500"),
    }
    read = 0
    with (
        httpx.Client(base_url=cluster.a.base_url, timeout=30) as http,
        http.stream(
            "POST",
            "/v1/messages",
            json=body,
            headers={"x-api-key": key.secret, "anthropic-version": "2023-06-01"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["anthropic-ratelimit-output-tokens-remaining"] == "0"
        for event in iter_events(response):
            if event.name == "content_block_delta":
                read += 1
                if read == 5:
                    break  # leaving the block closes the connection mid-stream
    cut_at = time.monotonic()

    rows = cluster.wait_for_usage(key.key.id, requests=1)
    assert len(rows) == 1, rows
    counts = rows[0].counts
    assert counts["requests"] == 1
    assert counts["input_tokens"] == 2  # "<user>count: " and "500</user>"
    # What was generated before the server noticed the disconnect: at least what
    # the client read, and far less than the whole reply.
    generated = counts["output_tokens"]
    noticed_within = time.monotonic() - cut_at
    assert read <= generated <= read + 5 + noticed_within / SLOW_TOKEN_DELAY, counts
    assert generated < 500

    # The reservation was settled to what was generated: the output bucket holds all
    # but those tokens (seen from the other replica; without the refund it would hold
    # only the little refilled since, about 17 per second).
    counted = httpx.post(
        cluster.b.base_url + "/v1/messages/count_tokens",
        headers={"x-api-key": key.secret, "anthropic-version": "2023-06-01"},
        json={"model": SLOW, "messages": user("hello")},
    )
    assert counted.status_code == 200
    remaining = int(counted.headers["anthropic-ratelimit-output-tokens-remaining"])
    assert remaining >= 1000 - generated
    assert counted.headers["anthropic-ratelimit-output-tokens-limit"] == "1000"


# --- logs -----------------------------------------------------------------------


def secret_pieces(secret: str) -> list[str]:
    """The secret and every 12-character piece of its random part: a log line holding
    any of them leaks (the 4-character hints at either end do not)."""
    body = secret.removeprefix("sk-parley-admin-").removeprefix(SECRET_PREFIX)
    return [secret] + [body[i : i + 12] for i in range(len(body) - 11)]


def leaks(logs: str, secret: str) -> list[str]:
    return [piece for piece in secret_pieces(secret) if piece in logs]


def exercise(server: ParleyProcess, secret: str) -> None:
    """Every way a key reaches the server: both headers, every keyed endpoint."""
    for auth in ({"x-api-key": secret}, {"authorization": f"Bearer {secret}"}):
        headers = {**auth, "anthropic-version": "2023-06-01"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
            http.post("/v1/messages", json={"model": FAST, "max_tokens": 3, "messages": user("hi")})
            with http.stream(
                "POST",
                "/v1/messages",
                json={"model": FAST, "max_tokens": 3, "stream": True, "messages": user("hi")},
            ) as stream:
                stream.read()
            http.post("/v1/messages/count_tokens", json={"model": FAST, "messages": user("hi")})
            http.get("/v1/models")
            http.get("/v1/organizations/api_keys")
            http.post("/v1/messages", content=b"{not json")


def test_no_secret_ever_appears_in_logs(
    cluster: Cluster, tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    # A server of its own on an empty database, so it prints its one bootstrap key.
    server = ParleyProcess(tmp_path / "logs", config=config(pg_url, redis_prefix))
    server.start(timeout=60)
    try:
        bootstrap = server.api_key
        assert bootstrap.startswith(SECRET_PREFIX)
        created = run_sync(_with_keys(pg_url, lambda keys: keys.create("second")))
        revoked = run_sync(_with_keys(pg_url, lambda keys: keys.create("revoked")))
        admin = run_sync(_with_keys(pg_url, lambda keys: keys.create("ops", admin=True)))
        tiny = run_sync(_with_keys(pg_url, lambda keys: keys.create("tiny", tier="tiny")))
        run_sync(_with_keys(pg_url, lambda keys: keys.revoke(revoked.key.id)))
        wrong = SECRET_PREFIX + secrets.token_urlsafe(32)
        for secret in (bootstrap, created.secret, revoked.secret, admin.secret, wrong):
            exercise(server, secret)
        # Over a limit too (2 per minute): refusals write messages of their own.
        assert [post_message(server, tiny.secret).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
    finally:
        server.stop()

    stdout = server.stdout_path.read_text()
    stderr = server.stderr_path.read_text()
    assert "DEBUG" in stderr  # debug logging was really on
    assert stdout.count("export ANTHROPIC_API_KEY=") == 1
    assert f"export ANTHROPIC_API_KEY={bootstrap}\n" in stdout
    assert stdout.count(bootstrap) == 1
    assert leaks(stdout.replace(f"export ANTHROPIC_API_KEY={bootstrap}", ""), bootstrap) == []
    assert leaks(stderr, bootstrap) == []
    for secret in (created.secret, revoked.secret, admin.secret, tiny.secret, wrong):
        assert leaks(stdout + stderr, secret) == []

    # Nor in the replicas' logs, for every key the other tests used.
    for replica in cluster.replicas:
        logs = replica.logs()
        assert "export ANTHROPIC_API_KEY=" not in logs
        for secret in cluster.secrets:
            assert leaks(logs, secret) == []
