"""The one way the load tests, benchmarks and tests run the SFU.

* :func:`running`: the application in this event loop, on an ephemeral loopback port (the
  tests; ``python -m loadtest capture``, which taps the published tracks in process).
* :func:`start_sfu`: ``sfu serve`` of this checkout in its own process, its output in a log
  file, stopped by its PID (:class:`SfuProcess`).
* :func:`start_server`: :func:`start_sfu` as the load tests want it: ICE on given addresses,
  limits lifted for many peers from one machine, healthy, its admin token known
  (:func:`server_stats`).

The server is a direct child of the process that starts it, its command line
``... -m sfu serve ...`` (``../shared/bench/janus/profile.sh`` finds it so).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

import sfu
from sfu.rooms.room import RoomManager
from sfu.signaling.server import ROOMS_KEY, STATE_KEY

from .scenario import MAX_PEERS

#: seconds a server has to answer ``/healthz``
START_TIMEOUT = 20.0
#: the development admin token of each server started here, by port (see server_stats)
ADMIN_TOKENS: dict[int, str] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_headers(app: web.Application) -> dict[str, str]:
    """The Authorization header of an admin of ``app`` (a development server's own admin
    token; for a server with a secret, make one with create_token)."""
    token = app[STATE_KEY].auth.development_admin_token
    assert token is not None, "the app has a secret: make an admin token with it"
    return {"Authorization": f"Bearer {token}"}


@dataclass
class RunningServer:
    """The application served in this process."""

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
async def running(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[RunningServer]:
    """Serves ``app`` on ``host`` (its HTTP and WebSocket URLs); cleans up on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield RunningServer(f"http://{host}:{port}", f"ws://{host}:{port}/ws", app)
    finally:
        await runner.cleanup()


@dataclass
class SfuProcess:
    """``sfu serve`` in its own process (:func:`start_sfu`)."""

    proc: subprocess.Popen[bytes]
    port: int
    #: its standard output and error
    log: Path
    #: files made for it, deleted by :meth:`stop`
    temporary: list[Path] = field(default_factory=list)
    #: the address its HTTP listens on
    host: str = "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def admin_token(self) -> str | None:
        """The development admin token it printed (None: it has a token secret)."""
        for line in self.log.read_text(errors="replace").splitlines():
            if "admin token" in line:
                return line.rsplit(" ", 1)[-1].strip()
        return None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def _check_starting(self, deadline: float) -> None:
        if self.proc.poll() is not None or time.monotonic() > deadline:
            tail = self.log.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"sfu serve did not start:\n{tail}")

    def wait_healthy_blocking(self, timeout: float = START_TIMEOUT) -> None:
        """Until ``/healthz`` answers; stops it and raises if it exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            self._check_starting(deadline)
            time.sleep(0.2)

    async def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """:meth:`wait_healthy_blocking`, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.healthy):
            self._check_starting(deadline)
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (it drains), SIGKILL after ``timeout`` seconds; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        ADMIN_TOKENS.pop(self.port, None)
        for path in self.temporary:
            path.unlink(missing_ok=True)
        return code

    async def aclose(self, timeout: float = 10.0) -> int:
        """:meth:`stop`, without blocking the event loop."""
        return await asyncio.to_thread(self.stop, timeout)


def start_sfu(
    *args: str,
    log: Path | None = None,
    config_yaml: str | None = None,
    port: int | None = None,
    prefix: Sequence[str] = (),
    host: str = "127.0.0.1",
) -> SfuProcess:
    """``sfu serve --port PORT [--config FILE] ARGS`` of this checkout (whatever is installed)
    in its own process, not yet waited for; ``config_yaml``: settings written to a temporary
    file; ``log``: where its output goes (default: a temporary file); ``prefix``: what runs
    it (``ip netns exec NAME``: in a namespace, whose ``host`` it listens on)."""
    temporary = []
    if log is None:
        log = Path(tempfile.mkstemp(prefix="sfu-serve-", suffix=".log")[1])
        temporary.append(log)
    port = free_port() if port is None else port
    command = [sys.executable, "-m", "sfu", "serve", "--port", str(port)]
    if config_yaml is not None:
        config = Path(tempfile.mkstemp(prefix="sfu-serve-", suffix=".yaml")[1])
        config.write_text(config_yaml)
        temporary.append(config)
        command += ["--config", str(config)]
    env = dict(os.environ)
    root = str(Path(sfu.__file__).resolve().parents[1])  # this checkout's code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*prefix, *command, *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return SfuProcess(proc, port, log, temporary, host)


def loadtest_settings(listen: list[str], extra_yaml: str = "") -> str:
    """The load tests' settings: ICE on ``listen``, bandwidth estimation on, warnings only,
    rooms as large as a load test may make them (the default policy's 100 participants is
    below what one server carries), and no limit on what one address may open (every
    simulated peer is on this machine)."""
    return (
        f"ice: {{listen_addresses: [{', '.join(listen)}]}}\n"
        f"log: {{level: WARNING}}\n"
        f"rooms: {{default: {{bandwidth_estimation: true, max_participants: {MAX_PEERS}}}}}\n"
        # it listens on the namespaces' veth addresses too, all on this machine: development
        # mode (no tokens) beyond loopback, said explicitly
        f"auth: {{insecure_off_loopback: true}}\n"
        f"limits: {{max_connections_per_address: 100000, address_cost_per_second: 1.0e9,"
        f" address_cost_burst: 1000000000}}\n{extra_yaml}"
    )


async def start_server(
    listen: list[str],
    http_host: str = "127.0.0.1",
    extra_yaml: str = "",
    args: tuple[str, ...] = (),
) -> SfuProcess:
    """``sfu serve [ARGS]`` for a load test (:func:`loadtest_settings`, HTTP on
    ``http_host``), healthy, its admin token known to :func:`server_stats`; the caller
    closes it."""
    server = start_sfu(
        "--host", http_host, *args, config_yaml=loadtest_settings(listen, extra_yaml)
    )
    await server.wait_healthy()
    token = server.admin_token
    if token is not None:
        ADMIN_TOKENS[server.port] = token
    return server


def server_stats(
    url: str, port: int, timeout: float = 2, only: str | None = None
) -> dict[str, Any]:
    """``/stats`` of a server started here (as its admin: rooms and participants; ``only``:
    one part, e.g. ``loop_lag``); of another server, what anyone may see."""
    token = ADMIN_TOKENS.get(port)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    query = f"?only={only}" if only else ""
    request = urllib.request.Request(f"{url}/stats{query}", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return dict(json.load(reply))
