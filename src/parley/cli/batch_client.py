"""A small HTTP client for `parley batches ...`: the CLI talks to a running server
with a key, because batches belong to the key that created them.

Bodies and results stream: a 100,000-line file is sent, and its results are
written out, without either being held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from parley.protocol.batches import PROGRESS_HEADER

_UPLOAD_CHUNK = 1 << 16


class BatchClientError(Exception):
    """The server refused a call (its error type and message), or could not be reached."""


class InvalidBatchFile(ValueError):
    pass


def _file_body(path: Path) -> Iterator[bytes]:
    """`{"requests":[<line>,<line>,...]}` from a JSONL file, checked line by line so that a
    bad line is reported with its number, and sent in chunks as it is read."""
    yield b'{"requests":['
    buffer = bytearray()
    first = True
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                json.loads(line)
            except ValueError as exc:
                raise InvalidBatchFile(f"{path}, line {number}: not JSON ({exc})") from None
            if not first:
                buffer += b","
            buffer += line
            first = False
            if len(buffer) >= _UPLOAD_CHUNK:
                yield bytes(buffer)
                buffer.clear()
    yield bytes(buffer) + b"]}"


class BatchClient:
    def __init__(
        self, base_url: str, api_key: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            timeout=httpx.Timeout(600.0, connect=10.0),
            transport=transport,
        )

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BatchClientError(f"cannot reach {self._http.base_url}: {exc}") from exc
        _raise_for_error(response)
        return response

    def create(self, path: Path) -> dict[str, Any]:
        response = self._send(
            "POST",
            "/v1/messages/batches",
            content=_file_body(path),
            headers={"content-type": "application/json"},
        )
        batch: dict[str, Any] = response.json()
        return batch

    def retrieve(self, batch_id: str) -> tuple[dict[str, Any], int | None]:
        """The batch, and how many of its requests have finished (None once it ended)."""
        response = self._send("GET", f"/v1/messages/batches/{batch_id}")
        finished = response.headers.get(PROGRESS_HEADER)
        batch: dict[str, Any] = response.json()
        return batch, int(finished) if finished is not None else None

    def list(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` batches, newest first, following the pages (api-spec §10)."""
        batches: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": min(limit, 1000)}
        while len(batches) < limit:
            page = self._send("GET", "/v1/messages/batches", params=params).json()
            batches += page["data"]
            if not page["has_more"] or not page["last_id"]:
                break
            params["after_id"] = page["last_id"]
        return batches[:limit]

    def cancel(self, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = self._send("POST", f"/v1/messages/batches/{batch_id}/cancel").json()
        return batch

    def results(self, batch_id: str) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", f"/v1/messages/batches/{batch_id}/results") as r:
                if r.status_code >= 400:
                    r.read()
                    _raise_for_error(r)
                yield from r.iter_bytes()
        except httpx.HTTPError as exc:
            raise BatchClientError(f"cannot reach {self._http.base_url}: {exc}") from exc


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        detail = f"{error['type']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        detail = response.text or response.reason_phrase
    raise BatchClientError(f"{response.status_code} {detail}")
