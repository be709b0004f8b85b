"""The Workbench (/workbench) in a real browser: streaming, usage, errors, Get code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.images import png
from tests.pdfs import pdf_bytes
from tests.serverproc import ParleyProcess
from tests.web.conftest import save_key, screenshot

pytestmark = pytest.mark.e2e

NODE_MODULES = Path(__file__).resolve().parents[1] / "e2e" / "node" / "node_modules"

# Records what the page showed each time the reply text changed, so a test can
# tell text that arrived while the stream was open from text that came at the end.
WATCH_OUTPUT = """() => {
  const out = document.querySelector("#output-text");
  window.seen = [];
  new MutationObserver(() => window.seen.push({
    length: out.textContent.length,
    state: document.querySelector("#run-state").dataset.state,
    stopReason: document.querySelector("#stop-reason").textContent,
  })).observe(out, { childList: true, characterData: true, subtree: true });
}"""


def open_workbench(page: Page, server: ParleyProcess) -> None:
    page.goto(f"{server.base_url}/workbench")
    save_key(page, server)


def set_prompt(page: Page, model: str, text: str, *, max_tokens: int | None = None) -> None:
    page.select_option("#model", model)
    page.locator(".turn-text").first.fill(text)
    if max_tokens is not None:
        page.fill("#max-tokens", str(max_tokens))


def set_temperature(page: Page, value: float) -> None:
    page.eval_on_selector(
        "#temperature",
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }",
        value,
    )


def wait_until_done(page: Page, timeout: float = 30_000) -> None:
    page.wait_for_selector("#run-state:is([data-state=done], [data-state=error])", timeout=timeout)
    state = page.get_attribute("#run-state", "data-state")
    assert state == "done", page.text_content("#error")


def partial_lengths(page: Page) -> list[int]:
    """Lengths of the reply text seen while the stream was still open."""
    seen: list[dict[str, Any]] = page.evaluate("window.seen")
    return [
        s["length"]
        for s in seen
        if s["state"] == "streaming" and s["stopReason"] == "–" and s["length"] > 0
    ]


@pytest.mark.model
def test_streams_a_reply_from_the_real_model(page: Page, model_server: ParleyProcess) -> None:
    open_workbench(page, model_server)
    # The picker is filled from GET /v1/models.
    expect(page.locator("#model option[value='smollm2-135m-instruct']")).to_have_text(
        "SmolLM2 135M Instruct"
    )
    set_prompt(page, "smollm2-135m-instruct", "Write a short poem about the sea.", max_tokens=40)
    expect(page.locator("#model-info")).to_contain_text("smollm2-135m-instruct · 8,192 token")
    set_temperature(page, 0)
    page.evaluate(WATCH_OUTPUT)
    page.click("#run")
    wait_until_done(page, timeout=120_000)
    screenshot(page, "workbench-real-model")

    text = page.text_content("#output-text") or ""
    assert text.strip()
    assert page.text_content("#stop-reason") in {"end_turn", "max_tokens"}
    assert int(page.text_content("#input-tokens") or "0") > 0
    assert 1 <= int(page.text_content("#output-tokens") or "0") <= 40
    assert re.fullmatch(r"\d+ ms", page.text_content("#ttft") or "")
    assert re.fullmatch(r"req_\w+", (page.text_content("#request-id") or "").split(": ")[-1])
    # The text grew in steps while the stream was open, before the stop reason came.
    partial = partial_lengths(page)
    assert len(set(partial)) >= 2, partial
    assert min(partial) < len(text)


def test_shows_text_as_it_streams(page: Page, web_server: ParleyProcess) -> None:
    sentence = (
        "Parley streams each token as the model produces it, so the Workbench shows "
        "the reply growing word by word while the request is still open."
    )
    open_workbench(page, web_server)
    page.fill("#system", "You are a patient narrator.")
    set_prompt(page, "slow-1", f"say: {sentence}")  # 0.2 s per word
    page.evaluate(WATCH_OUTPUT)
    page.click("#run")
    # Wait for a few words, then look at the page while the stream is still open.
    page.wait_for_function("() => document.querySelector('#output-text').textContent.length > 40")
    mid = page.evaluate(
        """() => ({
          text: document.querySelector("#output-text").textContent,
          state: document.querySelector("#run-state").dataset.state,
          label: document.querySelector("#run-state").textContent,
          stopReason: document.querySelector("#stop-reason").textContent,
          ttft: document.querySelector("#ttft").textContent,
          stopVisible: !document.querySelector("#stop").hidden,
        })"""
    )
    screenshot(page, "workbench-mid-stream")
    assert mid["state"] == "streaming", mid
    assert mid["label"] == "Streaming…"
    assert mid["stopReason"] == "–"
    assert mid["stopVisible"]
    assert re.fullmatch(r"\d+ ms", mid["ttft"])
    assert sentence.startswith(mid["text"])
    assert len(mid["text"]) < len(sentence)

    wait_until_done(page)
    assert page.text_content("#output-text") == sentence
    assert page.text_content("#stop-reason") == "end_turn"
    assert page.text_content("#output-tokens") == str(len(sentence.split()))
    assert len(set(partial_lengths(page))) >= 5


def test_stop_ends_the_stream_and_keeps_the_text(page: Page, web_server: ParleyProcess) -> None:
    open_workbench(page, web_server)
    set_prompt(page, "slow-1", "count: 100")  # 20 s if nobody stops it
    page.locator(".turn-text").first.press("Control+Enter")
    page.wait_for_function("() => document.querySelector('#output-text').textContent.length > 4")
    page.click("#stop")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "stopped")
    expect(page.locator("#run")).to_be_visible()
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    text = page.text_content("#output-text") or ""
    assert text.startswith("1 2 ")
    page.wait_for_timeout(500)  # nothing more arrives once stopped
    assert page.text_content("#output-text") == text


def test_conversation_turns_and_prefill(page: Page, web_server: ParleyProcess) -> None:
    open_workbench(page, web_server)
    set_prompt(page, "scripted-1", "say: Good morning to you")
    page.click("#add-turn")  # the next turn alternates: assistant
    turns = page.locator(".turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(1).locator(".turn-role")).to_have_value("assistant")
    expect(turns.nth(1).locator(".badge")).to_have_text("Prefill")
    turns.nth(1).locator(".turn-text").fill("Well,")
    page.fill("#stop-sequences", "you")
    page.click("#run")
    wait_until_done(page)
    # The prefill is shown before the continuation; the stop sequence ends the reply.
    assert page.text_content("#output-prefill") == "Well,"
    assert page.text_content("#output-text") == "Good morning to "
    assert page.text_content("#stop-reason") == "stop_sequence"
    assert page.text_content("#stop-sequence") == '"you"'

    page.click("#keep-reply")  # the reply joins the prefill; a new user turn follows
    expect(turns).to_have_count(3)
    expect(turns.nth(1).locator(".turn-text")).to_have_value("Well,Good morning to ")
    expect(turns.nth(2).locator(".turn-role")).to_have_value("user")
    expect(page.locator(".badge")).to_have_count(0)
    turns.nth(0).locator(".remove-turn").click()
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".turn-role")).to_have_value("assistant")
    turns.nth(0).locator(".turn-role").select_option("user")
    expect(turns.nth(0)).to_have_class(re.compile(r"\buser\b"))


def test_wrong_key_shows_the_error_envelope(page: Page, web_server: ParleyProcess) -> None:
    page.goto(f"{web_server.base_url}/workbench/")
    save_key(page, web_server, key="sk-parley-not-a-real-key")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error.locator(".error-status")).to_have_text("401")
    expect(error.locator(".error-type")).to_have_text("authentication_error")
    expect(error.locator(".error-message")).to_have_text("invalid x-api-key")
    expect(error.locator(".error-id")).to_contain_text("req_")
    screenshot(page, "workbench-error-401")
    # The key stays in localStorage until the person replaces or forgets it.
    assert page.evaluate("localStorage.getItem('parley.apiKey')") == "sk-parley-not-a-real-key"
    page.click("#forget-key")
    assert page.evaluate("localStorage.getItem('parley.apiKey')") is None


def test_an_error_event_mid_stream_is_shown(page: Page, web_server: ParleyProcess) -> None:
    open_workbench(page, web_server)
    set_prompt(page, "slow-1", "count: 5\nfail: overloaded_error")
    page.click("#run")
    page.wait_for_selector("#run-state[data-state=error]")
    screenshot(page, "workbench-error-mid-stream")
    error = page.locator("#error")
    expect(error.locator(".error-status")).to_have_text("200")  # the stream had started
    expect(error.locator(".error-type")).to_have_text("overloaded_error")
    expect(error.locator(".error-message")).to_have_text("Overloaded")
    expect(error.locator(".error-note")).to_contain_text("after the stream had started")
    assert page.text_content("#output-text") == "1 "  # what arrived before the error stays
    expect(page.locator("#run-state")).to_have_text("Failed mid-stream")


def test_the_key_is_remembered(page: Page, web_server: ParleyProcess) -> None:
    open_workbench(page, web_server)
    page.reload()
    expect(page.locator("#api-key")).to_have_value(web_server.api_key)
    expect(page.locator("#key-state")).to_have_text("Key saved in this browser")
    page.wait_for_function("() => !document.querySelector('#model').disabled")


# Quotes, a backslash, a newline, non-ASCII and shell syntax: every snippet must keep
# them literal.
SYSTEM = 'You\'re "terse" \\ naïve ✓\nSecond line: $HOME `date` %s {x}'


def get_code(
    page: Page, server: ParleyProcess, reply: str, temperature: float = 0.5
) -> dict[str, str]:
    """Builds a multi-turn request in the page and returns the three snippets."""
    open_workbench(page, server)
    page.select_option("#model", "scripted-1")
    page.fill("#system", SYSTEM)
    page.locator(".turn-text").first.fill("Hi")
    page.click("#add-turn")
    page.locator(".turn-text").nth(1).fill("Hello! What shall I say?")
    page.click("#add-turn")
    page.locator(".turn-text").nth(2).fill(f"say: {reply}")
    page.fill("#max-tokens", "64")
    page.fill("#stop-sequences", "STOP\n\\n")
    set_temperature(page, temperature)
    page.click("#run")
    wait_until_done(page)
    assert page.text_content("#output-text") == reply
    page.click("#get-code")
    expect(page.locator("#code-dialog")).to_be_visible()
    expect(page.locator("#code-base-url")).to_have_text(server.base_url)
    code = {
        lang: page.text_content(f"#code-{lang}") or "" for lang in ("python", "typescript", "curl")
    }
    code["input_tokens"] = page.text_content("#input-tokens") or ""
    return code


def snippet_env(server: ParleyProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["ANTHROPIC_API_KEY"] = server.api_key
    return env


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_get_code_python_snippet_runs(
    page: Page, web_server: ParleyProcess, tmp_path: Path, temperature: float
) -> None:
    reply = "The snippet ran against Parley."
    code = get_code(page, web_server, reply, temperature)
    if temperature != 1.0:
        screenshot(page, "workbench-get-code")
    python = code["python"]
    assert f'base_url="{web_server.base_url}"' in python
    assert 'os.environ["ANTHROPIC_API_KEY"]' in python
    assert "client.messages.create(" in python
    assert 'stop_sequences=["STOP", "\\n"],' in python
    if temperature == 1.0:  # the default is left out, so nothing needs pinning
        assert "temperature" not in python
        assert "anthropic-version" not in python
    else:  # pinned to the API version that still has it (api-version §19.4)
        assert 'default_headers={"anthropic-version": "2023-06-01"},' in python
        assert 'extra_body={"temperature": 0.5},' in python
    assert web_server.api_key not in "".join(code.values())

    script = tmp_path / "snippet.py"
    script.write_text(python)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=snippet_env(web_server),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == reply + "\n"


def test_get_code_typescript_and_curl_snippets_run(
    page: Page, web_server: ParleyProcess, tmp_path: Path
) -> None:
    reply = "Same request, other clients."
    code = get_code(page, web_server, reply)
    page.get_by_role("tab", name="curl").click()
    expect(page.locator("pre.code[data-lang=curl]")).to_be_visible()
    expect(page.locator("pre.code[data-lang=python]")).to_be_hidden()

    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@anthropic-ai" / "sdk").is_dir():
        pytest.fail("node and tests/e2e/node/node_modules are needed (run `make install`)")
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    script = tmp_path / "snippet.mjs"
    script.write_text(code["typescript"])
    done = subprocess.run(
        [node, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=snippet_env(web_server),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == reply + "\n"

    done = subprocess.run(
        ["bash", "-c", code["curl"]],
        capture_output=True,
        text=True,
        env=snippet_env(web_server),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    message = json.loads(done.stdout)
    assert message["content"][0]["text"] == reply
    assert message["stop_reason"] == "end_turn"
    # The same prompt as the Workbench's own run, down to the token.
    assert str(message["usage"]["input_tokens"]) == code["input_tokens"]


def test_attach_files_to_a_turn(page: Page, web_server: ParleyProcess) -> None:
    """Attached files are uploaded with the Files API and sent as `file_id` sources: a
    PDF and a text file as documents (the scripted echo shows what the model read),
    an image as an image block (refused by this text-only model, as the API would)."""
    open_workbench(page, web_server)
    set_prompt(page, "scripted-1", "What do these say?", max_tokens=400)
    attach = page.locator(".attach-input").first
    attach.set_input_files(
        files=[
            {
                "name": "treaty.pdf",
                "mimeType": "application/pdf",
                "buffer": pdf_bytes("The treaty was signed in 1648."),
            }
        ]
    )
    expect(page.locator(".attachment")).to_have_count(1)
    page.locator(".attach-input").first.set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Rivers flow north."}]
    )
    expect(page.locator(".attachment")).to_have_count(2)
    expect(page.locator(".attachment").first).to_contain_text("treaty.pdf")
    screenshot(page, "workbench-attachments")
    page.click("#run")
    wait_until_done(page)
    reply = page.text_content("#output-text") or ""
    assert "The treaty was signed in 1648." in reply
    assert "Rivers flow north." in reply
    assert reply.rstrip().endswith("What do these say?")

    # Removing one sends only the other; an image goes as an image block.
    page.get_by_role("button", name="Remove notes.txt").click()
    expect(page.locator(".attachment")).to_have_count(1)
    page.locator(".attach-input").first.set_input_files(
        files=[{"name": "dot.png", "mimeType": "image/png", "buffer": png(2, 2)}]
    )
    expect(page.locator(".attachment")).to_have_count(2)
    page.click("#run")
    page.wait_for_selector("#run-state[data-state=error]")
    assert "does not support image input" in (page.text_content("#error") or "")
