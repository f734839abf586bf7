"""`sfu serve --workers N` for the tests: each worker reachable on its own port
(``cluster.worker_ports_from``), its stats, whether it is up."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from loadtest.server import ADMIN_TOKENS, SfuProcess, start_sfu

from .redis_server import RedisServer
from .waiting import wait_until


def consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        sockets = []
        try:
            for i in range(count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no consecutive free ports")


def _get(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read())


class Cluster:
    def __init__(self, server: SfuProcess, base: int, count: int) -> None:
        self.server = server
        self.base = base
        self.count = count

    def ws(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.base + index}/ws"

    def stats(self, index: int, admin: bool = False) -> Any:
        token = self.server.admin_token if admin else None
        return _get(f"http://127.0.0.1:{self.base + index}/stats", token)

    def up(self, index: int) -> bool:
        try:
            _get(f"http://127.0.0.1:{self.base + index}/healthz")
            return True
        except OSError:
            return False

    async def wait_up(self) -> None:
        await wait_until(lambda: all(self.up(i) for i in range(self.count)), timeout=30)

    def http(self, index: int) -> str:
        return f"http://127.0.0.1:{self.base + index}"

    def host_of(self, room: str) -> int:
        """The index of the worker hosting ``room``."""
        for index in range(self.count):
            if room in self.stats(index, admin=True)["rooms"]:
                return index
        raise LookupError(room)

    def pid(self, index: int) -> int:
        return int(self.stats(index, admin=True)["cluster"]["worker"].rsplit(":", 1)[1])


@asynccontextmanager
async def running_cluster(
    redis_url: str, log: Path, workers: int = 2, extra_yaml: str = ""
) -> AsyncIterator[Cluster]:
    """``sfu serve --workers N`` on a shared Redis, each worker on a port of its own; stopped
    (and checked to exit 0 with no traceback) on exit."""
    base = consecutive_free_ports(workers)
    server = start_sfu(
        "--workers",
        str(workers),
        log=log,
        config_yaml=(
            f"cluster:\n  redis_url: {redis_url}\n  worker_ports_from: {base}\n"
            "  heartbeat_interval: 0.5\n  heartbeat_timeout: 2.0\n" + extra_yaml
        ),
    )
    try:
        await server.wait_healthy()
        running = Cluster(server, base, workers)
        await running.wait_up()
        yield running
    finally:
        assert await server.aclose() == 0
        text = log.read_text(errors="replace") if log.exists() else ""
        assert "Traceback" not in text, text[-3000:]


@asynccontextmanager
async def two_nodes(redis: RedisServer, tmp_path: Path) -> AsyncIterator[list[SfuProcess]]:
    """Two nodes: two `sfu serve` (one worker each, named east and west) on one Redis."""
    servers = [
        start_sfu(
            log=tmp_path / f"{node}.log",
            config_yaml=(
                f"cluster:\n  redis_url: {redis.url}\n  node: {node}\n"
                "  heartbeat_interval: 0.5\n  heartbeat_timeout: 2.0\n"
            ),
        )
        for node in ("east", "west")
    ]
    try:
        for server in servers:
            await server.wait_healthy()
            assert server.admin_token is not None
            ADMIN_TOKENS[server.port] = server.admin_token
        await asyncio.sleep(1.0)  # both registered (a heartbeat)
        yield servers
    finally:
        for server in servers:
            assert await server.aclose() == 0
