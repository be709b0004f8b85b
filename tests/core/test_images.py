"""Image bytes: media type sniffing, pixel sizes, the base64 limit (api-spec §5.3)."""

from __future__ import annotations

import base64

import pytest

from parley.core.images import (
    MAX_BASE64_BYTES,
    decode_base64_image,
    image_size,
    sniff_media_type,
)
from parley.errors import InvalidRequestError
from tests.images import b64, gif, jpeg, png, webp

PATH = "messages.0.content.1.image.source.base64"


@pytest.mark.parametrize(
    ("data", "media_type", "size"),
    [
        (png(64, 48), "image/png", (64, 48)),
        (gif(3, 500), "image/gif", (3, 500)),
        (jpeg(1024, 768), "image/jpeg", (1024, 768)),
        (webp(300, 200), "image/webp", (300, 200)),
        (webp(16383, 2, "VP8L"), "image/webp", (16383, 2)),
        (webp(640, 480, "VP8 "), "image/webp", (640, 480)),
    ],
)
def test_type_and_size_come_from_the_bytes(
    data: bytes, media_type: str, size: tuple[int, int]
) -> None:
    assert sniff_media_type(data) == media_type
    assert image_size(data, media_type) == size
    part = decode_base64_image(b64(data), media_type, PATH)
    assert (part.media_type, part.width, part.height, part.data) == (media_type, *size, data)


def test_declared_type_must_match_the_bytes() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        decode_base64_image(b64(png(2, 2)), "image/jpeg", PATH)
    assert caught.value.message == (
        f"{PATH}: The image was specified using the image/jpeg media type, but the image "
        "appears to be a image/png image"
    )


@pytest.mark.parametrize("data", ["not base64 at all!", b64(b"plain text, no image")])
def test_unreadable_images(data: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        decode_base64_image(data, "image/png", PATH)
    assert caught.value.message == "Could not process image"


def test_the_5_mb_limit_counts_the_base64_text() -> None:
    just_fits = base64.b64encode(png(4, 4) + b"\x00" * (MAX_BASE64_BYTES * 3 // 4 - 200))
    assert len(just_fits) <= MAX_BASE64_BYTES
    assert decode_base64_image(just_fits.decode(), "image/png", PATH).width == 4
    too_big = b64(png(4, 4) + b"\x00" * (MAX_BASE64_BYTES * 3 // 4))
    with pytest.raises(InvalidRequestError) as caught:
        decode_base64_image(too_big, "image/png", PATH)
    assert caught.value.message == (
        f"{PATH}.data: image exceeds 5 MB maximum: {len(too_big)} bytes > 5242880 bytes"
    )


def test_a_damaged_header_has_no_size() -> None:
    assert image_size(b"\x89PNG\r\n\x1a\n", "image/png") is None
    assert image_size(b"\xff\xd8\xff\xe0\x00", "image/jpeg") is None
