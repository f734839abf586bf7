"""A real redis-server (Debian's package) for the tests: on a free loopback port, nothing
written to disk, stopped by its PID; it can be restarted on the same port (an outage)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from loadtest.server import free_port


def _answers(port: int, password: str | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            if password is not None:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(16).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(
        self, binary: str, bind: tuple[str, ...] = (), password: str | None = None
    ) -> None:
        self.binary = binary
        #: addresses it listens on besides loopback (a test's namespaces reach it there:
        #: Redis then wants a password, ``password``)
        self.bind = bind
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *self.bind]
            + (["--requirepass", self.password] if self.password else [])
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers(self.port, self.password):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stopped and started again on the same port: everything it held is gone."""
        self.stop()
        self.start()


@contextmanager
def redis_server(bind: tuple[str, ...] = (), password: str | None = None) -> Iterator[RedisServer]:
    """A fresh redis-server (on loopback, and ``bind``); stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (.ci/run installs it)")
    server = RedisServer(binary, bind, password)
    try:
        server.start()
        yield server
    finally:
        server.stop()
