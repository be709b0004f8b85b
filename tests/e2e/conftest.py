"""Extra `parley serve` processes for the end-to-end tests, each with its own config."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serverproc import ParleyProcess

# Four scripted models whose listing order is known: newest `created_at` first,
# ties broken by id (api-spec §9).
CATALOG_CONFIG = """
[[models]]
id = "cat-alpha"
aliases = ["cat-a"]
engine = "scripted"
created_at = "2025-01-01T00:00:00Z"

[[models]]
id = "cat-bravo"
aliases = ["cat-b"]
engine = "scripted"
created_at = "2025-03-01T00:00:00Z"

[[models]]
id = "cat-charlie"
aliases = ["cat-c"]
engine = "scripted"
created_at = "2025-02-01T00:00:00Z"

[[models]]
id = "cat-delta"
aliases = ["cat-d"]
engine = "scripted"
created_at = "2025-03-01T00:00:00Z"
"""
CATALOG_ORDER = ["cat-bravo", "cat-delta", "cat-charlie", "cat-alpha"]

# A small body limit (413) and a single slow slot with no wait queue (529).
LIMITS_MAX_BODY = 4096
LIMITS_CONFIG = f"""
max_body_bytes = {LIMITS_MAX_BODY}
queue_size = 0

[[models]]
id = "slow-1"
aliases = ["slow"]
engine = "scripted"
slots = 1
token_delay = 0.1
"""


@pytest.fixture(scope="session")
def catalog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    server = ParleyProcess(tmp_path_factory.mktemp("catalog"), config=CATALOG_CONFIG)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    server = ParleyProcess(tmp_path_factory.mktemp("limits"), config=LIMITS_CONFIG)
    server.start()
    yield server
    server.stop()
