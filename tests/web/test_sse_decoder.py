"""The pages' SSE reader (web/shared/sse.js), run in the browser on awkward input:
the network may split a stream anywhere, even inside a CRLF (api-spec §6.1)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

DECODE = """async (chunks) => {
  const { SSEDecoder, readEvents } = await import("/shared/sse.js");
  const decoder = new SSEDecoder();
  const raw = [];
  for (const chunk of chunks) raw.push(...decoder.push(chunk));
  raw.push(...decoder.end());
  const body = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
      controller.close();
    },
  });
  const named = [];
  for await (const event of readEvents(body)) named.push(event);
  return { raw, named };
}"""


def decode(page: Page, chunks: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(DECODE, chunks)
    return result


def test_events_split_anywhere_decode_the_same(page: Page, web_server: ParleyProcess) -> None:
    stream = (
        'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
        ": a comment\r\n"
        'event: content_block_delta\r\ndata: {"delta":\r\ndata: "héllo ✓"}\r\n\r\n'
    )
    page.goto(f"{web_server.base_url}/workbench/")
    whole = decode(page, [stream])
    assert whole["named"] == [
        {"event": "message_start", "data": {"type": "message_start"}},
        {"event": "content_block_delta", "data": {"delta": "héllo ✓"}},
    ]
    for cut in range(1, len(stream)):  # every split, including between \r and \n
        assert decode(page, [stream[:cut], stream[cut:]]) == whole, cut


def test_unnamed_events_are_dropped_and_a_last_event_is_kept(
    page: Page, web_server: ParleyProcess
) -> None:
    # Both SDKs drop an event without an `event:` line (api-spec §6.1).
    stream = 'data: {"type":"ping"}\n\nevent: message_stop\ndata: {"type":"message_stop"}'
    page.goto(f"{web_server.base_url}/workbench/")
    result = decode(page, [stream])
    assert result["raw"] == [
        {"event": None, "data": '{"type":"ping"}'},
        {"event": "message_stop", "data": '{"type":"message_stop"}'},
    ]
    assert result["named"] == [{"event": "message_stop", "data": {"type": "message_stop"}}]
