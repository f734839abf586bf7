"""The client side of the SFU's signaling (docs/signaling.md), shared by the simulated peers
(:mod:`loadtest.peers`) and the tests' aiortc clients (``tests/support/clients.py``).

A :class:`SignalingPeer` holds one WebSocket: it matches replies to requests by ``id``,
keeps every message it receives, joins a room, and runs the publish (client offers) and
subscribe (server offers) negotiations on peer connections its subclasses own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

Message = dict[str, Any]


class SignalingError(RuntimeError):
    """The server refused a request (an ``error`` reply, or a reply of another type)."""


class SignalingPeer:
    """One participant's WebSocket to the SFU."""

    #: seconds to wait for the reply to a request
    reply_timeout = 15.0

    def __init__(self, ws_url: str, name: str) -> None:
        self.ws_url = ws_url
        self.name = name
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.participant_id: str | None = None
        #: every message received, in order (replies included)
        self.messages: list[Message] = []
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[Callable[[Message], bool], asyncio.Future[Message]]] = []
        self._next_id = 1
        #: the access token sent with ``join`` (a server with a secret requires one)
        self.token: str | None = None

    async def connect(self, room: str | None = None, role: str | None = None) -> None:
        """Opens the WebSocket; and joins ``room`` when one is given."""
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url)
        self._reader = asyncio.ensure_future(self._read())
        if room is not None:
            await self.join(room, role)

    async def join(self, room: str, role: str | None = None) -> Message:
        message: Message = {"type": "join", "room": room, "name": self.name}
        if role is not None:
            message["role"] = role
        if self.token is not None:
            message["token"] = self.token
        reply = self._expect(await self.request(message), "joined")
        self.participant_id = reply["participant_id"]
        await self.on_joined(reply)
        return reply

    async def on_joined(self, reply: Message) -> None:
        """Called with the ``joined`` reply."""

    async def on_message(self, data: Message) -> None:
        """Called with every message received, after :attr:`messages` and the waiters had it.
        The reader waits for it: messages are handled one at a time, in order."""

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.messages.append(data)
            for predicate, fut in self._waiters:  # each removes itself (_wait)
                if not fut.done() and predicate(data):
                    fut.set_result(data)
            await self.on_message(data)

    async def wait_for(
        self, predicate: Callable[[Message], bool], timeout: float | None = None
    ) -> Message:
        """The first message, received so far or from now on, that ``predicate`` accepts."""
        for data in self.messages:
            if predicate(data):
                return data
        return await self._wait(self._expect_next(predicate), timeout)

    def _expect_next(self, predicate: Callable[[Message], bool]) -> asyncio.Future[Message]:
        """A future for the next message that ``predicate`` accepts."""
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        return fut

    async def _wait(self, fut: asyncio.Future[Message], timeout: float | None) -> Message:
        try:
            return await asyncio.wait_for(fut, self.reply_timeout if timeout is None else timeout)
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not fut]

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def send(self, message: Message) -> None:
        """Sends a message that has no reply (``subscribe_answer``, ``window``, ...)."""
        await self.send_raw(json.dumps(message))

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """Sends ``message`` with a fresh ``id``; returns the reply with that ``id``."""
        request_id = self._next_id
        self._next_id += 1
        reply = self._expect_next(lambda d: d.get("id") == request_id)
        await self.send(dict(message, id=request_id))
        return await self._wait(reply, timeout)

    async def offer_publish(self, pc: RTCPeerConnection, **fields: Any) -> Message:
        """The publish negotiation: ``pc``'s offer (with ``fields``) in a ``publish``
        request, the ``publish_answer``'s SDP set as its remote description."""
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request(dict(fields, type="publish", sdp=pc.localDescription.sdp))
        self._expect(reply, "publish_answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        return reply

    async def accept_offer(self, pc: RTCPeerConnection, sdp: str) -> None:
        """The first half of the subscribe negotiation: the server's offer on ``pc``."""
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))

    async def answer_subscribe(self, pc: RTCPeerConnection) -> None:
        """The second half: ``pc``'s answer, sent as ``subscribe_answer``."""
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})

    @staticmethod
    def _expect(reply: Message, kind: str) -> Message:
        if reply.get("type") != kind:
            raise SignalingError(f"expected {kind}, got {reply}")
        return reply

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
