"""The real application for the tests, on an ephemeral loopback port: in the test's event
loop (:func:`running`, :func:`serving`), or as ``sfu serve`` in its own process
(:func:`start_sfu`): loadtest/server.py's, the one launcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from loadtest.server import RunningServer, SfuProcess, admin_headers, running, start_sfu

__all__ = ["RunningServer", "SfuProcess", "admin_headers", "running", "serving", "start_sfu"]


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Yields the WebSocket URL of ``app`` served on 127.0.0.1; cleans up on exit."""
    async with running(app) as server:
        yield server.ws_url
