"""A page from another origin (another loopback port) calling Parley straight from the
browser: with the opt-in header it works; without it the browser hides the answer
(api-spec §14)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.serverproc import ParleyProcess
from tests.web.conftest import screenshot

pytestmark = pytest.mark.e2e

WEB_DIR = Path(__file__).resolve().parents[2] / "src" / "parley" / "web"

TEST_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Another origin</title><link rel="icon" href="data:,"></head>
<body>
<h1>A page on another origin</h1>
<pre id="log"></pre>
<script>
  const log = (line) => (document.querySelector("#log").textContent += line + "\\n");
  // Calls POST {parley}/v1/messages the way a bring-your-own-key page does.
  window.callParley = async (parley, key, optIn) => {
    const headers = {
      "x-api-key": key,
      "anthropic-version": "2023-06-01",
      "content-type": "application/json",
    };
    if (optIn) headers["anthropic-dangerous-direct-browser-access"] = "true";
    try {
      const response = await fetch(`${parley}/v1/messages`, {
        method: "POST",
        headers,
        body: JSON.stringify({
          model: "scripted-1",
          max_tokens: 20,
          messages: [{ role: "user", content: "say: Hello from another origin" }],
        }),
      });
      const body = await response.json();
      const result = {
        status: response.status,
        body,
        requestId: response.headers.get("request-id"),
        remaining: response.headers.get("anthropic-ratelimit-requests-remaining"),
      };
      log(`opt-in=${optIn}: ${response.status} ${JSON.stringify(body.content ?? body.error)}`);
      return result;
    } catch (error) {
      log(`opt-in=${optIn}: ${error.name}: ${error.message}`);
      return { error: error.name, message: error.message };
    }
  };
</script>
</body>
</html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_directory(directory: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A static server on another port with the test page at /."""
    (tmp_path / "index.html").write_text(TEST_PAGE)
    yield from serve_directory(tmp_path)


@pytest.fixture
def pages_elsewhere() -> Iterator[str]:
    """Parley's own web/ directory, served by another server on another port."""
    yield from serve_directory(WEB_DIR)


PREFLIGHT_OK = '"OPTIONS /v1/messages HTTP/1.1" 204'
REFUSED = '"POST /v1/messages HTTP/1.1" 401'


def wait_for_log(server: ParleyProcess, text: str, more_than: int, timeout: float = 5.0) -> None:
    """Waits until the server's access log has more than `more_than` lines with `text`."""
    deadline = time.monotonic() + timeout
    while server.logs().count(text) <= more_than:
        assert time.monotonic() < deadline, f"no new {text!r} in the server's log"
        time.sleep(0.05)


def test_other_origin_succeeds_only_with_the_opt_in_header(
    page: Page, web_server: ParleyProcess, other_origin: str
) -> None:
    assert other_origin != web_server.base_url
    page.goto(other_origin + "/")
    args = [web_server.base_url, web_server.api_key]
    logs = web_server.logs()

    allowed = page.evaluate("([url, key]) => callParley(url, key, true)", args)
    assert allowed["status"] == 200, allowed
    assert allowed["body"]["content"][0]["text"] == "Hello from another origin"
    # Exposed headers are readable from the other origin.
    assert allowed["requestId"].startswith("req_")
    assert allowed["remaining"] is not None

    refused = page.evaluate("([url, key]) => callParley(url, key, false)", args)
    # Parley answers 401 without Access-Control-Allow-Origin, so the browser does not
    # even let the page read that answer: fetch rejects.
    assert refused["error"] == "TypeError", refused
    assert "status" not in refused
    expect(page.locator("#log")).to_contain_text("opt-in=false: TypeError")
    # The browser hid it, but Parley did answer: the preflight (sent once, then cached)
    # positively, the request itself with a 401.
    wait_for_log(web_server, PREFLIGHT_OK, logs.count(PREFLIGHT_OK))
    wait_for_log(web_server, REFUSED, logs.count(REFUSED))
    screenshot(page, "cross-origin-test-page")


def test_workbench_served_elsewhere_talks_to_parley(
    page: Page, web_server: ParleyProcess, pages_elsewhere: str
) -> None:
    page.goto(pages_elsewhere + "/workbench/")
    # The base URL defaults to the page's own origin; point it at Parley.
    expect(page.locator("#base-url")).to_have_value(pages_elsewhere)
    page.fill("#base-url", web_server.base_url)
    page.fill("#api-key", web_server.api_key)
    page.click("#save-key")
    page.wait_for_function("() => !document.querySelector('#model').disabled")
    page.select_option("#model", "scripted-1")
    page.locator(".turn-text").first.fill("say: Served from elsewhere, answered by Parley.")
    page.click("#run")
    page.wait_for_selector("#run-state[data-state=done]")
    assert page.text_content("#output-text") == "Served from elsewhere, answered by Parley."
    assert page.text_content("#request-id") != ""  # an exposed header (api-spec §14)
    screenshot(page, "workbench-other-origin")
