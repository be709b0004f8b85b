"""Image bytes (api-spec §5.3): the base64 limit, the media type checked against the
bytes, and the pixel size read from the file header (no image library needed)."""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Protocol

from parley.core.generation import ImagePart
from parley.errors import InvalidRequestError

# The API's limit, measured on the base64 text as sent (observed messages quote the
# request's byte count: `image exceeds 5 MB maximum: 6096280 bytes > 5242880 bytes`).
MAX_BASE64_BYTES = 5 * 1024 * 1024

# Observed with no path when the bytes are not a readable image.
UNREADABLE = "Could not process image"


def sniff_media_type(data: bytes) -> str | None:
    """The media type the bytes really are, among the four the API accepts."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_size(data: bytes, media_type: str) -> tuple[int, int] | None:
    """(width, height) from the file header, or None when the header is damaged."""
    try:
        if media_type == "image/png":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if media_type == "image/gif":
            width, height = struct.unpack("<HH", data[6:10])
            return width, height
        if media_type == "image/webp":
            return _webp_size(data)
        if media_type == "image/jpeg":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit sizes minus one, packed after a signature byte
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def check_image_bytes(data: bytes, declared: str | None, path: str) -> str:
    """The bytes' real media type; a 400 when they are no image or not the declared kind."""
    actual = sniff_media_type(data)
    if actual is None:
        raise InvalidRequestError(UNREADABLE)
    if declared is not None and actual != declared:
        raise InvalidRequestError(
            f"{path}: The image was specified using the {declared} media type, but the "
            f"image appears to be a {actual} image"
        )
    return actual


def decode_base64_image(data: str, media_type: str, path: str) -> ImagePart:
    """`path` is the block's source path, e.g. `messages.0.content.1.image.source.base64`."""
    size = len(data)
    if size > MAX_BASE64_BYTES:
        raise InvalidRequestError(
            f"{path}.data: image exceeds 5 MB maximum: {size} bytes > {MAX_BASE64_BYTES} bytes"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(UNREADABLE) from None
    check_image_bytes(raw, media_type, path)
    return image_part(raw, media_type)


def image_part(raw: bytes, media_type: str, url: str | None = None) -> ImagePart:
    size = image_size(raw, media_type)
    width, height = size if size is not None else (None, None)
    return ImagePart(media_type=media_type, data=raw, width=width, height=height, url=url)


class ImageFetch(Protocol):
    """Fetches an image URL (network IO lives outside core: `pipeline.image_urls`)."""

    async def fetch(self, url: str, path: str) -> ImagePart: ...


def url_images_refused(path: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{path}: this server does not fetch images from URLs; send the image "
        "as a base64 source instead"
    )
