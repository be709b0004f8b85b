"""Message threads (beta) through the newest Python and TypeScript SDKs' own helpers,
with their default arguments, against a real `parley serve` on the scripted engine:
`client.beta.messages.tool_runner(...)` (which threads by default) and
`client.beta.messages.thread(...)` (TypeScript: `toolRunner`, `thread`, driven by
node/threads.mjs). Every request the SDK sends is recorded, so the
tests see that each turn after the first really was a `continue` carrying only the
new messages (no fallback to the whole conversation)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import beta_tool

from tests.e2e.test_typescript_sdk import NODE_DIR, PACKAGES
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

MODEL = "scripted-1"
BETA = "message-threads-2026-08-12"


class Recorder:
    """The body and beta header of every request the SDK sends."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], str]] = []

    def __call__(self, request: httpx.Request) -> None:
        if request.url.path == "/v1/messages":
            body = json.loads(request.read())
            self.requests.append((body, request.headers.get("anthropic-beta", "")))

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for body, _ in self.requests]

    def threads(self) -> list[str | None]:
        return [b["thread"]["type"] if b.get("thread") else None for b in self.bodies]

    def clear(self) -> None:
        self.requests.clear()


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def sdk(scripted_server: ParleyProcess, recorder: Recorder) -> Iterator[anthropic.Anthropic]:
    http_client = anthropic.DefaultHttpxClient(event_hooks={"request": [recorder]})
    with anthropic.Anthropic(
        base_url=scripted_server.base_url,
        api_key=scripted_server.api_key,
        max_retries=0,
        http_client=http_client,
    ) as client:
        yield client


@pytest.fixture
def sent(recorder: Recorder) -> Recorder:
    recorder.clear()
    return recorder


def user(text: str) -> list[anthropic.types.beta.BetaMessageParam]:
    return [{"role": "user", "content": text}]


def only_tool_results(body: dict[str, Any]) -> bool:
    [message] = body["messages"]
    return message["role"] == "user" and all(
        block["type"] == "tool_result" for block in message["content"]
    )


def assert_threaded(sent: Recorder, turns: int) -> None:
    """A create with everything, then continues without system and tools, each one
    naming the reply before it; every request carries the threads beta."""
    assert sent.threads() == ["create"] + ["continue"] * (turns - 1)
    assert all(BETA in beta.split(",") for _, beta in sent.requests)
    for body in sent.bodies[1:]:
        assert "system" not in body
        assert "tools" not in body


@beta_tool
def get_weather(city: str, unit: str) -> str:
    """Current weather for a city.

    Args:
        city: The city.
        unit: celsius or fahrenheit.
    """
    return f"21 degrees {unit} in {city}"


def test_tool_runner_runs_the_loop_on_a_thread(sdk: anthropic.Anthropic, sent: Recorder) -> None:
    runner = sdk.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=100,
        system="You check the weather.",
        messages=user('tool: get_weather {"city": "Rome", "unit": "celsius"}'),
        tools=[get_weather],
    )
    replies = list(runner)
    assert [r.stop_reason for r in replies] == ["tool_use", "end_turn"]
    assert replies[-1].content[0].text == "Echo: 21 degrees celsius in Rome"  # type: ignore[union-attr]
    assert_threaded(sent, 2)
    create, resume = sent.bodies
    assert create["system"] == "You check the weather."
    assert [t["name"] for t in create["tools"]] == ["get_weather"]
    assert resume["thread"]["previous_message_id"] == replies[0].id
    assert only_tool_results(resume)


def test_streaming_tool_runner_on_a_thread(sdk: anthropic.Anthropic, sent: Recorder) -> None:
    runner = sdk.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=100,
        messages=user('say: Let me look.\ntool: get_weather {"city": "Lima", "unit": "celsius"}'),
        tools=[get_weather],
        stream=True,
    )
    texts: list[str] = []
    for stream in runner:
        texts += [event.text for event in stream if event.type == "text"]
    final = runner.until_done()
    assert final.stop_reason == "end_turn"
    assert "".join(texts) == "Let me look.Echo: 21 degrees celsius in Lima"
    assert_threaded(sent, 2)
    assert all(body["stream"] is True for body in sent.bodies)
    assert only_tool_results(sent.bodies[1])


def test_tool_runner_many_steps(sdk: anthropic.Anthropic, sent: Recorder) -> None:
    """Every turn must call a tool (`any`): each continue answers the call of the reply
    the server holds, which the API's pairing rules check against the kept history."""
    calls: list[str] = []

    @beta_tool
    def step(n: int) -> str:
        """Take a step.

        Args:
            n: Which step.
        """
        calls.append(str(n))
        return f"step {len(calls)} done"

    runner = sdk.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=100,
        messages=user("walk"),
        tools=[step],
        tool_choice={"type": "any"},
        max_iterations=4,
    )
    replies = list(runner)
    assert len(replies) == 4
    assert all(r.stop_reason == "tool_use" for r in replies)
    assert len(calls) >= 3
    assert_threaded(sent, 4)
    for body, previous in zip(sent.bodies[1:], replies, strict=False):
        assert body["thread"]["previous_message_id"] == previous.id
        assert body["tool_choice"] == {"type": "any"}
        assert only_tool_results(body)


def test_thread_helper_multi_turn(sdk: anthropic.Anthropic, sent: Recorder) -> None:
    thread = sdk.beta.messages.thread(model=MODEL, max_tokens=50, system="Be brief.")
    first = thread.send({"role": "user", "content": "say: Hello."})
    assert first.content[0].text == "Hello."  # type: ignore[union-attr]
    second = thread.send({"role": "user", "content": "how are you"})
    assert second.content[0].text == "Echo: how are you"  # type: ignore[union-attr]
    with thread.stream({"role": "user", "content": "count: 4"}) as stream:
        streamed = "".join(stream.text_stream)
        third = stream.get_final_message()
    assert streamed == "1 2 3 4"
    assert thread.previous_message_id == third.id
    fourth = thread.send({"role": "user", "content": "and the end"})
    assert fourth.content[0].text == "Echo: and the end"  # type: ignore[union-attr]
    assert_threaded(sent, 4)
    assert [len(b["messages"]) for b in sent.bodies] == [1, 1, 1, 1]
    assert [b["thread"].get("previous_message_id") for b in sent.bodies[1:]] == [
        first.id,
        second.id,
        third.id,
    ]
    # The SDK's own view of the conversation is the one the server held.
    assert len(thread.messages) == 8
    # The last turn ran on the whole conversation: its prompt grew with each turn.
    usages = [m.usage.input_tokens for m in (first, second, third, fourth)]
    assert usages == sorted(usages)
    assert usages[-1] > usages[0] + 10


def test_thread_refuses_a_changed_tool_choice(sdk: anthropic.Anthropic, sent: Recorder) -> None:
    thread = sdk.beta.messages.thread(
        model=MODEL, max_tokens=50, tools=[get_weather.to_dict()], tool_choice={"type": "auto"}
    )
    thread.send({"role": "user", "content": "hello"})
    with pytest.raises(anthropic.BadRequestError) as caught:
        thread.send({"role": "user", "content": "again"}, tool_choice={"type": "any"})
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["details"]["error_code"] == "thread_fingerprint_mismatch"
    assert "`tool_choice`" in body["error"]["message"]
    assert type(caught.value).__name__ == "ThreadFingerprintMismatchError"
    # The thread goes on with the fields it was created with.
    after = thread.send({"role": "user", "content": "on"})
    assert after.content[0].text == "Echo: on"  # type: ignore[union-attr]
    assert sent.threads() == ["create", "continue", "continue"]


def test_a_reply_continued_elsewhere_is_replayed_whole(
    sdk: anthropic.Anthropic, sent: Recorder, scripted_server: ParleyProcess
) -> None:
    """Another client continues from the thread's reply first: the SDK's continue
    gets `thread_already_continued` and it replays the whole conversation as a new
    thread, which then continues as usual (message-threads doc §1.5)."""
    thread = sdk.beta.messages.thread(model=MODEL, max_tokens=50)
    first = thread.send({"role": "user", "content": "one"})
    elsewhere = httpx.post(
        f"{scripted_server.base_url}/v1/messages",
        headers={
            "x-api-key": scripted_server.api_key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "message-threads-2026-08-12",
        },
        json={
            "model": MODEL,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "meanwhile"}],
            "thread": {"type": "continue", "previous_message_id": first.id},
        },
    )
    assert elsewhere.status_code == 200, elsewhere.text
    sent.clear()
    second = thread.send({"role": "user", "content": "two"})
    assert second.content[0].text == "Echo: two"  # type: ignore[union-attr]
    assert sent.threads() == ["continue", "create"]
    assert [len(b["messages"]) for b in sent.bodies] == [1, 3]
    third = thread.send({"role": "user", "content": "three"})
    assert third.content[0].text == "Echo: three"  # type: ignore[union-attr]
    assert sent.threads() == ["continue", "create", "continue"]


# --- the TypeScript SDK -------------------------------------------------------------------


@pytest.fixture(scope="module")
def typescript(scripted_server: ParleyProcess) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    if not (NODE_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        pytest.fail(f"@anthropic-ai/sdk is not installed in {NODE_DIR} (run `make install`)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [node, "threads.mjs", scripted_server.base_url, scripted_server.api_key, MODEL],
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    assert results["version"] == PACKAGES["@anthropic-ai/sdk"]
    return results


def assert_ts_threaded(case: dict[str, Any], turns: int) -> None:
    assert case["ok"], case
    sent = case["sent"]
    assert [s["thread"]["type"] for s in sent] == ["create"] + ["continue"] * (turns - 1)
    assert all(BETA in s["beta"].split(",") for s in sent)
    assert all(s["messages"] == 1 for s in sent)
    assert not any(s["hasSystem"] or s["hasTools"] for s in sent[1:])


def test_typescript_tool_runner(typescript: dict[str, Any]) -> None:
    runner = typescript["runner"]
    assert_ts_threaded(runner, 2)
    assert runner["stops"] == ["tool_use", "end_turn"]
    assert runner["finalText"] == "Echo: 21 degrees celsius in Rome"
    assert runner["sent"][0]["hasSystem"]
    assert runner["sent"][1]["thread"]["previous_message_id"] == runner["ids"][0]


def test_typescript_streaming_tool_runner(typescript: dict[str, Any]) -> None:
    runner = typescript["streamingRunner"]
    assert_ts_threaded(runner, 2)
    assert all(s["stream"] for s in runner["sent"])
    assert runner["text"] == "Looking.Echo: 21 degrees celsius in Lima"
    assert runner["stop"] == "end_turn"


def test_typescript_tool_runner_many_steps(typescript: dict[str, Any]) -> None:
    many = typescript["manySteps"]
    assert_ts_threaded(many, 4)
    assert many["stops"] == ["tool_use"] * 4
    assert many["calls"] >= 3


def test_typescript_thread_helper(typescript: dict[str, Any]) -> None:
    thread = typescript["thread"]
    assert_ts_threaded(thread, 4)
    assert thread["texts"] == ["Hello.", "Echo: how are you", "1 2 3 4", "Echo: and the end"]
    assert thread["streamed"] == "1 2 3 4"
    assert [s["thread"].get("previous_message_id") for s in thread["sent"][1:]] == thread["ids"][:3]
    assert thread["previousMessageId"] == thread["ids"][-1]
    assert thread["historyLength"] == 8
    assert thread["inputTokens"] == sorted(thread["inputTokens"])


def test_typescript_thread_refuses_a_changed_tool_choice(typescript: dict[str, Any]) -> None:
    case = typescript["fingerprint"]
    assert case["ok"], case
    refused = case["refused"]
    assert refused["class"] == "ThreadFingerprintMismatchError"
    assert (refused["status"], refused["errorCode"]) == (400, "thread_fingerprint_mismatch")
    assert "`tool_choice`" in refused["message"]
    assert case["afterText"] == "Echo: on"


# --- a stream the client cuts off -----------------------------------------------------------


def test_a_stream_cut_off_by_the_client_keeps_nothing(scripted_server: ParleyProcess) -> None:
    """The server holds the whole reply or none of it (message-threads doc §1.3): a
    turn whose client went away before `message_stop` is not kept, and the reply it
    continued may be continued again once the server has noticed."""
    headers = {
        "x-api-key": scripted_server.api_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": BETA,
    }
    url = f"{scripted_server.base_url}/v1/messages"

    def body(text: str, thread: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "model": MODEL,
            "max_tokens": 500,
            "messages": [{"role": "user", "content": text}],
            "thread": thread,
            **extra,
        }

    with httpx.Client(headers=headers, timeout=30) as http:
        first = http.post(url, json=body("one", {"type": "create"}))
        assert first.status_code == 200, first.text
        parent = {"type": "continue", "previous_message_id": first.json()["id"]}
        with http.stream("POST", url, json=body("count: 300", parent, stream=True)) as cut:
            lines = cut.iter_lines()
            start = next(line for line in lines if line.startswith("data: "))
            cut_id = json.loads(start.removeprefix("data: "))["message"]["id"]
            next(line for line in lines if "content_block_delta" in line)
        gone = http.post(url, json=body("x", {"type": "continue", "previous_message_id": cut_id}))
        assert gone.status_code == 404, gone.text
        assert gone.json()["error"]["details"]["error_code"] == "thread_not_found"
        codes = []
        for _ in range(100):  # the claim goes back as soon as the server sees the client gone
            again = http.post(url, json=body("two", parent))
            if again.status_code == 200:
                break
            codes.append(again.json()["error"]["details"]["error_code"])
            time.sleep(0.05)
        assert again.status_code == 200, again.text
        assert set(codes) <= {"thread_continue_in_flight"}
        assert again.json()["content"][0]["text"] == "Echo: two"


def test_inline_tool_changes_make_the_runner_leave_the_thread(
    sdk: anthropic.Anthropic, sent: Recorder
) -> None:
    """`add_tools()` sends a `tool_addition` block, which this server does not serve:
    on a thread that is `thread_unsupported_request`, the runner resends the turn
    without a thread, and the block is then refused as any unknown block is."""
    runner = sdk.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=100,
        messages=user('tool: get_weather {"city": "Oslo", "unit": "celsius"}'),
        tools=[get_weather],
    )
    first = next(iter(runner))
    assert first.stop_reason == "tool_use"

    @beta_tool
    def get_time(zone: str) -> str:
        """The time in a zone.

        Args:
            zone: The zone.
        """
        return "noon"

    runner.add_tools(get_time)
    with pytest.raises(anthropic.BadRequestError) as caught:
        list(runner)
    assert sent.threads() == ["create", "continue", None]
    assert len(sent.bodies[2]["messages"]) == 4  # the whole conversation, unthreaded
    assert "tool_addition" in str(caught.value.body)
