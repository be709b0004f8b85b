"""The haiku app (/apps/haiku): a picture to a text-only model, the API's refusal, and
the typed-subject fallback; the webcam when there is none and when there is one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Playwright, expect

from tests.serverproc import ParleyProcess
from tests.web.conftest import VIEWPORT, launch, png, save_key, screenshot

pytestmark = pytest.mark.e2e


def open_haiku(page: Page, server: ParleyProcess) -> None:
    page.goto(f"{server.base_url}/apps/haiku")
    save_key(page, server)
    page.select_option("#model", "scripted-1")


def expect_image_refused(page: Page) -> None:
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error.locator(".error-status")).to_have_text("400")
    expect(error.locator(".error-type")).to_have_text("invalid_request_error")
    expect(error.locator(".error-message")).to_have_text(
        "messages.0.content.0: model scripted-1 does not support image input."
    )
    expect(error.locator(".error-hint")).to_contain_text("Write a haiku about a subject instead")
    expect(page.locator("#fallback")).to_be_visible()
    expect(page.locator("#result")).to_be_hidden()


def test_text_only_model_refuses_the_picture_then_writes_about_a_subject(
    page: Page, web_server: ParleyProcess
) -> None:
    open_haiku(page, web_server)
    # The model list says it reads text only; the page says so up front.
    expect(page.locator("#model option:checked")).to_contain_text("text only")
    expect(page.locator("#text-only-notice")).to_contain_text("reads text only")
    expect(page.locator("#write-haiku")).to_be_disabled()

    page.set_input_files(
        "#upload", files=[{"name": "gradient.png", "mimeType": "image/png", "buffer": png(64, 48)}]
    )
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#picture-info")).to_contain_text("PNG · 64×48")
    page.click("#write-haiku")
    expect_image_refused(page)
    screenshot(page, "haiku-image-refused", full_page=True)

    page.fill("#subject", "the first snow on a quiet street")
    page.click("#write-subject")
    expect(page.locator("#result-meta")).to_contain_text("tokens")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#result-label")).to_have_text(
        "A haiku about the first snow on a quiet street"
    )
    # The scripted engine echoes the prompt: the subject reached the model as text.
    expect(page.locator("#haiku")).to_contain_text(
        "Echo: Write a haiku about the first snow on a quiet street."
    )
    screenshot(page, "haiku-text-fallback", full_page=True)


def test_no_camera_is_explained(page: Page, web_server: ParleyProcess) -> None:
    open_haiku(page, web_server)
    page.click("#start-camera")
    message = page.locator("#camera-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("camera")
    expect(message).to_contain_text("upload an image instead")
    expect(page.locator("#take-photo")).to_be_hidden()
    screenshot(page, "haiku-no-camera")


@pytest.fixture
def camera_page(playwright: Playwright) -> Iterator[Page]:
    """Chromium with its built-in fake webcam, permission granted."""
    browser = launch(
        playwright, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"
    )
    page = browser.new_context(viewport=VIEWPORT).new_page()
    yield page
    browser.close()


def test_photo_from_the_webcam_is_sent_as_an_image(
    camera_page: Page, web_server: ParleyProcess
) -> None:
    page = camera_page
    open_haiku(page, web_server)
    page.click("#start-camera")
    expect(page.locator("#video")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#video').videoWidth > 0")
    page.click("#take-photo")
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#video")).to_be_hidden()
    expect(page.locator("#picture-info")).to_contain_text("JPEG")
    page.click("#write-haiku")
    expect_image_refused(page)
    screenshot(page, "haiku-webcam-refused", full_page=True)
