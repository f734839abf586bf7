from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from serving import RunningServer, running

from sfu.config import Settings
from sfu.signaling.server import create_app

__all__ = ["RunningServer", "server"]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """The real application on an ephemeral loopback port, in this event loop."""
    async with running(create_app(Settings())) as running_server:
        yield running_server
    await asyncio.sleep(0)
