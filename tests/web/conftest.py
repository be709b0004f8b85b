"""Browser tests: Debian's Chromium driven by Playwright against real `parley serve`
processes. Playwright never downloads a browser here; it launches /usr/bin/chromium."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.serverproc import ParleyProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}

# A fast scripted model, and a slow one whose stream can be watched as it unfolds.
WEB_CONFIG = """
[[models]]
id = "scripted-1"
aliases = ["scripted"]
engine = "scripted"
display_name = "Scripted"
created_at = "2025-02-01T00:00:00Z"

[[models]]
id = "slow-1"
engine = "scripted"
display_name = "Scripted, slow"
created_at = "2025-01-01T00:00:00Z"
token_delay = 0.2
"""


# Module scope, not session: sync Playwright keeps an event loop running on the main
# thread while it is started, and pytest-asyncio cannot run async tests (in other
# directories) until it stops.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def launch(playwright: Playwright, *extra_args: str) -> Browser:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra_args)
    )


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own localStorage) that fails the test on a script error."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: _script_error(message, errors))
    yield page
    context.close()
    assert not errors, errors


def _script_error(message: ConsoleMessage, errors: list[str]) -> None:
    # A refused request is logged by Chromium itself ("Failed to load resource: ... 401");
    # so is a blocked cross-origin read. Anything else at error level is a page bug.
    expected = ("Failed to load resource", "blocked by CORS policy")
    if message.type == "error" and not any(e in message.text for e in expected):
        errors.append(message.text)


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    server = ParleyProcess(tmp_path_factory.mktemp("web"), config=WEB_CONFIG)
    server.start()
    yield server
    server.stop()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Keeps a screenshot as a test artifact (artifacts/ is not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def save_key(page: Page, server: ParleyProcess, key: str | None = None) -> None:
    """Enters the key in the page's connection bar and waits for the model list."""
    page.fill("#api-key", server.api_key if key is None else key)
    page.click("#save-key")
    if key is None:
        page.wait_for_function("() => !document.querySelector('#model').disabled")


def png(width: int, height: int) -> bytes:
    """A small RGB gradient PNG, built by hand (no imaging library needed)."""
    rows = b"".join(
        b"\x00" + b"".join(bytes([x * 255 // width, y * 255 // height, 170]) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
