"""Graceful shutdown: clients told, peer connections closed, WebSockets closed."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, web

from .. import protocol as m
from .session import SignalingSession
from .state import CLUSTER_KEY, ROOMS_KEY, STATE_KEY
from .websocket import CLOSE_HANDSHAKE_TIMEOUT, CLOSE_TIMEOUT

logger = logging.getLogger(__name__)

#: seconds the shutdown may spend telling clients, closing peers and WebSockets
SHUTDOWN_TIMEOUT = 5.0


async def drain(app: web.Application, timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Shut down gracefully: tell every connection (``bye``), close every peer connection,
    then close the WebSockets (1001 going away); bounded by ``timeout``."""
    sessions = list(app[STATE_KEY].sessions)
    cluster = app.get(CLUSTER_KEY)
    moving = False
    if cluster is not None:  # clients of rooms here whose WebSocket is on another worker
        moving = await cluster.begin_drain(min(1.0, timeout / 5))
        sessions += list(cluster.hosted.values())
    logger.info("shutting down: %d connections, %d rooms", len(sessions), len(app[ROOMS_KEY].rooms))
    bye = m.Bye(code="shutdown", reason="server shutting down")
    if moving:
        bye = m.Bye(code="moved", reason="this node stops: join again, another node takes over")

    async def tell(session: SignalingSession) -> None:
        try:
            await session.send(bye)
        except Exception as exc:  # a dead socket: nothing to tell
            logger.debug("shutdown: %s: %s", session.context, exc)

    async def close(session: SignalingSession) -> None:
        try:
            await session.close(
                WSCloseCode.GOING_AWAY, b"server shutting down", CLOSE_HANDSHAKE_TIMEOUT + 0.5
            )
        except Exception as exc:
            logger.debug("shutdown: %s: %s", session.context, exc)

    async def flush(session: SignalingSession) -> None:
        if session.outbox is not None:
            await session.outbox.flush(CLOSE_TIMEOUT)

    async def run() -> None:
        await asyncio.gather(*(tell(s) for s in sessions))
        await asyncio.gather(*(flush(s) for s in sessions))
        # the peers get until the deadline; asyncio.wait (not wait_for) so that a peer slow to
        # take its cancellation cannot eat the time the WebSockets' close handshakes need
        started = loop.time()
        closing = asyncio.ensure_future(app[ROOMS_KEY].close())
        closing.add_done_callback(_report)
        await asyncio.wait({closing}, timeout=max(0.0, deadline - loop.time()))
        if closing.done():
            logger.info("shutdown: peer connections closed in %.2f s", loop.time() - started)
        else:
            logger.warning("shutdown: peer connections not all closed in time, going on")
        await asyncio.gather(*(close(s) for s in sessions))
        if not closing.done():
            await asyncio.wait({closing}, timeout=max(0.0, end - 0.2 - loop.time()))
            closing.cancel()

    loop = asyncio.get_running_loop()
    # peers get at most 70 % of the time, the WebSockets' close handshakes the rest
    deadline = loop.time() + 0.7 * timeout
    end = loop.time() + timeout
    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        logger.warning("shutdown: not done within %g s, going anyway", timeout)


def _report(closing: asyncio.Future[None]) -> None:
    if not closing.cancelled() and closing.exception() is not None:
        logger.warning("shutdown: closing peer connections failed: %r", closing.exception())
