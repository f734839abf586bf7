from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from sfu.config import Settings
from sfu.rooms.room import RoomManager
from sfu.signaling.server import ROOMS_KEY, create_app


@dataclass
class RunningServer:
    url: str
    ws_url: str
    app: web.Application

    @property
    def rooms(self) -> RoomManager:
        return self.app[ROOMS_KEY]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """The real application on an ephemeral loopback port, in this event loop."""
    settings = Settings()
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield RunningServer(f"http://{host}:{port}", f"ws://{host}:{port}/ws", app)
    finally:
        await runner.cleanup()
        await asyncio.sleep(0)
