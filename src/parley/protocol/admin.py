"""Admin API shapes: API keys and the messages usage report.

They mirror Anthropic's Admin API (`/v1/organizations/...`), limited to what
Parley tracks. Fields Parley has no notion of (workspaces, expiry, principals)
are sent with the value the real API uses for "none", so clients that read
them keep working.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

BucketWidth = Literal["1m", "1h", "1d"]
ApiKeyStatus = Literal["active", "inactive", "archived"]
# `expired` is a status of the real API that Parley keys never reach; a filter on it
# is accepted and matches nothing.
ApiKeyStatusFilter = Literal["active", "inactive", "archived", "expired"]
UsageGroupBy = Literal["api_key_id", "workspace_id", "model", "service_tier", "context_window"]


def _no_nul(value: str) -> str:
    # Text columns (PostgreSQL's above all) cannot hold NUL; no name or id has one.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _in_utc_range(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+01:00 is a valid time that has no UTC form (year 0):
    # refused, where it would otherwise overflow in the bucket arithmetic.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("Input should be a datetime between years 1 and 9999 in UTC") from None


# Sizes of the store's columns (store/schema.py): what does not fit is refused.
KeyName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
IdFilter = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ModelFilter = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


class ApiKeyCreatedBy(BaseModel):
    id: str
    type: Literal["user", "service_account"]


class OrganizationScope(BaseModel):
    type: Literal["organization"] = "organization"


class ApiKeyInfo(BaseModel):
    """An API key as the Admin API shows it: never the secret, only a hint."""

    type: Literal["api_key"] = "api_key"
    id: str
    name: str
    status: ApiKeyStatus
    created_at: str
    # Parley does not record who created a key (keys come from the CLI or the first
    # start). The real API sends null for exactly that case ("system-created keys"),
    # so null it is, rather than an actor type the SDKs do not know.
    created_by: ApiKeyCreatedBy | None = None
    partial_key_hint: str | None
    # No workspaces: every key belongs to the organization (older shape: workspace_id).
    workspace_id: None = None
    scope: OrganizationScope = Field(default_factory=OrganizationScope)
    principal: None = None
    expires_at: None = None
    # Parley's own fields (no Admin API counterpart).
    tier: str
    is_admin: bool
    last_used_at: str | None


class ApiKeyUpdateParams(BaseModel):
    """Body of `POST /v1/organizations/api_keys/{id}`; a null field is left unchanged."""

    model_config = ConfigDict(extra="forbid")

    name: KeyName | None = None
    status: ApiKeyStatus | None = None


class ApiKeyListQuery(BaseModel):
    status: ApiKeyStatusFilter | None = None


class MessagesUsageQuery(BaseModel):
    """Query of `GET /v1/organizations/usage_report/messages` (lists from `x[]` or `x`)."""

    starting_at: UtcDatetime
    ending_at: UtcDatetime | None = None
    bucket_width: BucketWidth = "1d"
    group_by: list[UsageGroupBy] = Field(default_factory=list)
    api_key_ids: list[IdFilter] = Field(default_factory=list)
    models: list[ModelFilter] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)
    page: str | None = None


class UsageCacheCreation(BaseModel):
    ephemeral_1h_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0


class ServerToolUse(BaseModel):
    web_search_requests: int = 0


class MessagesUsageResult(BaseModel):
    """Totals of one group in one bucket. A dimension not grouped by is null."""

    uncached_input_tokens: int
    cache_creation: UsageCacheCreation
    cache_read_input_tokens: int
    output_tokens: int
    server_tool_use: ServerToolUse = Field(default_factory=ServerToolUse)
    api_key_id: str | None
    workspace_id: None = None  # null is the default workspace, Parley's only one
    model: str | None
    service_tier: Literal["standard"] | None
    context_window: Literal["0-200k"] | None


class MessagesUsageBucket(BaseModel):
    starting_at: str
    ending_at: str
    results: list[MessagesUsageResult]


class MessagesUsageReport(BaseModel):
    data: list[MessagesUsageBucket]
    has_more: bool
    next_page: str | None
    # When the figures were read (api-version §19.11); Parley reports from the store as
    # it is at the request, so this is the time of the request.
    data_refreshed_at: str
