"""The parent process of ``sfu serve --workers N``: it serves nothing itself.  It starts
the workers (each ``sfu serve`` again, told its index, the cluster's Redis and the shared
development key by environment), restarts one that exits while the server runs (its Redis
record removed at once, so its rooms are placed anew on the next join), passes SIGHUP on,
and on SIGTERM or SIGINT stops them all and exits: SIGTERM is passed on (each worker drains
for ``cluster.drain_timeout``, then tells its clients ``bye``), SIGINT too (each stops at
once), and a second signal while they drain stops them at once.

Without a Redis URL it starts a private ``redis-server`` (Debian's package) on a Unix socket
only its user can open, and stops it last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .wire import DEVELOPMENT_KEY_ENV, REDIS_URL_ENV, WORKER_INDEX_ENV

logger = logging.getLogger(__name__)

#: a worker that ran at least this long before it exited is restarted at once
STABLE_AFTER = 10.0
#: ... one that exits sooner waits twice as long each time, up to this (seconds)
MAX_BACKOFF = 10.0
#: seconds the workers get to stop, past their drain_timeout, before they are killed (their
#: shutdown takes at most signaling.shutdown.SHUTDOWN_TIMEOUT, 5 s)
STOP_TIMEOUT = 8.0


class SupervisorError(RuntimeError):
    pass


def redacted(url: str) -> str:
    """A Redis URL fit to print: its password (``redis://user:PASSWORD@host``) hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def _die_with_parent() -> None:
    """In a worker, before it runs: SIGTERM when the supervisor dies, however it dies (a
    SIGKILLed supervisor leaves no worker behind).  Linux only; elsewhere a no-op."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class WorkerProcess:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    backoff: float = 0.5
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


def split_port_range(
    port_range: tuple[int, int] | None, count: int, index: int
) -> tuple[int, int] | None:
    """Worker ``index``'s share of the media port range (None: any free port)."""
    if port_range is None:
        return None
    low, high = port_range
    size = (high - low + 1) // count
    if size < 1:
        raise SupervisorError(
            f"ice.port_range {low}-{high} has fewer ports than the {count} workers"
        )
    return low + index * size, low + (index + 1) * size - 1


class PrivateRedis:
    """A redis-server for this machine's workers alone: a Unix socket in a private folder,
    no TCP port, nothing written to disk."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sfu-redis-"))
        os.chmod(self.folder, 0o700)
        self.socket = self.folder / "redis.sock"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    async def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SupervisorError(
                "several workers need Redis: set cluster.redis_url, or install redis-server "
                "(Debian: apt-get install redis-server) for a private one"
            )
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise SupervisorError("the private redis-server did not start")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class Supervisor:
    def __init__(
        self,
        command: Sequence[str],
        count: int,
        *,
        node: str,
        redis_url: str | None,
        environ: Mapping[str, str] | None = None,
        drain_timeout: float = 0.0,
    ) -> None:
        self.command = list(command)
        #: what the workers' SIGTERM drain may take (cluster.drain_timeout)
        self.drain_timeout = drain_timeout
        #: the signal the workers are stopped with
        self._signal = signal.SIGTERM
        self.workers = [WorkerProcess(i) for i in range(count)]
        self.node = node
        self.redis_url = redis_url
        self.environ = dict(os.environ if environ is None else environ)
        self.development_key = secrets.token_hex(32)
        self._stopping = False
        self._wake = asyncio.Event()
        self._private: PrivateRedis | None = None

    def _env(self, worker: WorkerProcess, url: str) -> dict[str, str]:
        env = dict(self.environ)
        env[WORKER_INDEX_ENV] = str(worker.index)
        env[REDIS_URL_ENV] = url
        env.setdefault(DEVELOPMENT_KEY_ENV, self.development_key)
        return env

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        url = self.redis_url
        if url is None:
            self._private = PrivateRedis()
            await self._private.start()
            url = self._private.url
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        try:
            for worker in self.workers:
                await self._start(worker, url)
            print(
                f"sfu: {len(self.workers)} workers (pids "
                f"{', '.join(str(w.process.pid) for w in self.workers if w.process)}); "
                f"cluster Redis: {'private, ' + url if self._private else redacted(url)}",
                flush=True,
            )
            while not self._stopping:
                await self._watch(url)
        finally:
            await self._stop_workers()
            if self._private is not None:
                await self._private.stop()
        return 0

    async def _start(self, worker: WorkerProcess, url: str) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            *self.command, env=self._env(worker, url), preexec_fn=_die_with_parent
        )
        worker.started = time.monotonic()

    async def _watch(self, url: str) -> None:
        """Wait for a worker to exit (or a stop); restart it."""
        waits = {asyncio.ensure_future(w.process.wait()): w for w in self.workers if w.process}
        woken = asyncio.ensure_future(self._wake.wait())
        done, _ = await asyncio.wait({*waits, woken}, return_when=asyncio.FIRST_COMPLETED)
        for task in [*waits, woken]:
            if task not in done:
                task.cancel()
        if self._stopping:
            return
        for task in done:
            worker = waits.get(task)
            if worker is None or worker.process is None:
                continue
            code = worker.process.returncode
            pid = worker.process.pid
            worker.exits.append(code if code is not None else -1)
            lived = time.monotonic() - worker.started
            logger.warning(
                "worker %d (pid %d) exited with %s after %.1f s; restarting",
                worker.index,
                pid,
                code,
                lived,
            )
            await self._forget(url, worker.index, pid)
            worker.backoff = 0.5 if lived >= STABLE_AFTER else min(MAX_BACKOFF, worker.backoff * 2)
            await asyncio.sleep(worker.backoff if lived < STABLE_AFTER else 0)
            if self._stopping:
                return
            worker.restarts += 1
            await self._start(worker, url)

    async def _forget(self, url: str, index: int, pid: int) -> None:
        """Take a dead worker out of the cluster now (not when its record expires), so its
        rooms are placed again on their next join."""
        from .store import ClusterStore

        store = ClusterStore(url, ttl=1.0)
        try:
            await store.bury(f"{self.node}:{index}:{pid}")
        except Exception as exc:  # it expires by itself
            logger.debug("supervisor: forgetting worker %d: %s", index, exc)
        finally:
            with contextlib.suppress(Exception):
                await store.close()

    def _stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self._stopping:  # a second signal: the workers stop now, drained or not
            self._signal = signal.SIGINT
            self._forward(signal.SIGINT)
            return
        self._stopping = True
        self._signal = sig
        self._wake.set()

    def _forward(self, sig: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def _stop_workers(self) -> None:
        self._forward(self._signal)
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        if not running:
            return
        drain = self.drain_timeout if self._signal == signal.SIGTERM else 0.0
        _, pending = await asyncio.wait(
            {asyncio.ensure_future(p.wait()) for p in running}, timeout=drain + STOP_TIMEOUT
        )
        for process in running:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for task in pending:
            with contextlib.suppress(Exception):
                await task
