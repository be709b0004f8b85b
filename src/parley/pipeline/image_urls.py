"""Image and document blocks with a URL source (api-spec §5.3), fetched under the
server's policy.

Fetching is off unless configured: a server that fetches any URL it is sent can be
turned against addresses only it can reach. When on, only allow-listed hosts are
fetched (each redirect is checked again), over http(s), within a size cap and a
timeout; an image must be an image of an accepted type, a document a PDF (what URL
document sources carry, api-spec §5.3), checked when it is read.
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
    # PDFs are larger than images: the API's request limit bounds them.
    max_document_bytes: int = 32 * 1024 * 1024
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
    """Fetches URL image and document sources for `core.conversation` (an
    `ImageFetch` and a `DocumentFetch`), within the policy; the pipeline uses one only
    when the policy enables fetching."""

    policy: ImageFetchPolicy = field(default_factory=ImageFetchPolicy)
    # Tests inject an httpx.MockTransport; production uses the default network transport.
    transport: httpx.AsyncBaseTransport | None = None

    async def fetch(self, url: str, path: str) -> ImagePart:
        """`path` names the source in errors, e.g. `messages.0.content.0.image.source.url`."""
        if not self.policy.enabled:
            raise url_images_refused(path)
        raw, final_url = await self._fetch(url, path, "image", self.policy.max_bytes)
        media_type = check_image_bytes(raw, None, path)
        return image_part(raw, media_type, url=final_url)

    async def fetch_document(self, url: str, path: str) -> bytes:
        """A PDF's bytes; `core.documents` reads (and checks) them."""
        if not self.policy.enabled:
            raise InvalidRequestError(f"{path}: this server does not fetch documents from URLs")
        raw, _ = await self._fetch(url, path, "document", self.policy.max_document_bytes)
        return raw

    async def _fetch(self, url: str, path: str, what: str, cap: int) -> tuple[bytes, str]:
        """The body of `url`, following allowed redirects, and the URL it came from."""
        async with httpx.AsyncClient(
            transport=self.transport, timeout=self.policy.timeout, follow_redirects=False
        ) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                self._check_url(url, path, what)
                try:
                    raw, location = await self._get(client, url, path, what, cap)
                except httpx.HTTPError:
                    raise InvalidRequestError(f"{path}: {_UNREACHABLE}") from None
                if location is None:
                    return raw, url
                url = urljoin(url, location)
        raise InvalidRequestError(f"{path}: {_UNREACHABLE}")

    def _check_url(self, url: str, path: str, what: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"{path}: only http and https {what} URLs are supported")
        if not self.policy.allows(parts.hostname):
            raise InvalidRequestError(
                f"{path}: {what}s from {parts.hostname} are not allowed on this server"
            )

    async def _get(
        self, client: httpx.AsyncClient, url: str, path: str, what: str, cap: int
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
                if size > cap:
                    raise InvalidRequestError(
                        f"{path}: {what} exceeds this server's {cap} byte limit for {what} URLs"
                    )
                chunks.append(chunk)
            return b"".join(chunks), None
