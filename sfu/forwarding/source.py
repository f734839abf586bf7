"""One published track as the SFU receives it: ingress bookkeeping and fan-out.

:meth:`MediaSource.on_rtp` is fed every decrypted RTP packet of the track (media or RTX) with
its arrival time.  It keeps the reception statistics and NACKs gaps upstream, reads the
packet's layers once (video) or sums its audio level (audio, RFC 6464, for the room's
speaker detection), measures each layer's bitrate and frame rate, builds the
header extensions all subscribers share (its :class:`ExtensionWriter`), and hands the packet
to each down track (:class:`~sfu.forwarding.interfaces.Downstream`) in one synchronous pass.
It is their :class:`~sfu.forwarding.interfaces.Upstream`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from .. import faults
from ..rtp import extensions as ext
from ..rtp import rtcp
from ..rtp.packet import RtpError, RtpHeader, parse_rtp, unwrap_rtx
from ..rtp.statistics import ReceiveStatistics
from .audio_level import AudioLevels
from .extension_writer import ExtensionWriter
from .interfaces import Downstream
from .keyframe import KeyframeRequester
from .layers import LayerInfo, LayerParser
from .meter import LayerMeter, Level
from .nack import NackGenerator
from .track import StreamParameters

#: sequence numbers remembered to tell a duplicate (a power of two, well beyond the NACK
#: history: a retransmission older than this is not asked for)
DUPLICATE_WINDOW = 1024
DUPLICATE_MASK = DUPLICATE_WINDOW - 1


class MediaSource:
    def __init__(
        self,
        track_id: str,
        params: StreamParameters,
        *,
        send_rtcp: Callable[[bytes], None],
        rtcp_ssrc: int,
        out_extension_ids: dict[str, int] | None = None,
        max_bitrate: int = 10_000_000,
        keyframe_min_interval: float = 0.5,
    ) -> None:
        self.track_id = track_id
        self.params = params
        #: "camera" or "screen", as the publisher declares it (bandwidth priority)
        self.source_type = "camera"
        self.kind = params.kind
        self.downtracks: list[Downstream] = []
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self.max_bitrate = max_bitrate
        self.stats = ReceiveStatistics(params.clock_rate)
        self.nack = NackGenerator() if params.kind == "video" else None
        self._given_up_seen = 0
        #: keyframes asked for because a packet was lost for good (see :meth:`tick`)
        self.keyframes_for_loss = 0
        self.keyframes = KeyframeRequester(min_interval=keyframe_min_interval)
        self.keyframes_received = 0
        self.packets_dropped = 0  # malformed, unknown SSRC or payload type
        self.nacks_sent = 0
        #: observers of every media packet as received (RTX unwrapped), e.g. a capture
        self.taps: list[Callable[[bytes, float], None]] = []
        #: the publisher muted it (``mute``): nothing is forwarded
        self.muted = False
        self.muted_at = 0.0
        self.packets_muted = 0
        #: observers of the publisher's sender reports (the media link to other workers)
        self.report_taps: list[Callable[[rtcp.SenderReport, float], None]] = []
        self._keyframe_wanted = False  # by a down track, acted on after the fan-out
        self._sr: tuple[int, int, float] | None = None  # (ntp, rtp, arrival)
        self._highest_seq: int | None = None
        #: packets older than one already received (mostly retransmissions we asked for)
        self.late_packets = 0
        #: packets received twice (an RTX copy of one that arrived, e.g. the publisher's own
        #: bandwidth probes): not forwarded, since a receiver's SRTP replay check drops a
        #: second packet with the same sequence number, and counts it lost
        self.duplicate_packets = 0
        #: the sequence number last received in each slot (seq % DUPLICATE_WINDOW)
        self._received = array("l", [-1]) * DUPLICATE_WINDOW
        self.writer = ExtensionWriter(
            params.extensions, out_extension_ids or ext.SUBSCRIBER_EXTENSION_IDS
        )
        #: the levels of an audio track's packets (RFC 6464), if the extension is negotiated
        self._level_id = params.extensions.get(ext.AUDIO_LEVEL, 0) if self.kind == "audio" else 0
        self.audio_levels = AudioLevels() if self._level_id else None
        dd_in = params.extensions.get(ext.DEPENDENCY_DESCRIPTOR)
        self.layers: LayerParser | None = None
        self.meter: LayerMeter | None = None
        if params.kind == "video":
            self.layers = LayerParser(params.codec, dd_in)
            self.meter = LayerMeter()
        #: the levels as a subscriber keeping the lower layer's chain pays for them, and the
        #: key they were priced for (see :meth:`Subscription.levels`): shared by subscribers
        self.priced_levels: tuple[tuple[object, ...], tuple[Level, ...]] | None = None
        #: called when the layer structure (count, resolutions) changes
        self.on_structure: Callable[[MediaSource], None] | None = None
        self._structure_key: tuple[int, int, tuple[tuple[int, int], ...]] = (1, 1, ())

    # -- ingress (hot path) --------------------------------------------------------------
    def on_rtp(self, data: bytes, header: RtpHeader, now: float) -> None:
        params = self.params
        if header.ssrc != params.ssrc:
            if header.ssrc != params.rtx_ssrc or header.payload_type != params.rtx_payload_type:
                self.packets_dropped += 1
                return
            try:
                data = unwrap_rtx(data, header, params.payload_type, params.ssrc)
                header = parse_rtp(data)
            except RtpError:
                self.packets_dropped += 1
                return
        elif header.payload_type != params.payload_type:
            self.packets_dropped += 1
            return

        if self.taps:
            for tap in self.taps:
                tap(data, now)
        seq = header.sequence_number
        size = header.payload_end - header.payload_offset
        highest = self._highest_seq
        late = False
        if highest is None:
            self._highest_seq = seq
        else:
            delta = (seq - highest) & 0xFFFF
            if delta == 0 or delta >= 0x8000:
                late = True
                self.late_packets += 1
            else:
                self._highest_seq = seq
                if delta > 1:  # the slots skipped hold older numbers: not received
                    received = self._received
                    for skipped in range(highest + 1, highest + min(delta, DUPLICATE_WINDOW)):
                        received[skipped & DUPLICATE_MASK] = -1
        self.stats.add(seq, header.timestamp, now, size)
        if self.nack is not None:
            missing = self.nack.add(seq, now)
            if missing:
                self._nack(missing)
        slot = seq & DUPLICATE_MASK
        if self._received[slot] == seq:
            self.duplicate_packets += 1
            return
        self._received[slot] = seq
        if self.muted:  # the publisher muted it: counted (and NACKed), not forwarded
            self.packets_muted += 1
            return
        levels = self.audio_levels
        if levels is not None:
            value = header.extensions.get(self._level_id)
            if value:
                levels.add(value[0])

        payload = data[header.payload_offset : header.payload_end]
        extensions = header.extensions
        info: LayerInfo | None = None
        if self.layers is not None:
            info = self.layers.parse(payload, extensions, header.marker)
            if info.keyframe:
                self.keyframes_received += 1
                self.keyframes.on_keyframe()
            if self.meter is not None and info.valid:
                self.meter.add(
                    info.sid, info.tid, size, info.start_of_frame, now, info.present_mask
                )
            layers = self.layers
            key = self._structure_key
            if info.dd is not None and info.dd.structure is not None:
                self._check_structure()
            elif info.vp9 is not None and info.vp9.ss is not None:
                self._check_structure()
            elif info.keyframe and info.vp8 is not None:
                self._check_structure()
            elif layers.temporal_layers != key[1] or layers.spatial_layers != key[0]:
                # layers learned from the packets (no DD, no SS: a temporal or spatial id
                # higher than seen before): retarget now, not at the next keyframe
                self._check_structure()

        if not self.downtracks:  # nobody here to forward to (a track only relayed, say)
            return
        # the header extensions every subscriber gets (the DD may be rewritten per subscriber,
        # the transport-wide sequence number, first, is written per subscriber)
        elements, block, head, tail = self.writer.build(extensions, info, now)
        marker = header.marker
        ts = header.timestamp
        for downtrack in self.downtracks:
            try:
                downtrack.write(
                    marker, seq, ts, elements, block, head, tail, payload, info, now, late
                )
            except Exception:  # one subscriber's fault must not starve the others
                downtrack.faults += 1
                faults.record("forward", downtrack.context, now)
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            self.request_keyframe(now)

    def set_muted(self, muted: bool, now: float) -> bool:
        """The publisher mutes (or unmutes) this track: while muted nothing is forwarded
        (and its levels fade from the allocation); on unmute every down track goes on after
        the gap (numbers continuous; video from the next keyframe, asked for now).  Returns
        whether anything changed."""
        if muted == self.muted:
            return False
        self.muted = muted
        if muted:
            self.muted_at = now
        else:
            for downtrack in self.downtracks:
                downtrack.resume_after(now - self.muted_at)
            if self.layers is not None:
                self.request_keyframe(now)
        return True

    def want_keyframe(self) -> None:
        """A down track needs a keyframe: asked for after the packet in hand is fanned out
        (once, whichever down tracks want it)."""
        self._keyframe_wanted = True

    def _check_structure(self) -> None:
        layers = self.layers
        if layers is None:
            return
        key = (layers.spatial_layers, layers.temporal_layers, tuple(layers.resolutions))
        if key != self._structure_key:
            self._structure_key = key
            if self.on_structure is not None:
                self.on_structure(self)

    def on_sender_report(self, report: rtcp.SenderReport, now: float) -> None:
        self._sr = (report.ntp_timestamp, report.rtp_timestamp, now)
        self.stats.on_sender_report(report.ntp_timestamp, now)
        for tap in self.report_taps:
            tap(report, now)

    # -- layers ----------------------------------------------------------------------------
    @property
    def spatial_layers(self) -> int:
        return self.layers.spatial_layers if self.layers is not None else 1

    @property
    def temporal_layers(self) -> int:
        return self.layers.temporal_layers if self.layers is not None else 1

    @property
    def resolutions(self) -> list[tuple[int, int]]:
        return list(self.layers.resolutions) if self.layers is not None else []

    def levels(self, now: float) -> tuple[Level, ...]:
        """The measured levels: the same tuple while they do not change."""
        if self.meter is None:
            return ()
        layers = self.layers
        return self.meter.levels(
            now,
            self.spatial_layers,
            self.temporal_layers,
            self.resolutions,
            layers.decode_targets if layers is not None else None,
        )

    # -- subscribers ---------------------------------------------------------------------
    def attach(self, downtrack: Downstream, now: float) -> None:
        """A new subscriber: it can only start decoding at a keyframe, so ask for one."""
        self.downtracks.append(downtrack)
        if self.kind == "video":
            self.request_keyframe(now)

    def detach(self, downtrack: Downstream) -> None:
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)

    def clock_mapping(self, now: float) -> tuple[int, int] | None:
        """The publisher's (NTP, RTP) clock pair extrapolated to ``now``, from its last SR."""
        if self._sr is None:
            return None
        ntp, rtp_ts, at = self._sr
        elapsed = now - at
        ntp_now = (ntp + int(elapsed * (1 << 32))) & 0xFFFFFFFFFFFFFFFF
        rtp_now = (rtp_ts + int(elapsed * self.params.clock_rate)) & 0xFFFFFFFF
        return ntp_now, rtp_now

    # -- feedback upstream ---------------------------------------------------------------
    def request_keyframe(self, now: float) -> None:
        if self.kind == "video" and self.keyframes.request(now):
            self._send_rtcp(rtcp.build_pli(self._rtcp_ssrc, self.params.ssrc))

    def _nack(self, lost: list[int]) -> None:
        self.nacks_sent += 1
        self._send_rtcp(rtcp.build_nack(self._rtcp_ssrc, self.params.ssrc, lost))

    def tick(self, now: float) -> None:
        """Periodic work (every ~50 ms): NACK retries and keyframe-request retries; a keyframe
        asked for when a packet is lost for good (its NACKs spent), as mediasoup does: the
        subscribers' decoders cannot go on past the picture it belonged to until one comes,
        and a browser waits up to 3 s without a decodable frame before asking itself."""
        nack = self.nack
        if nack is not None:
            due = nack.poll(now)
            if due:
                self._nack(due)
            if nack.given_up != self._given_up_seen:
                self._given_up_seen = nack.given_up
                self.keyframes_for_loss += 1
                self.request_keyframe(now)
        if self.keyframes.poll(now):
            self._send_rtcp(rtcp.build_pli(self._rtcp_ssrc, self.params.ssrc))

    def receiver_report(self, now: float) -> rtcp.ReportBlock | None:
        if self.stats.packets_received == 0:
            return None
        return self.stats.report_block(self.params.ssrc, now)
