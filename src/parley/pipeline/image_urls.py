"""Image blocks with a URL source (api-spec §5.3), fetched under the server's policy.

Fetching is off unless configured: a server that fetches any URL it is sent can be
turned against addresses only it can reach. When on, only allow-listed hosts are
fetched (each redirect is checked again), over http(s), within a size cap and a
timeout, and the bytes must be an image of an accepted type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from parley.core.generation import ImagePart
from parley.core.images import check_image_bytes, image_part, url_images_refused
from parley.errors import InvalidRequestError

_MAX_REDIRECTS = 3
# Wording unconfirmed: what the API says when it cannot fetch an image URL.
_UNREACHABLE = "Unable to download the file. Please verify the URL and try again."


@dataclass(frozen=True)
class ImageFetchPolicy:
    enabled: bool = False
    # Exact host names, `*.example.com` for a domain's subdomains, or `*` for any host.
    allowed_hosts: tuple[str, ...] = ()
    max_bytes: int = 5 * 1024 * 1024
    timeout: float = 10.0

    def allows(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.allowed_hosts:
            pattern = pattern.lower()
            if pattern == "*" or pattern == host:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
        return False


@dataclass
class ImageFetcher:
    """Fetches URL image sources for `core.conversation` (an `ImageFetch`), within the
    policy; the pipeline uses one only when the policy enables fetching."""

    policy: ImageFetchPolicy = field(default_factory=ImageFetchPolicy)
    # Tests inject an httpx.MockTransport; production uses the default network transport.
    transport: httpx.AsyncBaseTransport | None = None

    async def fetch(self, url: str, path: str) -> ImagePart:
        """`path` names the source in errors, e.g. `messages.0.content.0.image.source.url`."""
        if not self.policy.enabled:
            raise url_images_refused(path)
        async with httpx.AsyncClient(
            transport=self.transport, timeout=self.policy.timeout, follow_redirects=False
        ) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                self._check_url(url, path)
                try:
                    raw, location = await self._get(client, url, path)
                except httpx.HTTPError:
                    raise InvalidRequestError(f"{path}: {_UNREACHABLE}") from None
                if location is None:
                    media_type = check_image_bytes(raw, None, path)
                    return image_part(raw, media_type, url=url)
                url = urljoin(url, location)
        raise InvalidRequestError(f"{path}: {_UNREACHABLE}")

    def _check_url(self, url: str, path: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"{path}: only http and https image URLs are supported")
        if not self.policy.allows(parts.hostname):
            raise InvalidRequestError(
                f"{path}: images from {parts.hostname} are not allowed on this server"
            )

    async def _get(
        self, client: httpx.AsyncClient, url: str, path: str
    ) -> tuple[bytes, str | None]:
        """The body, or the redirect target; the cap holds however the body is sent."""
        async with client.stream("GET", url) as response:
            location = response.headers.get("location")
            if response.is_redirect and location:
                return b"", location
            if response.status_code != 200:
                raise InvalidRequestError(f"{path}: {_UNREACHABLE}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.policy.max_bytes:
                    raise InvalidRequestError(
                        f"{path}: image exceeds this server's {self.policy.max_bytes} byte "
                        "limit for image URLs"
                    )
                chunks.append(chunk)
            return b"".join(chunks), None
