"""URL image sources: off by default, then an allow-list, redirects re-checked, a size
cap and a timeout (api-spec §5.3)."""

from __future__ import annotations

import httpx
import pytest

from parley.errors import InvalidRequestError
from parley.pipeline.image_urls import ImageFetcher, ImageFetchPolicy
from tests.images import gif, png

PATH = "messages.0.content.0.image.source.url"
UNREACHABLE = f"{PATH}: Unable to download the file. Please verify the URL and try again."


def handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/cat.png":
        return httpx.Response(200, content=png(8, 6))
    if path == "/moved":
        return httpx.Response(302, headers={"location": "/cat.png"})
    if path == "/elsewhere":
        return httpx.Response(302, headers={"location": "http://internal.test/secret.png"})
    if path == "/loop":
        return httpx.Response(302, headers={"location": "/loop"})
    if path == "/big.gif":
        return httpx.Response(200, content=gif(1, 1) + b"\x00" * 5000)
    if path == "/text":
        return httpx.Response(200, content=b"hello")
    if path == "/slow":
        raise httpx.ReadTimeout("timed out", request=request)
    return httpx.Response(404)


def fetcher(*hosts: str, max_bytes: int = 1000) -> ImageFetcher:
    policy = ImageFetchPolicy(enabled=True, allowed_hosts=hosts, max_bytes=max_bytes)
    return ImageFetcher(policy, httpx.MockTransport(handler))


async def refused(fetch: ImageFetcher, url: str) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        await fetch.fetch(url, PATH)
    return caught.value.message


async def test_off_by_default() -> None:
    message = await refused(ImageFetcher(), "https://images.test/cat.png")
    assert message == (
        f"{PATH}: this server does not fetch images from URLs; send the image as a base64 "
        "source instead"
    )


async def test_allowed_host_is_fetched_and_typed_by_its_bytes() -> None:
    part = await fetcher("images.test").fetch("https://images.test/cat.png", PATH)
    assert (part.media_type, part.width, part.height) == ("image/png", 8, 6)
    assert part.url == "https://images.test/cat.png"


@pytest.mark.parametrize(
    ("hosts", "url", "ok"),
    [
        (("images.test",), "https://IMAGES.test/cat.png", True),
        (("*.cdn.test",), "https://a.b.cdn.test/cat.png", True),
        (("*.cdn.test",), "https://cdn.test/cat.png", False),
        (("*",), "http://anything.test/cat.png", True),
        ((), "https://images.test/cat.png", False),
        (("images.test",), "https://images.test.evil/cat.png", False),
    ],
)
async def test_allow_list(hosts: tuple[str, ...], url: str, ok: bool) -> None:
    if ok:
        assert (await fetcher(*hosts).fetch(url, PATH)).width == 8
    else:
        host = httpx.URL(url).host
        assert await refused(fetcher(*hosts), url) == (
            f"{PATH}: images from {host} are not allowed on this server"
        )


async def test_redirects_are_followed_within_the_allow_list() -> None:
    assert (await fetcher("images.test").fetch("https://images.test/moved", PATH)).width == 8
    assert await refused(fetcher("images.test"), "https://images.test/elsewhere") == (
        f"{PATH}: images from internal.test are not allowed on this server"
    )
    assert await refused(fetcher("images.test"), "https://images.test/loop") == UNREACHABLE


async def test_size_cap_and_failures() -> None:
    assert await refused(fetcher("images.test"), "https://images.test/big.gif") == (
        f"{PATH}: image exceeds this server's 1000 byte limit for image URLs"
    )
    assert await refused(fetcher("images.test"), "https://images.test/missing") == UNREACHABLE
    assert await refused(fetcher("images.test"), "https://images.test/slow") == UNREACHABLE
    assert await refused(fetcher("images.test"), "https://images.test/text") == (
        "Could not process image"
    )
    assert await refused(fetcher("*"), "file:///etc/passwd") == (
        f"{PATH}: only http and https image URLs are supported"
    )
