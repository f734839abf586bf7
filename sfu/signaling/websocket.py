"""The WebSocket endpoint (``/ws``): a connection admitted, its messages rate-limited and
handed to its session, its writer bounded, a stalled client dropped."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Any

from aiohttp import WSMsgType, web

from .. import protocol as m
from .access import origin_allowed, request_address
from .limits import TokenBucket, message_cost
from .outbox import Outbox
from .session import SignalingSession
from .state import CLUSTER_KEY, ROOMS_KEY, STATE_KEY

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024
#: seconds a close handshake with a stalled client may take before the socket is dropped
CLOSE_TIMEOUT = 1.0
#: seconds our close frame waits for the client's before the TCP connection is closed anyway
CLOSE_HANDSHAKE_TIMEOUT = 2.0


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    limits = state.settings.limits
    if not origin_allowed(request, state.settings.http.allowed_origins):
        state.refused["origin"] += 1
        return web.Response(status=403, text="origin not allowed (http.allowed_origins)\n")
    address = request_address(request)
    if not state.addresses.connect(address):
        state.refused["connections_per_address"] += 1
        return web.Response(
            status=429,
            text=f"too many connections from {address} (limits.max_connections_per_address)\n",
        )
    try:
        ws = web.WebSocketResponse(
            max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20, timeout=CLOSE_HANDSHAKE_TIMEOUT
        )
        await ws.prepare(request)
    except BaseException:
        state.addresses.disconnect(address)
        raise
    transport = request.transport
    bound_buffers(transport)
    #: why its participant (if any) leaves when this connection ends
    leave_reason = "disconnected"

    def stalled(reason: str) -> None:
        """The client stopped reading: close its connection (whatever it still had to get
        is dropped); its reader loop below then ends and the participant leaves."""
        nonlocal leave_reason
        leave_reason = "slow_consumer"
        state.refused["slow_consumer"] += 1
        logger.warning("%s: slow consumer (%s); closing", session.context, reason)
        close_stalled(transport)

    outbox = Outbox(
        ws.send_str,
        max_queue=limits.send_queue,
        send_timeout=limits.send_timeout,
        on_stalled=stalled,
    )
    session = SignalingSession(ws, request.app[ROOMS_KEY], state.auth, outbox, address)
    state.sessions.add(session)
    bucket = TokenBucket(limits.messages_per_second, limits.message_burst)
    session.bucket = bucket
    deadline: asyncio.Future[None] | None = None

    async def join_deadline() -> None:
        timeout = state.settings.limits.join_timeout
        await asyncio.sleep(timeout)
        if session.participant is None and not session.relayed and not ws.closed:
            await session.error("join_timeout", f"no join within {timeout:g} s")
            await outbox.flush(CLOSE_TIMEOUT)
            await session.close(4008, b"join timeout", CLOSE_HANDSHAKE_TIMEOUT + 1)

    def arm_deadline() -> None:
        """A connection that is in no room (just opened, or left) has join_timeout to join."""
        nonlocal deadline
        if deadline is not None:
            deadline.cancel()
        deadline = asyncio.ensure_future(join_deadline())

    session.on_left = arm_deadline
    arm_deadline()
    cluster = request.app.get(CLUSTER_KEY)
    loop = asyncio.get_running_loop()
    close_requested: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    session.close_requested = close_requested
    session.closed = asyncio.Event()
    try:
        while not close_requested.done():
            # receive() in a task of its own, so that a close asked for meanwhile (shutdown,
            # join timeout) is done here, by this handler, with a proper close handshake
            receiving = asyncio.ensure_future(ws.receive())
            await asyncio.wait((receiving, close_requested), return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                await asyncio.gather(receiving, return_exceptions=True)
                break
            msg = receiving.result()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.TEXT:
                now = time.monotonic()
                # one unit before parsing (whatever the message), the rest of its cost after
                if not bucket.allow(now) or not state.addresses.allow(address, now, 1):
                    state.refused["rate_limited"] += 1
                    await session.error("rate_limited", "too many messages; slow down")
                else:
                    message = await session.parse(msg.data)
                    if message is not None:
                        extra = message_cost(message.type) - 1
                        if extra and not (
                            bucket.allow(now, extra) and state.addresses.allow(address, now, extra)
                        ):
                            state.refused["rate_limited"] += 1
                            await session.error(
                                "rate_limited",
                                f"too many {message.type} requests; slow down",
                                message.id,
                            )
                        elif cluster is not None and session.relayed:
                            await cluster.forward(session, msg.data)
                        elif not (
                            cluster is not None
                            and isinstance(message, m.Join)
                            and session.participant is None
                            and await cluster.route_join(session, message, msg.data)
                        ):
                            await session.handle_message(message)
                        if (
                            session.participant is not None or session.relayed
                        ) and deadline is not None:
                            deadline.cancel()
                            deadline = None
            elif msg.type == WSMsgType.BINARY:
                await session.error("bad_request", "binary messages are not supported")
            elif msg.type == WSMsgType.ERROR:
                break
            if session.errors >= state.settings.limits.max_errors and not close_requested.done():
                await outbox.flush(CLOSE_TIMEOUT)
                close_requested.set_result((4029, b"too many bad messages"))
                leave_reason = "too_many_errors"
        if close_requested.done() and not ws.closed:
            code, reason = close_requested.result()
            await ws.close(code=code, message=reason)  # bounded by the response's timeout
    finally:
        state.sessions.discard(session)
        state.addresses.disconnect(address)
        if deadline is not None:
            deadline.cancel()
        session.on_left = None
        session.closed.set()
        if cluster is not None:
            await cluster.connection_closed(session)
        if session.participant is not None:
            session.participant.leave_reason = leave_reason
        await session.leave()
        outbox.close()
    return ws


#: what one signaling connection may hold unread in the kernel and in its transport: a
#: client that stops reading fills this in a few hundred messages (not the megabytes the
#: kernel would otherwise grant it), so its stall is seen in ``send_timeout`` and the memory
#: it pins is bounded; the outbox still queues ``send_queue`` messages above it
SOCKET_SEND_BUFFER = 64 * 1024


def bound_buffers(transport: Any) -> None:
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        except OSError:
            pass
    transport.set_write_buffer_limits(high=SOCKET_SEND_BUFFER)


def close_stalled(transport: Any) -> None:
    """Drop a connection whose client does not read: no close frame (it would wait behind
    what the client does not read, forever), the socket closed at once; the reader loop of
    its handler then ends and its participant leaves."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # a reset, not a FIN behind megabytes the client will never read: the kernel
            # frees the socket's buffers now instead of retrying them for minutes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
