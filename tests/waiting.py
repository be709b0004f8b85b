"""Waiting in a test for something that other tasks make true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool], *, seconds: float = 5.0, step: float = 0.01
) -> None:
    """Let other tasks run until `condition` holds; fail after about `seconds`."""
    for _ in range(max(1, round(seconds / step))):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition never became true")
