"""The long-lived parts of a running Parley, started and stopped together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from parley.config import Settings
from parley.engines.registry import ModelRegistry
from parley.store.keys import KeyStore


def _organization_id(settings: Settings) -> str:
    path = settings.data_dir / "organization-id"
    if path.is_file():
        return path.read_text().strip()
    value = str(uuid.uuid4())
    path.write_text(value + "\n")
    return value


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    keys: KeyStore | None = None
    organization_id: str = field(default="")

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(settings=settings, registry=ModelRegistry.from_settings(settings))

    async def start(self) -> None:
        self.keys = await KeyStore.open_sqlite(self.settings.data_dir)
        self.organization_id = _organization_id(self.settings)
        await self.registry.start()

    async def aclose(self) -> None:
        await self.registry.aclose()
        if self.keys is not None:
            await self.keys.aclose()
            self.keys = None

    @property
    def key_store(self) -> KeyStore:
        if self.keys is None:
            raise RuntimeError("services not started")
        return self.keys
