from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from serving import RunningServer, running

from loadtest.netns import namespaces_available
from sfu.config import Settings
from sfu.signaling.server import create_app

__all__ = ["RunningServer", "namespaces", "server"]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """The real application on an ephemeral loopback port, in this event loop."""
    async with running(create_app(Settings())) as running_server:
        yield running_server
    await asyncio.sleep(0)


@pytest.fixture(scope="module")
def namespaces() -> None:
    """For tests on a shaped link: network namespaces must be available. Under CI their
    absence fails loudly (CI must run those tests); elsewhere the test is skipped, saying why."""
    ok, why = namespaces_available()
    if not ok:
        message = f"shaped links need network namespaces, and this sandbox says: {why}"
        if os.environ.get("CI"):
            raise RuntimeError(message)
        pytest.skip(message)
