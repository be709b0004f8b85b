"""The `anthropic-beta` header (api-spec §2, §12; api-version §19.10, §19.12).

The real API refuses a value it does not know with a 400 and accepts the ones it
does, deprecated ones included (they are no-ops once their feature went GA). The
values below are those the official SDKs name or send themselves (Python 2.15 and
0.121, TypeScript 1.15 and 0.120: `AnthropicBetaParam`, the credential providers, the
stream helpers), and those Claude Code sends. A value here is accepted; what it
turns on is decided per field (`BETA_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Iterable

from parley.errors import InvalidRequestError

# `AnthropicBetaParam` of the SDKs (identical in Python 2.15/0.121 and TypeScript 1.15).
SDK_BETAS = frozenset(
    {
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "output-128k-2025-02-19",
        "mcp-client-2025-04-04",
        "mcp-client-2025-11-20",
        "dev-full-thinking-2025-05-14",
        "interleaved-thinking-2025-05-14",
        "code-execution-2025-05-22",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "model-context-window-exceeded-2025-08-26",
        "fast-mode-2026-02-01",
        "output-300k-2026-03-24",
        "user-profiles-2026-03-24",
        "user-profiles-2026-08-18",
        "user-profiles-2026-09-04",
        "advisor-tool-2026-03-01",
        "managed-agents-2026-04-01",
        "dreaming-2026-04-21",
        "thinking-token-count-2026-05-13",
        "server-side-fallback-2026-06-01",
        "server-side-fallback-2026-07-01",
        "fallback-credit-2026-06-01",
        "fallback-credit-2026-07-01",
        "agent-memory-2026-07-22",
        "mid-conversation-tool-changes-2026-07-01",
        "compact-2026-01-12",
        "computer-use-2025-11-24",
        "mcp-tunnels-2026-06-22",
        "structured-outputs-2025-11-13",
        "task-budgets-2026-03-13",
        "thinking-display-updates-2026-08-18",
        "mid-conversation-output-config-2026-07-01",
        "thinking-binding-controls-2026-08-01",
        "mid-conversation-system-clear-at-2026-08-21",
        "compact-2026-09-04",
        "inline-tools-2026-09-15",
        "mcp-client-2026-09-15",
        "ce-plugins-2026-09-01",
        "spend-limit-reads-2026-09-26",
        "telemetry-destinations-2026-08-11",
        "webhooks-2026-10-07",
        "admin-user-sign-out-2026-10-08",
        "message-threads-2026-08-12",
        "analytics-usage-cost-2026-08-24",
        "experimental-claude-tag-2026-10-21",
        "message-batches-2024-09-24",
        "prompt-caching-2024-07-31",
        "pdfs-2024-09-25",
        "token-counting-2024-11-01",
        "token-efficient-tools-2025-02-19",
        "files-api-2025-04-14",
        "extended-cache-ttl-2025-04-11",
        "skills-2025-10-02",
        "cache-diagnosis-2026-04-07",
        "ce-user-management-2026-07-13",
        "ce-claude-code-managed-settings-2026-10-06",
        "efs-2026-10-01",
        "google-managed-data-controls-2026-09-01",
        "user-profiles-billing-2026-10-01",
    }
)

# Sent by the SDKs' own code rather than named in their types: OAuth and federation
# credentials, the stream helpers' fine-grained tool streaming, a newer structured
# outputs revision.
SDK_INTERNAL_BETAS = frozenset(
    {
        "oauth-2025-04-20",
        "oidc-federation-2026-04-01",
        "fine-grained-tool-streaming-2025-05-14",
        "structured-outputs-2025-12-15",
    }
)

# Claude Code (2.1) on every request, seen on the wire.
CLAUDE_CODE_BETAS = frozenset(
    {
        "claude-code-20250219",
        "prompt-caching-scope-2026-01-05",
        "mid-conversation-system-2026-04-07",
        "effort-2025-11-24",
    }
)

KNOWN_BETAS = SDK_BETAS | SDK_INTERNAL_BETAS | CLAUDE_CODE_BETAS

# Beta request fields, and the header values that make them part of the body. Without
# one, the field is an extra input, as the API reports it (api-spec §5.1 quotes
# `context_management: Extra inputs are not permitted`).
BETA_FIELDS: dict[str, frozenset[str]] = {
    "context_management": frozenset({"context-management-2025-06-27"}),
    "mcp_servers": frozenset(
        {"mcp-client-2025-04-04", "mcp-client-2025-11-20", "mcp-client-2026-09-15"}
    ),
    "compaction": frozenset({"compact-2026-01-12", "compact-2026-09-04"}),
    "output_format": frozenset({"structured-outputs-2025-11-13", "structured-outputs-2025-12-15"}),
    "fallbacks": frozenset({"server-side-fallback-2026-06-01", "server-side-fallback-2026-07-01"}),
    "fallback_credit_token": frozenset(
        {"fallback-credit-2026-06-01", "fallback-credit-2026-07-01"}
    ),
    "billing_policy": frozenset({"user-profiles-billing-2026-10-01"}),
    # The SDKs send it with every threaded turn (message-threads doc §1.1).
    "thread": frozenset({"message-threads-2026-08-12"}),
}


def unexpected_betas(values: Iterable[str]) -> InvalidRequestError:
    listed = ", ".join(f"`{v}`" for v in values)
    return InvalidRequestError(
        f"Unexpected value(s) {listed} for the `anthropic-beta` header. Please consult our "
        "documentation at platform.claude.com/docs or try again without the header."
    )


def parse_betas(headers: Iterable[str]) -> frozenset[str]:
    """The values of every `anthropic-beta` line (comma-joined lists or repeated
    headers, api-spec §2); an unknown one is the API's 400."""
    values = [v.strip() for header in headers for v in header.split(",")]
    values = [v for v in values if v]
    unknown = [v for v in values if v not in KNOWN_BETAS]
    if unknown:
        raise unexpected_betas(unknown)
    return frozenset(values)


def check_beta_fields(sent: Iterable[str], betas: frozenset[str]) -> None:
    """A beta field whose header value is missing is an extra input (api-spec §5.1)."""
    for name in sent:
        needs = BETA_FIELDS.get(name)
        if needs is not None and not needs & betas:
            raise InvalidRequestError(f"{name}: Extra inputs are not permitted")
