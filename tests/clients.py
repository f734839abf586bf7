"""aiortc clients speaking the SFU's signaling, for integration tests and tools."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import aiohttp
import av
import numpy
from aiortc import (
    AudioStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.exceptions import InvalidStateError
from aiortc.rtp import RtpPacket

from sfu.adapters import aiortc_plane as plane


def new_pc() -> RTCPeerConnection:
    # max-bundle: aiortc's balanced policy loses m-lines added by renegotiation
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


class SmallVideoTrack(VideoStreamTrack):
    """A moving 320x240 test pattern (small, so aiortc's VP8 encoder stays cheap)."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.counter += 1
        img = numpy.zeros((240, 320, 3), dtype=numpy.uint8)
        img[:, (self.counter * 4) % 320 :, 1] = 200
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


class SignalingClient:
    """One participant: a WebSocket, a publish pc and a subscribe pc (aiortc)."""

    def __init__(self, ws_url: str, name: str) -> None:
        self.ws_url = ws_url
        self.name = name
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: list[dict[str, Any]] = []
        self.participant_id: str | None = None
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        #: ICE restarts (aiortc has none of its own: the adapter's in-place restart)
        self.publish_ice: plane.IceRestarter | None = None
        self.subscribe_ice: plane.IceRestarter | None = None
        self.subscribe_answers = 0
        #: received RTP per SSRC: list of (payload type, sequence number)
        self.received: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.kinds: dict[int, str] = {}
        self.tracks: list[Any] = []
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[Any, asyncio.Future[dict[str, Any]]]] = []
        self._next_id = 1

    async def connect(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.messages.append(data)
            for pred, fut in list(self._waiters):
                if not fut.done() and pred(data):
                    fut.set_result(data)
                    self._waiters.remove((pred, fut))
            if data["type"] == "subscribe_offer":
                asyncio.ensure_future(self._on_subscribe_offer(data["sdp"]))

    async def wait_for(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        for data in self.messages:
            if pred(data):
                return data
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, timeout)

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        request_id = self._next_id
        self._next_id += 1
        message = dict(message, id=request_id)
        await self.send_raw(json.dumps(message))
        return await self.wait_for(lambda d: d.get("id") == request_id, timeout)

    async def join(self, room: str) -> dict[str, Any]:
        reply = await self.request({"type": "join", "room": room, "name": self.name})
        assert reply["type"] == "joined", reply
        self.participant_id = reply["participant_id"]
        return reply

    async def publish(self, video: bool = True, audio: bool = True) -> None:
        pc = new_pc()
        self.publish_pc = pc
        self.publish_ice = plane.IceRestarter(pc)
        if audio:
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        if video:
            transceiver = pc.addTransceiver(SmallVideoTrack(), direction="sendonly")
            # aiortc encodes VP8 (and H264), not the VP9/AV1 the server also registers
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx")]
            )
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request({"type": "publish", "sdp": pc.localDescription.sdp})
        assert reply["type"] == "publish_answer", reply
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))

    async def restart_publish_ice(self) -> dict[str, Any]:
        """Re-offer on the publish connection with new ICE credentials (like Chromium's
        ``pc.restartIce()``); returns the ``publish_answer``."""
        pc, ice = self.publish_pc, self.publish_ice
        assert pc is not None and ice is not None
        await ice.begin()
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request({"type": "publish", "sdp": pc.localDescription.sdp})
        assert reply["type"] == "publish_answer", reply
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        remote = plane.remote_ice(reply["sdp"])
        assert remote is not None
        await ice.set_remote(remote)
        return reply

    async def _on_subscribe_offer(self, sdp: str) -> None:
        if self.subscribe_pc is None:
            pc = new_pc()
            self.subscribe_pc = pc
            self.subscribe_ice = plane.IceRestarter(pc)

            @pc.on("track")
            def on_track(track: Any) -> None:
                self.tracks.append(track)
                receiver = next(
                    t.receiver for t in pc.getTransceivers() if t.receiver.track is track
                )
                original = receiver._handle_rtp_packet

                async def record(packet: RtpPacket, arrival_time_ms: int) -> None:
                    self.received[packet.ssrc].append((packet.payload_type, packet.sequence_number))
                    self.kinds[packet.ssrc] = track.kind
                    await original(packet, arrival_time_ms)

                receiver._handle_rtp_packet = record

                async def drain() -> None:  # keep the decoder's output flowing
                    try:
                        while True:
                            await track.recv()
                    except Exception:
                        pass

                asyncio.ensure_future(drain())

        pc = self.subscribe_pc
        assert self.subscribe_ice is not None
        try:
            remote = plane.remote_ice(sdp)
            restart = self.subscribe_ice.is_restart(remote)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if restart and remote is not None:  # the server restarts ICE: so do we
                await self.subscribe_ice.begin(remote)
            await pc.setLocalDescription(await pc.createAnswer())
            await self.send_raw(
                json.dumps({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})
            )
            self.subscribe_answers += 1
        except (InvalidStateError, ConnectionError):
            pass  # closed meanwhile (the test is over, or cut the connection)

    @staticmethod
    def cut_network(pc: RTCPeerConnection) -> None:
        """The network is gone: everything ``pc`` sends (media, RTCP, DTLS, ICE checks and
        consent) is dropped from now on, and nothing is closed or signalled."""

        async def send_data(data: bytes, addr: tuple[str, int]) -> None:
            pass

        def send_stun(message: Any, addr: tuple[str, int]) -> None:
            pass

        for transceiver in pc.getTransceivers():
            connection = transceiver.sender.transport.transport._connection
            for protocol in connection._protocols:
                protocol.send_data = send_data
                protocol.send_stun = send_stun

    def streams(self, kind: str) -> dict[int, list[tuple[int, int]]]:
        return {ssrc: pkts for ssrc, pkts in self.received.items() if self.kinds.get(ssrc) == kind}

    async def leave(self) -> None:
        if self.ws is not None and not self.ws.closed:
            try:
                await self.request({"type": "leave"}, timeout=5)
            except (TimeoutError, ConnectionError):
                pass
        await self.close()

    async def close(self) -> None:
        for ice in (self.publish_ice, self.subscribe_ice):
            if ice is not None:
                await ice.close()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
        self.publish_pc = self.subscribe_pc = None
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self._reader is not None:
            self._reader.cancel()
