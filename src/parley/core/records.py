"""The records that the store keeps and the rest of Parley reads: API keys and usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ApiKey:
    """A key as requests see it; its secret is never kept, only a hash of it."""

    id: str
    name: str
    hint: str
    tier: str
    status: str
    is_admin: bool
    created_at: datetime
    last_used_at: datetime | None = None
    browser_access: bool = True


@dataclass(frozen=True)
class UsageRecord:
    """What one request (or several, added up) used, for one key and model."""

    key_id: str
    model: str
    at: datetime
    requests: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
