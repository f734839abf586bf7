"""Draining on SIGTERM (``cluster.drain_timeout``): the server takes no new room but lets the
calls in progress go on, and shuts down (:func:`.shutdown.drain`) when they have ended or the
timeout has passed, whichever comes first.

While it drains, ``/healthz`` answers 503 ``draining`` (a load balancer sends no new client),
a worker of a cluster says so in its record (new rooms are placed on other workers, and a
participant it does not hold already is relayed, not cascaded here), and a single server
refuses a join that would open a new room (``draining``); joins to a room in progress are
taken.  A second SIGTERM, or SIGINT (Ctrl-C), ends the drain at once.  With a timeout of 0
(the default) SIGTERM shuts down at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import NoReturn

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from .state import CLUSTER_KEY, ROOMS_KEY, STATE_KEY

logger = logging.getLogger(__name__)

#: seconds between two looks at what is still running
POLL_INTERVAL = 0.25


class Drain:
    """One application's drain; :meth:`signal` is its SIGTERM handler."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None
        self.started: float | None = None

    @property
    def draining(self) -> bool:
        return self.task is not None

    def signal(self) -> None:
        """SIGTERM: begin draining, or (the timeout 0, or already draining) stop now."""
        timeout = self.app[STATE_KEY].settings.cluster.drain_timeout
        if self.task is not None or timeout <= 0:
            self.stop()
        logger.info("SIGTERM: draining (a second SIGTERM or SIGINT stops at once)")
        self.task = asyncio.ensure_future(self.run(timeout))

    def stop(self) -> NoReturn:
        """Go on to the shutdown (what aiohttp's own SIGTERM handler does)."""
        raise GracefulExit()

    def busy(self) -> tuple[int, int]:
        """Participants of rooms held here, and open connections (WebSocket signaling)."""
        participants = sum(len(room.participants) for room in self.app[ROOMS_KEY].rooms.values())
        return participants, len(self.app[STATE_KEY].sessions)

    async def run(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.app[ROOMS_KEY].draining = True
        cluster = self.app.get(CLUSTER_KEY)
        if cluster is not None:  # its record says draining: no new room comes here
            await cluster.begin_drain(min(1.0, timeout))
        participants, connections = self.busy()
        logger.info(
            "draining: no new room; %d participants and %d connections may go on for %g s",
            participants,
            connections,
            timeout,
        )
        deadline = self.started + timeout
        while loop.time() < deadline and any(self.busy()):
            await asyncio.sleep(POLL_INTERVAL)
        participants, connections = self.busy()
        if participants or connections:
            logger.info(
                "drained for %g s: %d participants, %d connections still there; shutting down",
                timeout,
                participants,
                connections,
            )
        else:
            took = loop.time() - self.started
            logger.info("drained in %.1f s: no call left; shutting down", took)
        loop.call_soon(self.stop)


DRAIN_KEY = web.AppKey("drain", Drain)


async def install(app: web.Application) -> None:
    """on_startup: SIGTERM drains (after aiohttp installed its own handler, which this one
    replaces; SIGINT keeps aiohttp's: stop now)."""
    drain = app[DRAIN_KEY]
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals here
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, drain.signal)
