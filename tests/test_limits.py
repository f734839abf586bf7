"""Bounded signaling: rate limits, join timeout, abuse closes that connection only, room count."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import aiohttp
from support.clients import SignalingClient
from support.serving import serving

from sfu.config import parse_settings
from sfu.signaling.limits import TokenBucket
from sfu.signaling.server import create_app
from sfu.signaling.state import STATE_KEY
from sfu.signaling.websocket import CLOSE_HANDSHAKE_TIMEOUT


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5)  # one token back after 0.5 s at 2/s
    assert not bucket.allow(0.5)


async def test_limits_close_only_the_abusive_connection() -> None:
    settings = parse_settings(
        "limits: {messages_per_second: 5, message_burst: 10, max_errors: 8, join_timeout: 0.5,"
        " max_rooms: 1}\n"
    )
    app = create_app(settings)
    stack = AsyncExitStack()
    url = await stack.enter_async_context(serving(app))
    good = SignalingClient(url, "good")
    try:
        await good.connect()
        await good.join("only-room")
        async with aiohttp.ClientSession() as session:
            # never joins: told, then closed
            idle = await session.ws_connect(url)
            message = await idle.receive(timeout=5)
            assert json.loads(message.data)["code"] == "join_timeout"
            closing = await idle.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

            # floods: rate limited, then closed after too many errors
            flood = await session.ws_connect(url)
            await flood.send_str(json.dumps({"type": "join", "room": "only-room", "name": "f"}))
            for _ in range(40):
                await flood.send_str(json.dumps({"type": "ping"}))
            codes = []
            while True:
                msg = await flood.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                codes.append(data.get("code", data["type"]))
            assert "rate_limited" in codes and "pong" in codes
            assert flood.closed or msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

            # the server's room limit
            other = await session.ws_connect(url)
            await other.send_str(
                json.dumps({"type": "join", "room": "second", "name": "o", "id": 1})
            )
            reply = json.loads((await other.receive(timeout=5)).data)
            assert reply["code"] == "too_many_rooms"
            await other.close()

        # the well-behaved client carries on
        await asyncio.sleep(0.2)
        assert (await good.request({"type": "ping"}))["type"] == "pong"
    finally:
        await good.close()
        await stack.aclose()


async def test_a_client_that_never_answers_the_close_frame_is_dropped_in_bounded_time() -> None:
    """A close the server starts (here: no join within join_timeout) waits for the client's
    close frame at most CLOSE_HANDSHAKE_TIMEOUT; a client that never sends it (and never
    reads) does not keep its connection, session or address slot."""
    app = create_app(parse_settings("limits: {join_timeout: 0.5}\n"))
    state = app[STATE_KEY]
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serving(app))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        mute = await session.ws_connect(url, autoclose=False, autoping=False)
        await asyncio.sleep(0.2)
        assert len(state.sessions) == 1
        started = asyncio.get_running_loop().time()
        bound = 0.5 + CLOSE_HANDSHAKE_TIMEOUT + 2.0
        while state.sessions and asyncio.get_running_loop().time() - started < bound + 3:
            await asyncio.sleep(0.05)
        took = asyncio.get_running_loop().time() - started
        assert not state.sessions, "the session outlived its close handshake"
        assert took <= bound, took
        assert took >= CLOSE_HANDSHAKE_TIMEOUT  # it did wait for an answer first
        # what the client gets, once it reads: the error, the close frame, then the end
        message = await mute.receive(timeout=5)
        assert json.loads(message.data)["code"] == "join_timeout"
        closing = await mute.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4008
