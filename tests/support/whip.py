"""WHIP and WHEP clients on aiortc for the protocol tests: a publisher replaying a captured
scalable stream over WHIP, and a viewer receiving raw over WHEP (both check what arrives as
the load tester's peers do)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtest.capturefile import Capture
from loadtest.peers import ReplayPublisher, SimSubscriber

SDP = "application/sdp"


class HttpSession:
    """What a WHIP/WHEP POST gave: the status, headers and body."""

    def __init__(self, status: int, headers: Any, body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def location(self) -> str | None:
        value = self.headers.get("Location")
        return str(value) if value is not None else None

    def links(self) -> list[str]:
        return list(self.headers.getall("Link", []))


async def post_offer(
    http: aiohttp.ClientSession, url: str, sdp: str, token: str | None = None
) -> HttpSession:
    headers = {"Content-Type": SDP}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url, data=sdp.encode(), headers=headers) as response:
        return HttpSession(response.status, response.headers, await response.text())


async def negotiate(
    http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str, token: str | None
) -> HttpSession:
    await pc.setLocalDescription(await pc.createOffer())
    reply = await post_offer(http, url, pc.localDescription.sdp, token)
    if reply.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.body, type="answer"))
    return reply


class WhipPublisher(ReplayPublisher):
    """Publishes a capture over WHIP (no WebSocket)."""

    def __init__(self, base_url: str, room: str, video: Capture, token: str | None = None) -> None:
        super().__init__("", "whip", video)
        self.url = f"{base_url}/whip/{room}"
        self.token = token
        self.reply: HttpSession | None = None
        self.http = aiohttp.ClientSession()

    async def offer_publish(self, pc: RTCPeerConnection, **fields: Any) -> dict[str, Any]:
        self.reply = await negotiate(self.http, pc, self.url, self.token)
        if self.reply.status != 201:
            raise RuntimeError(f"WHIP refused: {self.reply.status} {self.reply.body}")
        return {}

    async def delete(self) -> int:
        assert self.reply is not None and self.reply.location is not None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        base = self.url.split("/whip/")[0]
        async with self.http.delete(base + self.reply.location, headers=headers) as response:
            return response.status

    async def close(self) -> None:
        await super().close()
        await self.http.close()


class WhepViewer(SimSubscriber):
    """Plays a room over WHEP: an audio and a video receive-only m-line, media raw."""

    def __init__(self, base_url: str, room: str, query: str = "", token: str | None = None):
        super().__init__("", "whep")
        self.base = base_url
        self.url = f"{base_url}/whep/{room}{query}"
        self.token = token
        self.reply: HttpSession | None = None
        self.http = aiohttp.ClientSession()

    async def play(self) -> HttpSession:
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        self.take_over_receivers()
        self.reply = await negotiate(self.http, self.pc, self.url, self.token)
        return self.reply

    def layer_url(self) -> str:
        assert self.reply is not None
        for link in self.reply.links():
            if "urn:ietf:params:whep:ext:core:layer" in link:
                return self.base + link.split(">")[0].lstrip("<")
        raise AssertionError(f"no layer extension in {self.reply.links()}")

    async def select(self, choice: dict[str, Any] | None) -> int:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if choice is None:
            async with self.http.delete(self.layer_url(), headers=headers) as response:
                return response.status
        async with self.http.post(self.layer_url(), json=choice, headers=headers) as response:
            return response.status

    async def close(self) -> None:
        await super().close()
        await self.http.close()
