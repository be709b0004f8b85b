"""One log line when a dependency goes away and one when it is back, however many
requests meet the outage in between (each of them gets a clean, retryable error)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("parley.outages")


class Outage:
    def __init__(self, name: str) -> None:
        self.name = name
        self._since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self._since is None:
            self._since = time.monotonic()
            detail = str(exc) or type(exc).__name__
            log.error(
                "%s is unavailable (%s); requests that need it get a retryable error",
                self.name,
                detail,
            )

    def recovered(self) -> None:
        if self._since is not None:
            seconds = time.monotonic() - self._since
            log.warning(
                "%s is available again after %.1fs (%d failed calls)",
                self.name,
                seconds,
                self.failures,
            )
            self._since = None
            self.failures = 0
