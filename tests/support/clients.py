"""aiortc clients speaking the SFU's signaling, for integration tests and tools: they encode
and decode real media (the load test's light peers, loadtest/peers.py, do neither); the
signaling itself is loadtest/signaling.py's."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import av
import numpy
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    VideoStreamTrack,
)
from aiortc.exceptions import InvalidStateError
from aiortc.rtp import RtpPacket

from loadtest.signaling import SignalingPeer
from sfu.adapters import aiortc_plane as plane

#: max-bundle: aiortc's balanced policy loses m-lines added by renegotiation
new_pc = plane.create_peer_connection


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


class SignalingClient(SignalingPeer):
    """One participant: a WebSocket, a publish pc and a subscribe pc (aiortc)."""

    reply_timeout = 10.0

    def __init__(self, ws_url: str, name: str) -> None:
        super().__init__(ws_url, name)
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

    async def on_message(self, data: dict[str, Any]) -> None:
        if data["type"] == "subscribe_offer":  # answered aside: the reader goes on
            asyncio.ensure_future(self._on_subscribe_offer(data["sdp"]))

    async def publish(
        self, video: bool = True, audio: bool = True, audio_track: MediaStreamTrack | None = None
    ) -> None:
        """Publishes a test pattern and ``audio_track`` (default: silence)."""
        pc = new_pc()
        self.publish_pc = pc
        self.publish_ice = plane.IceRestarter(pc)
        if audio:
            pc.addTransceiver(audio_track or AudioStreamTrack(), direction="sendonly")
        if video:
            transceiver = pc.addTransceiver(SmallVideoTrack(), direction="sendonly")
            # aiortc encodes VP8 (and H264), not the VP9/AV1 the server also registers
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx")]
            )
        await self.offer_publish(pc)

    async def restart_publish_ice(self) -> dict[str, Any]:
        """Re-offer on the publish connection with new ICE credentials (like Chromium's
        ``pc.restartIce()``); returns the ``publish_answer``."""
        pc, ice = self.publish_pc, self.publish_ice
        assert pc is not None and ice is not None
        await ice.begin()
        reply = await self.offer_publish(pc)
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
            await self.accept_offer(pc, sdp)
            if restart and remote is not None:  # the server restarts ICE: so do we
                await self.subscribe_ice.begin(remote)
            await self.answer_subscribe(pc)
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

    def has_media(self, publishers: int, video_packets: int = 30, audio_packets: int = 50) -> bool:
        """One video and one audio stream from each of ``publishers``, with at least that
        many packets each."""
        video, audio = self.streams("video"), self.streams("audio")
        return (
            len(video) == publishers
            and len(audio) == publishers
            and all(len(p) >= video_packets for p in video.values())
            and all(len(p) >= audio_packets for p in audio.values())
        )

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
        await super().close()
