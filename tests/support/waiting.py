"""Waiting for what a test expects to happen, and judging a received stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def continuous(seqs: list[int]) -> bool:
    """Every sequence number follows the one before (modulo 2**16)."""
    return all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:], strict=False))


async def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.2) -> None:
    """Until ``predicate()`` is true; fails after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def wait_for(what: str, check: Any, timeout: float) -> Any:
    """Polls the coroutine function ``check`` until it returns something true; that."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        await asyncio.sleep(0.3)
