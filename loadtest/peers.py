"""Light simulated peers: aiortc for ICE/DTLS/SRTP, no encoder and no decoder.

A :class:`RawPublisher` sends synthetic RTP at a set rate on a negotiated VP8 track, a
:class:`ReplayPublisher` replays captured streams; a :class:`SimSubscriber` (also
``CountingSubscriber``) answers the SFU's offers and checks what arrives, raw.  Their
signaling is :class:`loadtest.signaling.SignalingPeer`'s.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
import zlib
from collections import deque
from typing import Any

import aiohttp

from sfu.adapters import aiortc_plane as plane
from sfu.rtp import extensions as ext
from sfu.rtp import rtcp
from sfu.rtp.packet import RtpError, RtpHeader, parse_rtp, unwrap_rtx
from sfu.rtp.twcc import TransportFeedbackBuilder

from .capturefile import Capture
from .checker import FrameChecker
from .looper import CaptureLooper
from .signaling import SignalingPeer
from .tally import FeedbackBuilder, PerSecond, SeenWindow
from .viewer import PictureTally

_HEADER = struct.Struct("!BBHII")

#: packets a ReplayPublisher remembers for the latency figures (loadtest.run.latencies): a
#: long run keeps its last ~100 s (the VP9 L3T3 capture and Opus send ~320 packets a second;
#: the scenarios run 16-30 s), and ~4 MB a publisher at most
SENT_LOG_SIZE = 1 << 15


class _RawPeer(SignalingPeer):
    """A simulated peer: one aiortc peer connection whose media it sends or receives raw,
    through a :class:`~sfu.adapters.aiortc_plane.RawTransport`, and one background task."""

    def __init__(self, ws_url: str, name: str) -> None:
        super().__init__(ws_url, name)
        self.pc = plane.create_peer_connection()
        self.raw: plane.RawTransport | None = None
        self._task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
        await super().close()


class RawPublisher(_RawPeer):
    """Publishes one VP8 video track and sends synthetic packets at ``pps``."""

    def __init__(self, ws_url: str, name: str, pps: int, payload_size: int = 1000) -> None:
        super().__init__(ws_url, name)
        self.pps = pps
        self.payload_size = payload_size
        self.binding: plane.SendBinding | None = None
        self.sent = 0

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
        await self.offer_publish(self.pc)
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


class ReplayPublisher(_RawPeer):
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
        self.loopers: dict[int, CaptureLooper] = {}  # by SSRC
        self.keyframe_requests = 0
        self.transport_feedback = 0
        #: (payload key, send time) of the last SENT_LOG_SIZE packets sent, for latency
        self.sent_log: deque[tuple[int, float]] = deque(maxlen=SENT_LOG_SIZE)

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
                looper = CaptureLooper(
                    c,
                    ssrc=binding.ssrc,
                    payload_type=binding.payload_type,
                    extension_ids=binding.extensions,
                )
                if self.loopers:  # one transport-wide sequence for the whole transport
                    looper.transport_sequence = next(iter(self.loopers.values())).transport_sequence
                self.loopers[binding.ssrc] = looper
                bound += 1
                if bound == len(self.captures) and not ready.done():
                    ready.set_result(None)

            plane.take_over_sender(transceiver.sender, on_send)
        video = self.captures[-1].info
        await self.offer_publish(self.pc, scalability_mode=video.scalability_mode)
        await asyncio.wait_for(ready, 15)
        self._task = asyncio.ensure_future(self._send_loop())

    async def _send_loop(self) -> None:
        while True:
            now = time.monotonic()
            raw = self.raw
            if raw is not None:
                log = self.sent_log
                for looper in self.loopers.values():
                    for packet in looper.due(now):
                        # the send time is taken before sending: a subscriber on loopback may
                        # well receive the packet before this line would run again
                        log.append((payload_key(packet, parse_rtp(packet)), time.monotonic()))
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
            if isinstance(packet, rtcp.TransportFeedback):
                self.transport_feedback += 1
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


#: a subscriber keeps (payload key, arrival) of every this many packets, for latency
LATENCY_SAMPLE = 4

#: seconds between two receiver_report messages (what the viewer measured, per video)
RECEIVER_REPORT_INTERVAL = 1.0

#: a missing packet is NACKed again after this long (seconds) ...
NACK_INTERVAL = 0.06
#: ... this many times in all
NACK_TRIES = 10


class SimSubscriber(_RawPeer):
    """A subscriber that never decodes: it answers the SFU's offers, reports the window it
    would render each video at, NACKs gaps, asks for a keyframe when a frame cannot be
    decoded, records what it gets (see :class:`~loadtest.checker.FrameChecker`), and
    counts pictures as its viewer would (:class:`~loadtest.viewer.PictureTally`), which it
    reports every second in a ``receiver_report`` when ``receiver_reports``."""

    def __init__(
        self,
        ws_url: str,
        name: str,
        window: tuple[int, int] | None = None,
        receiver_reports: bool = False,
    ) -> None:
        super().__init__(ws_url, name)
        self.window = window
        #: send what the viewer measured (``receiver_report``) every second: the load
        #: generator's subscribers do (loadtest.worker); off by default, so that a test's
        #: subclass reporting figures of its own is the only one to report
        self.receiver_reports = receiver_reports
        self.received = 0
        self.bytes = 0
        self.lost = 0
        self.nacks_sent = 0
        self.keyframe_requests = 0
        #: (arrival, spatial id, temporal id) of every video packet received
        self.layers: list[tuple[float, int, int]] = []
        #: packets and bytes received, by second since the start (see the properties)
        self.per_second = PerSecond(time.monotonic())
        #: packets missing at first sight (a gap in sequence numbers), by the second of the gap
        self.lost_per_second: dict[int, int] = {}
        #: arrival of the first RTP packet
        self.first_media: float | None = None
        #: (payload key, arrival) of every LATENCY_SAMPLE-th packet, for latency
        self.arrivals: list[tuple[int, float]] = []
        self.checkers: dict[int, FrameChecker] = {}  # by SSRC
        self.started = self.per_second.started
        self._parsers: dict[int, tuple[str, int | None]] = {}  # payload type -> (codec, dd id)
        self._rtcp_ssrc = random.getrandbits(32)
        self._last_pli: dict[int, float] = {}
        #: transport-wide-cc feedback, as a browser sends it (the SFU estimates from it)
        self._twcc_id: int | None = None
        self._twcc: TransportFeedbackBuilder | None = None
        #: RTX payload type -> the media payload type it repairs (RFC 4588 apt)
        self._rtx_apt: dict[int, int] = {}
        self._ssrc_by_pt: dict[int, int] = {}
        #: sequence numbers received lately, per SSRC (duplicates are dropped); the highest
        #: one's is the last in order
        self._seen: dict[int, SeenWindow] = {}
        #: missing packets, per SSRC: sequence number -> (last NACK time, NACKs sent)
        self._missing: dict[int, dict[int, tuple[float, int]]] = {}
        self.retransmissions_received = 0
        #: what the viewer would count of each video: by track id, and by SSRC once known
        self.tallies: dict[str, PictureTally] = {}
        self._tally_by_ssrc: dict[int, PictureTally] = {}
        #: when the join request went out, and when each track was offered (announced)
        self.joined_at: float | None = None
        self._offered: dict[str, float] = {}
        self.receiver_reports_sent = 0

    @property
    def packets_per_second(self) -> dict[int, int]:
        """Packets received by second since the start (the seconds with packets)."""
        return self.per_second.packets_by_second()

    @property
    def bytes_per_second(self) -> dict[int, int]:
        """Bytes received by second since the start (the seconds with packets)."""
        return self.per_second.bytes_by_second()

    # transport sink
    def on_rtp(self, data: bytes, now: float) -> None:
        try:
            header = parse_rtp(data)
        except RtpError:
            return
        size = len(data)
        self.received += 1
        self.bytes += size
        if self.first_media is None:
            self.first_media = now
        counts = self.per_second
        if not counts.start <= now < counts.end:
            counts.roll(now)
        counts.packets[counts.index] += 1
        counts.sizes[counts.index] += size
        if self.received % LATENCY_SAMPLE == 0:
            self.arrivals.append((payload_key(data, header), now))
        twcc = self._twcc
        if twcc is not None:
            value = header.extensions.get(self._twcc_id)  # type: ignore[arg-type]
            if value is not None and len(value) == 2:
                twcc.on_packet((value[0] << 8) | value[1], now)
        apt = self._rtx_apt.get(header.payload_type)
        if apt is not None:  # a retransmission: the original packet, as a browser sees it
            media_ssrc = self._ssrc_by_pt.get(apt)
            if media_ssrc is None:
                return
            try:
                data = unwrap_rtx(data, header, apt, media_ssrc)
                header = parse_rtp(data)
            except RtpError:
                return
            self.retransmissions_received += 1
        else:
            self._ssrc_by_pt[header.payload_type] = header.ssrc
        ssrc = header.ssrc
        seq = header.sequence_number
        seen = self._seen.get(ssrc)
        if seen is None:
            seen = self._seen[ssrc] = SeenWindow()
            self._missing[ssrc] = {}
        last = seen.highest
        if not seen.add(seq):
            return  # duplicate
        missing = self._missing[ssrc]
        if missing:
            missing.pop(seq, None)
        if last is not None:
            gap = (seq - last) & 0xFFFF
            if 1 < gap < 0x8000:
                self._gap(ssrc, missing, last, gap, now)
        checker = self.checkers.get(ssrc)
        if checker is None:
            spec = self._parsers.get(header.payload_type)
            if spec is None:
                return
            checker = self.checkers[ssrc] = FrameChecker(*spec)
            known = self._tally_by_ssrc.get(ssrc)
            if known is not None:  # pictures painted, and their sizes from the bitstream
                known.parser = checker.layers
                checker.on_picture = known.paint
        decoded = checker.decoded
        count = len(decoded)
        tally = self._tally_by_ssrc.get(ssrc)
        if tally is not None:  # before the checker: it may paint the picture
            tally.add(header.timestamp, now)
        checker.add(data, header, now)
        if len(decoded) > count:
            _, sid, tid = decoded[-1]
            self.layers.append((now, sid, tid))
        if checker.keyframe_wanted:
            self._ask_keyframe(checker, now)

    def _gap(
        self, ssrc: int, missing: dict[int, tuple[float, int]], last: int, gap: int, now: float
    ) -> None:
        """Packets ``last + 1 .. last + gap - 1`` did not come in order: count them lost and
        NACK them."""
        self.lost += gap - 1
        second = int(now - self.started)
        self.lost_per_second[second] = self.lost_per_second.get(second, 0) + gap - 1
        lost = [(last + i) & 0xFFFF for i in range(1, min(gap, 257))]
        for number in lost:
            missing[number] = (now, 1)
        for i in range(0, len(lost), 16):
            self._send_rtcp(rtcp.build_nack(self._rtcp_ssrc, ssrc, lost[i : i + 16]))
            self.nacks_sent += 1

    def _ask_keyframe(self, checker: FrameChecker, now: float) -> None:
        ssrc = next((s for s, c in self.checkers.items() if c is checker), None)
        if ssrc is not None and now - self._last_pli.get(ssrc, -10.0) > 1.0:
            self._last_pli[ssrc] = now
            self.keyframe_requests += 1
            self._send_rtcp(rtcp.build_pli(self._rtcp_ssrc, ssrc))

    def on_rtcp(self, data: bytes, now: float) -> None:
        pass

    def _send_rtcp(self, packet: bytes) -> None:
        if self.raw is not None:
            self.raw.send_rtcp(packet)

    def tally(self, track_id: str) -> PictureTally:
        """The viewer's figures of video ``track_id`` (made at its first mention)."""
        tally = self.tallies.get(track_id)
        if tally is None:
            offered = self._offered.get(track_id, self.joined_at)
            tally = self.tallies[track_id] = PictureTally(track_id, self.joined_at, offered)
        return tally

    async def join(self, room: str, role: str | None = None) -> dict[str, Any]:
        self.joined_at = time.monotonic()
        return await super().join(room, role)

    async def on_message(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "level_changed":
            self.tally(data["track_id"]).on_level(
                time.monotonic(), data["spatial"], data["width"], data["height"], data["paused"]
            )
            return
        if kind == "track_unpublished":  # no more reports of it (its figures stay)
            self._tally_by_ssrc = {
                s: t for s, t in self._tally_by_ssrc.items() if t.track_id != data["track_id"]
            }
        if kind == "track_published" and data["track"]["kind"] == "video":
            self._offered.setdefault(data["track"]["track_id"], time.monotonic())
            await self._report_window(data["track"]["track_id"])
        if data["type"] != "subscribe_offer":
            return
        await self.accept_offer(self.pc, data["sdp"])
        self.take_over_receivers()
        await self.answer_subscribe(self.pc)

    def take_over_receivers(self) -> None:
        """Receive every transceiver's media raw, through this peer's sink."""
        for transceiver in self.pc.getTransceivers():

            def on_receive(params: Any, t: Any = transceiver) -> None:
                if self.raw is None:
                    self.raw = plane.RawTransport(t.receiver.transport)
                    self.raw.attach_sink(self)
                    self._task = asyncio.ensure_future(self._send_feedback())
                twcc = next(
                    (e.id for e in params.headerExtensions if e.uri == ext.TRANSPORT_WIDE_CC), None
                )
                if twcc is not None and self._twcc is None:
                    self._twcc_id = twcc
                    self._twcc = FeedbackBuilder(self._rtcp_ssrc, 0)
                for codec in params.codecs:
                    if codec.mimeType.lower().endswith("/rtx") and "apt" in codec.parameters:
                        self._rtx_apt[codec.payloadType] = int(codec.parameters["apt"])
                if t.kind == "video" and params.encodings and t.receiver.track is not None:
                    # the offer's a=ssrc and a=msid: this SSRC is that track's
                    tally = self.tally(t.receiver.track.id)
                    ssrc = params.encodings[0].ssrc
                    self._tally_by_ssrc[ssrc] = tally
                    checker = self.checkers.get(ssrc)
                    if checker is not None:  # media came first
                        tally.parser = checker.layers
                        checker.on_picture = tally.paint
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
                    self._parsers[codec.payloadType] = (codec.mimeType.split("/")[-1], dd)

            plane.take_over_receiver(transceiver.receiver, on_receive)

    async def on_joined(self, reply: dict[str, Any]) -> None:
        for track in reply["tracks"]:
            if track["kind"] == "video":
                if self.joined_at is not None:
                    self._offered.setdefault(track["track_id"], self.joined_at)
                await self._report_window(track["track_id"])

    def _renack(self, now: float) -> None:
        """Ask again for packets still missing, as libwebrtc's NackRequester does: every
        NACK_INTERVAL, up to NACK_TRIES times, then give up on them."""
        for ssrc, missing in self._missing.items():
            again = []
            for number, (at, tries) in list(missing.items()):
                if tries >= NACK_TRIES:
                    del missing[number]
                elif now - at >= NACK_INTERVAL:
                    missing[number] = (now, tries + 1)
                    again.append(number)
            for i in range(0, len(again), 16):
                self._send_rtcp(rtcp.build_nack(self._rtcp_ssrc, ssrc, again[i : i + 16]))
                self.nacks_sent += 1

    async def _send_feedback(self) -> None:
        """Transport-wide-cc feedback every 50 ms, and a receiver report every second even
        when nothing arrives, as browsers do (the SFU takes a silent peer for a dead one)."""
        last_report = last_viewer_report = 0.0
        while True:
            await asyncio.sleep(0.05)
            if self._twcc is not None:
                for packet in self._twcc.build():
                    self._send_rtcp(packet)
            now = time.monotonic()
            self._renack(now)
            for checker in self.checkers.values():
                checker.expire(now)
                if checker.keyframe_wanted:
                    self._ask_keyframe(checker, now)
            if now - last_report >= 1.0:
                last_report = now
                self._send_rtcp(rtcp.build_rr(rtcp.ReceiverReport(self._rtcp_ssrc, [])))
            if self.receiver_reports and now - last_viewer_report >= RECEIVER_REPORT_INTERVAL:
                last_viewer_report = now
                await self._send_receiver_report(now)

    def receiver_report(self, now: float) -> dict[str, Any] | None:
        """The ``receiver_report`` message: every video received (at most 32), or None."""
        videos = {t.track_id: t for t in self._tally_by_ssrc.values() if t.track_id}
        tracks = [tally.report(now, self.window) for tally in list(videos.values())[:32]]
        return {"type": "receiver_report", "tracks": tracks} if tracks else None

    async def _send_receiver_report(self, now: float) -> None:
        message = self.receiver_report(now)
        if message is None or self.ws is None or self.ws.closed:
            return
        try:
            await self.send(message)
        except (OSError, RuntimeError, aiohttp.ClientError):  # closing at the end of a run
            return
        self.receiver_reports_sent += 1

    async def _report_window(self, track_id: str) -> None:
        if self.window is not None and self.ws is not None:
            width, height = self.window
            await self.send(
                {"type": "window", "track_id": track_id, "width": width, "height": height}
            )


#: the fan-out measurement's name for it
CountingSubscriber = SimSubscriber


def payload_key(data: bytes, header: RtpHeader) -> int:
    """A key for matching a packet the SFU forwarded with the one the publisher sent: the
    SFU rewrites headers (and VP8/VP9 picture ids at the start of the payload), never the
    end of the payload."""
    start, end = header.payload_offset, header.payload_end
    return zlib.crc32(data[max(start, end - 48) : end]) ^ ((end - start) << 32)
