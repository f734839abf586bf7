"""The connection a client publishes on: it offers, the SFU answers, and each received track
becomes a :class:`~sfu.forwarding.source.MediaSource`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiortc import RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters

from ... import faults
from ...forwarding.source import MediaSource
from ...rtp import extensions as ext
from ...rtp import rtcp
from ...rtp.packet import RtpError, parse_rtp
from ...rtp.twcc import TransportFeedbackBuilder
from ...sdp.directions import reject_in_answer, sending_mids, stopped_mids
from .. import aiortc_plane as plane
from .base import Peer, PeerSettings

logger = logging.getLogger(__name__)


class PublisherPeer(Peer):
    """The connection a client publishes on: we answer its offers."""

    role = "publish"

    def __init__(
        self,
        track_prefix: str,
        on_source: Callable[[MediaSource], None],
        settings: PeerSettings,
        context: str = "",
    ) -> None:
        super().__init__(settings, context)
        self.track_prefix = track_prefix
        self._on_source = on_source
        self.sources: dict[int, MediaSource] = {}  # by SSRC, media and RTX
        self._taken: set[int] = set()
        #: transport-wide-cc feedback for the publisher's own send-side estimator
        self._twcc_id: int | None = None
        self._twcc: TransportFeedbackBuilder | None = None
        self._source_types: dict[str, str] = {}  # mid -> "camera" / "screen"
        #: called with a source whose m-line no longer sends (the client stopped the track)
        self.on_source_gone: Callable[[MediaSource], None] | None = None

    async def answer(
        self,
        offer_sdp: str,
        video_codecs: list[str] | None = None,
        sources: dict[str, str] | None = None,
    ) -> str:
        """Answer the client's offer; ``video_codecs`` (e.g. ["VP9", "AV1"]) are the codecs
        allowed, in order of preference.  An offer with new ICE credentials restarts ICE:
        the answer carries new ones too, and the sources keep flowing."""
        plane.check_publish_offer(offer_sdp, self.settings.sdp_limits, self.pc)
        # from here on the connection holds sockets: it must connect in time (also if
        # answering fails below, and the client never sends a better offer)
        self.start_setup(time.monotonic())
        remote = plane.remote_ice(offer_sdp)
        restart = self.ice.is_restart(remote)
        if sources:
            self._source_types.update(sources)
        self._drop_stopped(sending_mids(offer_sdp))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            # aiortc recomputes what it answers from every offer: filter it every time
            if video_codecs is not None and transceiver.kind == "video":
                plane.restrict_answer_codecs(transceiver, video_codecs)
            if not self.settings.publisher_transport_cc:
                plane.drop_transport_cc(transceiver)
            if id(transceiver) in self._taken:
                continue
            self._taken.add(id(transceiver))

            def on_receive(
                params: RTCRtpReceiveParameters, t: RTCRtpTransceiver = transceiver
            ) -> None:
                try:  # called from aiortc's connection task: nothing may escape
                    self._on_receive(t, params)
                except Exception:
                    faults.record("receive", f"{self.context} mid {t.mid}")

            plane.take_over_receiver(transceiver.receiver, on_receive)
        if restart and remote is not None:
            await self.ice.begin(remote)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        sdp = plane.munge_sdp(self.pc.localDescription.sdp, self.settings.start_bitrate_kbps)
        # aiortc answers a stopped m-line (port 0) as a live one, still in the bundle group:
        # a browser refuses that answer
        return reject_in_answer(sdp, stopped_mids(offer_sdp))

    def _drop_stopped(self, sending: set[str]) -> None:
        """The sources whose m-line the offer no longer sends go (their packets are then
        an unknown SSRC's); a track sent again comes on a new m-line."""
        prefix = f"{self.track_prefix}:"
        for source in self.media_sources:
            if source.track_id.removeprefix(prefix) in sending:
                continue
            for ssrc in [k for k, v in self.sources.items() if v is source]:
                del self.sources[ssrc]
            logger.info("publisher %s: %s stopped", self.track_prefix, source.track_id)
            if self.on_source_gone is not None:
                self.on_source_gone(source)

    def _on_receive(self, transceiver: RTCRtpTransceiver, params: RTCRtpReceiveParameters) -> None:
        stream = plane.stream_parameters_from_receive(transceiver.kind, params)
        if stream is None:
            logger.warning(
                "publisher %s: no usable stream for mid %s", self.track_prefix, transceiver.mid
            )
            return
        raw = self._ensure_transport(transceiver)
        source = MediaSource(
            f"{self.track_prefix}:{transceiver.mid}",
            stream,
            send_rtcp=raw.send_rtcp,
            rtcp_ssrc=self.rtcp_ssrc,
            max_bitrate=self.settings.publisher_max_bitrate,
            keyframe_min_interval=self.settings.keyframe_min_interval,
        )
        source.source_type = self._source_types.get(transceiver.mid or "", "camera")
        self.sources[stream.ssrc] = source
        if stream.rtx_ssrc is not None:
            self.sources[stream.rtx_ssrc] = source
        twcc_id = stream.extensions.get(ext.TRANSPORT_WIDE_CC)
        if twcc_id is not None and self._twcc is None:
            self._twcc_id = twcc_id
            self._twcc = TransportFeedbackBuilder(self.rtcp_ssrc, stream.ssrc)
        self._on_source(source)

    def on_rtp(self, data: bytes, now: float) -> None:
        self.heard_at = now
        try:
            header = parse_rtp(data)
        except RtpError:
            self.malformed_rtp += 1
            return
        source = self.sources.get(header.ssrc)
        if source is None:
            self.unknown_ssrc += 1
            return
        if self._twcc is not None:
            value = header.extensions.get(self._twcc_id)  # type: ignore[arg-type]
            if value is not None and len(value) == 2:
                self._twcc.on_packet((value[0] << 8) | value[1], now)
        source.on_rtp(data, header, now)

    def on_rtcp(self, data: bytes, now: float) -> None:
        self.heard_at = now
        try:
            packets = rtcp.parse_rtcp(data)
        except rtcp.RtcpError:
            self.malformed_rtcp += 1
            return
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                source = self.sources.get(packet.ssrc)
                if source is not None and source.params.ssrc == packet.ssrc:
                    source.on_sender_report(packet, now)

    @property
    def media_sources(self) -> list[MediaSource]:
        return list({id(s): s for s in self.sources.values()}.values())

    def tick(self, now: float) -> None:
        for source in self.media_sources:
            source.tick(now)
        if self._twcc is not None and self.raw is not None:
            for packet in self._twcc.build():
                self.raw.send_rtcp(packet)

    def report(self, now: float) -> None:
        if self.raw is None:
            return
        sources = self.media_sources
        blocks = [b for b in (s.receiver_report(now) for s in sources) if b is not None]
        if not blocks:
            return
        packet = rtcp.build_rr(rtcp.ReceiverReport(self.rtcp_ssrc, blocks[:31]))
        video = [s.params.ssrc for s in sources if s.kind == "video"]
        if video:
            packet += rtcp.build_remb(self.rtcp_ssrc, self.settings.publisher_max_bitrate, video)
        self.raw.send_rtcp(packet)
