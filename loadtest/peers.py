"""Light simulated peers: aiortc for ICE/DTLS/SRTP, no encoder and no decoder.

A :class:`RawPublisher` sends synthetic RTP at a set rate on a negotiated VP8 track; a
:class:`CountingSubscriber` answers the SFU's offers and counts what arrives, raw.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from sfu.adapters import aiortc_plane as plane
from sfu.forwarding.layers import LayerParser
from sfu.rtp import extensions as ext
from sfu.rtp import rtcp
from sfu.rtp.packet import RtpError, parse_rtp

from .capturefile import Capture
from .looper import CaptureLooper

_HEADER = struct.Struct("!BBHII")


class _SignalingPeer:
    def __init__(self, ws_url: str, name: str) -> None:
        self.ws_url = ws_url
        self.name = name
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 1

    async def connect(self, room: str, role: str | None = None) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url)
        self._reader = asyncio.ensure_future(self._read())
        join: dict[str, Any] = {"type": "join", "room": room, "name": self.name}
        if role is not None:
            join["role"] = role
        reply = await self.request(join)
        if reply["type"] != "joined":
            raise RuntimeError(f"join failed: {reply}")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        request_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = fut
        await self.ws.send_str(json.dumps(dict(message, id=request_id)))
        return await asyncio.wait_for(fut, 15)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._replies.pop(data.get("id"), None) if data.get("id") is not None else None
            if fut is not None and not fut.done():
                fut.set_result(data)
            else:
                await self.on_message(data)

    async def on_message(self, data: dict[str, Any]) -> None:
        pass

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


class RawPublisher(_SignalingPeer):
    """Publishes one VP8 video track and sends synthetic packets at ``pps``."""

    def __init__(self, ws_url: str, name: str, pps: int, payload_size: int = 1000) -> None:
        super().__init__(ws_url, name)
        self.pps = pps
        self.payload_size = payload_size
        self.pc = plane.create_peer_connection()
        self.binding: plane.SendBinding | None = None
        self.raw: plane.RawTransport | None = None
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    async def publish(self) -> None:
        transceiver = self.pc.addTransceiver("video", direction="sendonly")
        transceiver.setCodecPreferences(plane.codec_preferences("video", "video/VP8", {}))
        bound = asyncio.get_running_loop().create_future()

        def on_send(binding: plane.SendBinding) -> None:
            self.binding = binding
            self.raw = plane.RawTransport(transceiver.sender.transport)
            if not bound.done():
                bound.set_result(None)

        plane.take_over_sender(transceiver.sender, on_send)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await self.request({"type": "publish", "sdp": self.pc.localDescription.sdp})
        if reply["type"] != "publish_answer":
            raise RuntimeError(f"publish failed: {reply}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        await asyncio.wait_for(bound, 15)
        self._task = asyncio.ensure_future(self._send_loop())

    async def _send_loop(self) -> None:
        assert self.binding is not None and self.raw is not None
        seq, ts = 0, 0
        per_frame = max(1, self.pps // 30)
        # VP8 descriptor: S=1 on the first packet of a frame, payload header of a keyframe
        first = b"\x10\x00" + bytes(self.payload_size - 2)
        rest = b"\x00\x01" + bytes(self.payload_size - 2)
        start = time.monotonic()
        while True:
            due = int((time.monotonic() - start) * self.pps)
            while self.sent < due:
                index = self.sent % per_frame
                if index == 0:
                    ts = (ts + 3000) & 0xFFFFFFFF
                marker = 0x80 if index == per_frame - 1 else 0
                header = _HEADER.pack(
                    0x80, marker | self.binding.payload_type, seq, ts, self.binding.ssrc
                )
                self.raw.send_rtp(header + (first if index == 0 else rest))
                seq = (seq + 1) & 0xFFFF
                self.sent += 1
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
        await super().close()


class ReplayPublisher(_SignalingPeer):
    """Publishes captured streams (a video capture, optionally an audio one) as they were
    recorded, looping at a keyframe and answering keyframe requests by jumping to one."""

    def __init__(
        self,
        ws_url: str,
        name: str,
        video: Capture,
        audio: Capture | None = None,
        role: str | None = None,
    ) -> None:
        super().__init__(ws_url, name)
        self.role = role
        self.captures = [c for c in (audio, video) if c is not None]
        self.pc = plane.create_peer_connection()
        self.raw: plane.RawTransport | None = None
        self.loopers: dict[int, CaptureLooper] = {}  # by SSRC
        self.keyframe_requests = 0
        self._task: asyncio.Task[None] | None = None

    async def publish(self) -> None:
        bound = 0
        ready = asyncio.get_running_loop().create_future()
        for capture in self.captures:
            info = capture.info
            transceiver = self.pc.addTransceiver(info.kind, direction="sendonly")
            transceiver.setCodecPreferences(
                plane.codec_preferences(info.kind, info.mime_type, dict(info.parameters))
            )

            def on_send(
                binding: plane.SendBinding, t: Any = transceiver, c: Capture = capture
            ) -> None:
                nonlocal bound
                if self.raw is None:
                    self.raw = plane.RawTransport(t.sender.transport)
                    self.raw.attach_sink(self)
                self.loopers[binding.ssrc] = CaptureLooper(
                    c,
                    ssrc=binding.ssrc,
                    payload_type=binding.payload_type,
                    extension_ids=binding.extensions,
                )
                bound += 1
                if bound == len(self.captures) and not ready.done():
                    ready.set_result(None)

            plane.take_over_sender(transceiver.sender, on_send)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        video = self.captures[-1].info
        reply = await self.request(
            {
                "type": "publish",
                "sdp": self.pc.localDescription.sdp,
                "scalability_mode": video.scalability_mode,
            }
        )
        if reply["type"] != "publish_answer":
            raise RuntimeError(f"publish failed: {reply}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        await asyncio.wait_for(ready, 15)
        self._task = asyncio.ensure_future(self._send_loop())

    async def _send_loop(self) -> None:
        while True:
            now = time.monotonic()
            raw = self.raw
            if raw is not None:
                for looper in self.loopers.values():
                    for packet in looper.due(now):
                        raw.send_rtp(packet)
            await asyncio.sleep(0.005)

    # transport sink: keyframe requests from the SFU
    def on_rtp(self, data: bytes, now: float) -> None:
        pass

    def on_rtcp(self, data: bytes, now: float) -> None:
        try:
            packets = rtcp.parse_rtcp(data)
        except rtcp.RtcpError:
            return
        for packet in packets:
            if isinstance(packet, (rtcp.Pli, rtcp.Fir)):
                ssrcs = (
                    [packet.media_ssrc]
                    if isinstance(packet, rtcp.Pli)
                    else [s for s, _ in packet.entries]
                )
                for ssrc in ssrcs:
                    looper = self.loopers.get(ssrc)
                    if looper is not None:
                        self.keyframe_requests += 1
                        looper.request_keyframe()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
        await super().close()


class CountingSubscriber(_SignalingPeer):
    """Receives everything the SFU offers and counts packets and sequence gaps, raw."""

    def __init__(self, ws_url: str, name: str) -> None:
        super().__init__(ws_url, name)
        self.pc = plane.create_peer_connection()
        self.received = 0
        self.bytes = 0
        self.lost = 0
        self._last_seq: dict[int, int] = {}
        self._attached = False
        self.messages: list[dict[str, Any]] = []
        #: (arrival, spatial id, temporal id) of every video packet received
        self.layers: list[tuple[float, int, int]] = []
        self._parsers: dict[int, LayerParser] = {}  # payload type -> layer parser
        self._dd_id: int | None = None

    # transport sink
    def on_rtp(self, data: bytes, now: float) -> None:
        try:
            header = parse_rtp(data)
        except RtpError:
            return
        self.received += 1
        self.bytes += len(data)
        last = self._last_seq.get(header.ssrc)
        if last is not None:
            gap = (header.sequence_number - last) & 0xFFFF
            if 1 < gap < 0x8000:
                self.lost += gap - 1
        self._last_seq[header.ssrc] = header.sequence_number
        parser = self._parsers.get(header.payload_type)
        if parser is not None:
            info = parser.parse(
                data[header.payload_offset : header.payload_end], header.extensions, header.marker
            )
            if info.valid:
                self.layers.append((now, info.sid, info.tid))

    def on_rtcp(self, data: bytes, now: float) -> None:
        pass

    async def on_message(self, data: dict[str, Any]) -> None:
        self.messages.append(data)
        if data["type"] != "subscribe_offer":
            return
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
        for transceiver in self.pc.getTransceivers():

            def on_receive(params: Any, t: Any = transceiver) -> None:
                if not self._attached:
                    self._attached = True
                    plane.RawTransport(t.receiver.transport).attach_sink(self)
                if t.kind == "video" and params.codecs:
                    codec = params.codecs[0]
                    dd = next(
                        (
                            e.id
                            for e in params.headerExtensions
                            if e.uri == ext.DEPENDENCY_DESCRIPTOR
                        ),
                        None,
                    )
                    self._parsers[codec.payloadType] = LayerParser(
                        codec.mimeType.split("/")[-1], dd
                    )

            plane.take_over_receiver(transceiver.receiver, on_receive)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        assert self.ws is not None
        await self.ws.send_str(
            json.dumps({"type": "subscribe_answer", "sdp": self.pc.localDescription.sdp})
        )

    async def close(self) -> None:
        await self.pc.close()
        await super().close()
