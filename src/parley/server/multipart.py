"""A multipart/form-data body read as it arrives (python-multipart, the parser Starlette
uses), so a file part streams into storage instead of being spooled whole.

`feed(chunk)` returns what the chunk held, in order: a part's start (its field name,
filename and content type), slices of its data, its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from parley.errors import InvalidRequestError

# Ordinary fields are a few bytes (`expires_in_seconds`); more is no honest client.
MAX_FIELD_BYTES = 64 * 1024


@dataclass
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass
class PartData:
    data: bytes


@dataclass
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


@dataclass
class _Headers:
    name: bytes = b""
    value: bytes = b""
    found: dict[bytes, bytes] = field(default_factory=dict)


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        # Wording unconfirmed: the real API answers uploads that are not multipart so.
        raise InvalidRequestError(
            "Content-Type must be multipart/form-data with a boundary, with the file in a "
            "part named `file`"
        )
    return boundary


class MultipartReader:
    def __init__(self, boundary: bytes) -> None:
        self._events: list[Event] = []
        self._headers = _Headers()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )
        self.finished = False

    def feed(self, chunk: bytes) -> list[Event]:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidRequestError(f"The multipart body could not be parsed: {exc}") from None
        events, self._events = self._events, []
        return events

    def _begin(self) -> None:
        self._headers = _Headers()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._headers.name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._headers.value += data[start:end]

    def _header_end(self) -> None:
        headers = self._headers
        headers.found[headers.name.strip().lower()] = headers.value.strip()
        headers.name, headers.value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.found.get(b"content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise InvalidRequestError("Each multipart part needs a name in Content-Disposition")
        filename = options.get(b"filename")
        content_type = self._headers.found.get(b"content-type")
        self._events.append(
            PartStart(
                name=name.decode("utf-8", "replace"),
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=content_type.decode("latin-1") if content_type else None,
            )
        )

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(PartData(bytes(data[start:end])))

    def _end(self) -> None:
        self._events.append(PartEnd())

    def close(self) -> None:
        """The body ended: it must have ended with the closing boundary."""
        self._parser.finalize()
