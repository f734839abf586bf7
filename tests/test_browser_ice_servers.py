"""Chromium and the demo client: both peer connections are created with the STUN/TURN
servers of ``joined.ice_servers`` (the server's ``ice.servers``), and use them: a STUN
server of the test's own (on loopback) gets Chromium's binding requests, and media flows."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

from aioice import stun
from support.browser import chromium_page, require_chromium
from support.serving import running

from sfu.config import IceServer, Settings
from sfu.signaling.server import create_app

require_chromium()


class StunServer(asyncio.DatagramProtocol):
    """Answers STUN binding requests (RFC 5389) with the sender's address; counts them."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if (request.message_method, request.message_class) != (
            stun.Method.BINDING,
            stun.Class.REQUEST,
        ):
            return
        self.requests += 1
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def decoded_frames(page: Any) -> int:
    stats = await page.evaluate("window.sfuClient.inboundStats()")
    return sum(s["framesDecoded"] or 0 for s in stats if s["kind"] == "video")


async def test_the_demo_client_uses_the_ice_servers_it_is_given(playwright: Any) -> None:
    loop = asyncio.get_running_loop()
    transport, stun_server = await loop.create_datagram_endpoint(
        StunServer, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    url = f"stun:127.0.0.1:{port}"
    settings = Settings()
    settings.ice.servers = [IceServer(urls=[url])]
    try:
        async with running(create_app(settings)) as server, AsyncExitStack() as stack:
            base = f"{server.url}/?room=stun&autojoin=1"
            pub = await stack.enter_async_context(
                chromium_page(playwright, f"{base}&name=pub&res=640x360")
            )
            sub = await stack.enter_async_context(
                chromium_page(playwright, f"{base}&name=sub&publish=0&tile=640x360")
            )
            deadline = time.monotonic() + 40
            while await decoded_frames(sub) < 10:
                assert time.monotonic() < deadline, "no decoded video in 40 s"
                await asyncio.sleep(0.5)
            configured = {
                which: await page.evaluate(
                    f"window.sfuClient.{which}.getConfiguration().iceServers"
                )
                for page, which in ((pub, "publishPc"), (sub, "subscribePc"))
            }
            assert await sub.evaluate("window.sfuClient.iceServers") == [{"urls": [url]}]
    finally:
        transport.close()
    print(f"\nconfigured: {configured}; STUN binding requests: {stun_server.requests}")
    for servers in configured.values():
        assert [s["urls"] for s in servers] in ([[url]], [url]), configured
    assert stun_server.requests > 0
