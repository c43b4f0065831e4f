"""Waiting on conditions with a deadline: how tests synchronise (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ("wait_for",)

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], limit: float, what: str, *, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(interval)
