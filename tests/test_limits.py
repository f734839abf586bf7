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
