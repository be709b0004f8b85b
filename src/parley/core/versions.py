"""The `anthropic-version` header (api-spec §3, api-version §19.2)."""

from __future__ import annotations

from enum import StrEnum

from parley.errors import InvalidRequestError


class APIVersion(StrEnum):
    V2023_01_01 = "2023-01-01"
    V2023_06_01 = "2023-06-01"
    V2026_10_21 = "2026-10-21"

    @property
    def refuses_sampling(self) -> bool:
        return self is APIVersion.V2026_10_21


def parse_version(value: str | None) -> APIVersion:
    if value is None or value == "":
        raise InvalidRequestError("anthropic-version: header is required")
    try:
        return APIVersion(value.strip())
    except ValueError:
        raise InvalidRequestError(f'anthropic-version: "{value}" is not a valid version') from None
