"""Running the real application on an ephemeral loopback port: in the test's event loop
(:func:`running`, :func:`serving`), or as `sfu serve` in its own process (:func:`start_sfu`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

import sfu
from sfu.rooms.room import RoomManager
from sfu.signaling.server import ROOMS_KEY, STATE_KEY


def admin_headers(app: web.Application) -> dict[str, str]:
    """The Authorization header of an admin of ``app`` (a development server's own admin
    token; for a server with a secret, tests make one with create_token)."""
    token = app[STATE_KEY].auth.development_admin_token
    assert token is not None, "the app has a secret: make an admin token with it"
    return {"Authorization": f"Bearer {token}"}


@dataclass
class RunningServer:
    url: str
    ws_url: str
    app: web.Application

    @property
    def rooms(self) -> RoomManager:
        return self.app[ROOMS_KEY]

    @property
    def admin(self) -> dict[str, str]:
        return admin_headers(self.app)


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[RunningServer]:
    """Serves ``app`` on 127.0.0.1 (its HTTP and WebSocket URLs); cleans up on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield RunningServer(f"http://{host}:{port}", f"ws://{host}:{port}/ws", app)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Yields the WebSocket URL of ``app`` served on 127.0.0.1; cleans up on exit."""
    async with running(app) as server:
        yield server.ws_url


def start_sfu(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`sfu serve --port PORT ARGS` of this checkout in its own process, its output in a log
    file; returns the process (the caller stops it, by PID), the port and the log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    root = str(Path(sfu.__file__).resolve().parents[1])  # this checkout's code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sfu", "serve", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc, port, log


async def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    """Until ``/healthz`` answers 200; fails if the process exits or 20 s pass."""
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.2)
