"""One subscriber's copy of one published track: rewrite, remember, send.

The hot path is :meth:`DownTrack.write`, called once per incoming packet for every
subscriber, synchronously: one ``struct.pack`` (the RTP header and the transport-wide
sequence number), one concatenation, one history slot and one call to the transport's
``send``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

from ..codecs.errors import CodecError
from ..codecs.vp8 import rewrite_vp8_descriptor
from ..codecs.vp9 import rewrite_vp9_descriptor
from ..rtp import rtcp
from .congestion import SendSideCongestion
from .drops import DropReason, Refusal, drop_counts
from .history import RetransmissionBuffer
from .interfaces import Upstream
from .layers import LayerInfo
from .munger import RtpMunger
from .picture_ids import PictureIdMapper
from .retransmission import MIN_RESEND_INTERVAL, Retransmitter, RtxStream
from .rtx_budget import RetransmissionBudget
from .selector import LayerSelector
from .sequence import DROPPED

_HEADER = struct.Struct("!BBHII")
#: the RTP header, the extension block up to the transport-wide sequence number (5 bytes in
#: the one-byte form, 6 in the two-byte form) and that number
_HEADER_AND_TWCC = {5: struct.Struct("!BBHII5sH"), 6: struct.Struct("!BBHII6sH")}


class DownTrack:
    """Rewrites the source's packets for one subscriber (:class:`RtpMunger`, picture ids,
    the dependency descriptor's active decode targets), chooses which to forward
    (:class:`LayerSelector`), keeps them for retransmission and answers the subscriber's
    feedback (:class:`Retransmitter`, keyframe requests, reports).  Every packet not
    forwarded is counted by :class:`DropReason`."""

    def __init__(
        self,
        source: Upstream,
        *,
        ssrc: int,
        payload_type: int,
        send: Callable[[bytes], None],
        rtx_ssrc: int | None = None,
        rtx_payload_type: int | None = None,
        history_size: int = 1024,
    ) -> None:
        self.source = source
        self.ssrc = ssrc
        #: whose copy this is (room, participant, track), for logs
        self.context = "down track"
        #: exceptions contained while writing to it
        self.faults = 0
        self.payload_type = payload_type
        self._send = send
        self.munger = RtpMunger(random.getrandbits(15), random.getrandbits(32))
        self.history = RetransmissionBuffer(history_size)
        rtx = None
        if rtx_ssrc is not None and rtx_payload_type is not None:
            rtx = RtxStream(rtx_ssrc, rtx_payload_type, random.getrandbits(15))
        self.retransmitter = Retransmitter(self.history, send, rtx)
        #: transport-wide sequence numbers and bandwidth estimation of the subscriber's
        #: transport (set through :attr:`congestion`)
        self._congestion: SendSideCongestion | None = None
        #: layer selection, for video; None forwards everything (audio)
        self.selector: LayerSelector | None = None
        if source.kind == "video":
            self.selector = LayerSelector(source.layers, multi_spatial=source.params.codec != "VP8")
        self.picture_ids = PictureIdMapper()
        #: called (rarely) when the forwarded layers change
        self.on_layers_changed: Callable[[DownTrack], None] | None = None
        self._switches_seen = 0
        self._keyframe_asked = False
        self._dd_mask: int | None = None  # active decode targets last signalled
        #: the selector's switch count and the structure with which the active decode
        #: targets were found already signalled (-1: not known): while both stay, a packet
        #: with neither a structure nor a bitmask of its own needs no rewrite (not looked at)
        self._dd_quiet = -1
        self._dd_structure: object = None
        self._last_seq_in: int | None = None  # of the last in-order packet with a picture id
        self.packets_sent = 0
        self.bytes_sent = 0
        #: packets of the source not forwarded, in all and by reason (DropReason)
        self.packets_dropped = 0
        self.drops = [0] * len(DropReason)
        #: keyframes asked for because a picture will stay incomplete (see _leaves_kept_frame)
        self.incomplete_picture_keyframes = 0
        #: VP9 frames not forwarded since they reference a picture dropped whole (each
        #: restarts the stream at a keyframe; consistent layer selection never gets there)
        self.unresolved_references = 0
        #: the last layer frame's P_DIFF mapping: picture id, P_DIFFs in and out, cache key
        self._refs_pid = -1
        self._refs_in: list[int] = []
        self._refs_out: list[int] | None = None
        self._refs_key = -1
        self._keyframe_seq: int | None = None  # outgoing seq of the last keyframe's start
        self._incomplete_asked = False  # since that keyframe
        self._padding_back = 0
        self.keyframe_requests = 0
        #: renumbers the header extensions for a subscriber with ids of its own (see
        #: ExtensionRemap); None for the usual subscriber, who has the SFU's
        self.remap_extensions: Callable[[bytes], tuple[bytes, bytes, bytes]] | None = None
        #: NACK messages received from the subscriber (their items: resent or refused)
        self.nacks_received = 0
        self.remote_packets_lost = 0
        self.remote_fraction_lost = 0
        self.rtt: float | None = None
        self.remb_bitrate: int | None = None
        self._last_sr_ntp_mid = 0
        self._last_sr_time = 0.0
        self.closed = False

    # -- the subscriber's transport --------------------------------------------------------
    @property
    def congestion(self) -> SendSideCongestion | None:
        """The subscriber transport's congestion control (with transport-cc): stamps every
        packet sent with a transport-wide sequence number, bounds retransmissions."""
        return self._congestion

    @congestion.setter
    def congestion(self, congestion: SendSideCongestion | None) -> None:
        self._congestion = self.retransmitter.congestion = congestion

    @property
    def twcc_id(self) -> int | None:
        """The transport-wide sequence number's extension id (with transport-cc)."""
        return self.retransmitter.twcc_id

    @twcc_id.setter
    def twcc_id(self, twcc_id: int | None) -> None:
        self.retransmitter.twcc_id = twcc_id

    @property
    def budget(self) -> RetransmissionBudget | None:
        """The subscriber's retransmission budget (shared by its down tracks)."""
        return self.retransmitter.budget

    @budget.setter
    def budget(self, budget: RetransmissionBudget | None) -> None:
        self.retransmitter.budget = budget

    @property
    def keep_lower_chain(self) -> bool:
        """At the top spatial layer, also forward the lower layer's chain (see
        :class:`~sfu.forwarding.chain.LowerChain`): set when the subscriber's bandwidth is
        estimated, so that a drop of the estimate can lower the spatial layer at once."""
        return self.selector is not None and self.selector.chain.keep

    @keep_lower_chain.setter
    def keep_lower_chain(self, keep: bool) -> None:
        if self.selector is not None:
            self.selector.chain.keep = keep

    # -- hot path ------------------------------------------------------------------------
    def write(
        self,
        marker: bool,
        seq: int,
        ts: int,
        elements: list[tuple[int, bytes]],
        block: bytes,
        head: bytes,
        tail: bytes,
        payload: bytes,
        info: LayerInfo | None,
        now: float,
        late: bool = False,
    ) -> None:
        """Forward (or not) one packet of the source; ``late``: older than one the source
        already received (a retransmission from the publisher, or reordered).

        ``block``: the header extensions, the transport-wide sequence number first (a
        placeholder); ``head`` and ``tail``: the block before and after that placeholder's
        two bytes (``b""`` when the block has none)."""
        marker_bit = 0x80 if marker else 0
        selector = self.selector
        if selector is not None and info is not None:
            decision = selector.select(info, marker, late)
            pid = info.picture_id
            if pid is not None:
                gap = False
                if not late:
                    last = self._last_seq_in
                    gap = last is not None and ((seq - last) & 0xFFFF) != 1
                    self._last_seq_in = seq
                out_pid = self.picture_ids.map(
                    pid,
                    info.picture_id_bits,
                    decision >= 0,
                    late,
                    gap,
                    selector.current_spatial >= 0 and info.tid <= selector.current_temporal,
                )
            if selector.keyframe_wanted:
                if not self._keyframe_asked:
                    self._keyframe_asked = True
                    self.source.want_keyframe()
            else:
                self._keyframe_asked = False
            if decision < 0:
                munger = self.munger
                if not munger.pending and (seq - munger.highest) & 0xFFFF == 1:
                    # (SequenceMapper.drop of the next packet, the usual case, inlined)
                    munger.highest = seq
                    slot = seq & munger._ring_mask
                    munger._slots[slot] = seq
                    munger._offsets[slot] = DROPPED
                    munger.offset = (munger.offset - 1) & 0xFFFF
                else:
                    munger.drop(seq)
                self.packets_dropped += 1
                self.drops[selector.drop_reason] += 1
                return
            marker_bit = decision
            if pid is not None and out_pid != pid:
                # subscribers whose picture ids (and references) map alike share one
                # rewritten payload: the key of this one's rewrite, if known without work
                vp9 = info.vp9
                if (
                    vp9 is None
                    or not vp9.reference_diffs
                    or self.picture_ids.renumbered_from is None
                ):
                    key: int | None = out_pid
                elif pid == self._refs_pid and vp9.reference_diffs == self._refs_in:
                    key = self._refs_key  # this layer frame's references, mapped already
                else:
                    key = None
                if key is not None and info.rewritten_key == key:
                    payload = info.rewritten_payload
                else:
                    renumbered = self._renumbered(payload, info, pid, out_pid)
                    if renumbered is None:
                        self._unresolved_reference(seq)
                        return
                    payload = renumbered
            if selector.switches != self._switches_seen:
                self._switches_seen = selector.switches
                if self.on_layers_changed is not None:
                    self.on_layers_changed(self)
            dd = info.dd
            if dd is not None and (
                self._dd_quiet != selector.switches
                or dd.structure is not None
                or dd.active_decode_targets_bitmask is not None
                or self._dd_structure is not self.source.layers.structure  # type: ignore[union-attr]
            ):
                rewritten = self._dependency_descriptor(info, elements, block)
                if rewritten is not block:
                    block = rewritten
                    head = b""
        # (RtpMunger.forward inlined, and for the packet after the newest, the usual case,
        # SequenceMapper.map too)
        munger = self.munger
        if munger.pending:
            munger.restart(seq, ts)
        out_ts = (ts + munger.timestamp_offset) & 0xFFFFFFFF
        if (seq - munger.highest) & 0xFFFF == 1:
            munger.highest = seq
            slot = seq & munger._ring_mask
            munger._slots[slot] = seq
            offset = munger._offsets[slot] = munger.offset
            out_seq = munger.last_out = (seq + offset) & 0xFFFF
            munger.last_out_ts = out_ts
        else:
            mapped = munger.map(seq)
            if mapped is None:
                self.packets_dropped += 1
                self.drops[DropReason.TOO_OLD] += 1
                return
            out_seq = mapped
            if out_seq == munger.last_out:  # the newest packet
                munger.last_out_ts = out_ts
        if info is not None and info.keyframe:
            self._keyframe_seq = out_seq
            self._incomplete_asked = False
            # no reference reaches back past a keyframe: renumbering before it leaves the
            # P_DIFFs of what follows as they are
            self.picture_ids.keyframe()
        remap = self.remap_extensions
        if remap is not None and block:
            block, head, tail = remap(block)
        congestion = self._congestion
        size = 12 + len(block) + len(payload)
        if congestion is not None and block:
            # the first element is the transport-wide sequence number (see ExtensionWriter)
            if not head:
                at = 5 if block[0] == 0xBE else 6
                head, tail = block[:at], block[at + 2 :]
            twcc = congestion.stamp(size, now)
            packet = b"".join(
                (
                    _HEADER_AND_TWCC[len(head)].pack(
                        0x90, marker_bit | self.payload_type, out_seq, out_ts, self.ssrc, head, twcc
                    ),
                    tail,
                    payload,
                )
            )
        else:
            packet = b"".join(
                (
                    _HEADER.pack(
                        0x90 if block else 0x80,
                        marker_bit | self.payload_type,
                        out_seq,
                        out_ts,
                        self.ssrc,
                    ),
                    block,
                    payload,
                )
            )
        # (RetransmissionBuffer.store, inlined)
        history = self.history
        slot = out_seq & history._mask
        history._seq[slot] = out_seq
        history._packets[slot] = packet
        history._spatial[slot] = (info.sid << 4 | info.tid) if info is not None else 0
        history._resent[slot] = 0.0
        self.packets_sent += 1
        self.bytes_sent += size
        self._send(packet)

    def _renumbered(self, payload: bytes, info: LayerInfo, pid: int, out_pid: int) -> bytes | None:
        """The payload with its picture id renumbered (None: its VP9 references name a
        picture the subscriber never got).  A VP9 flexible-mode picture's references (P_DIFF)
        must name the same pictures in the new numbering; subscribers whose picture ids (and
        references) map alike share one rewritten payload."""
        key = out_pid
        diffs: list[int] | None = None
        vp9 = info.vp9
        since = self.picture_ids.renumbered_from
        if (
            since is not None
            and vp9 is not None
            and vp9.reference_diffs
            and not 128
            <= ((pid - since) & ((1 << info.picture_id_bits) - 1))
            <= (1 << (info.picture_id_bits - 1))
        ):
            # a picture was dropped whole within P_DIFF's reach (127 pictures back); the
            # packets of one layer frame share their references: mapped once
            refs = vp9.reference_diffs
            if pid == self._refs_pid and refs == self._refs_in:
                diffs, key = self._refs_out, self._refs_key
            else:
                diffs = self.picture_ids.reference_diffs(pid, refs)
                if diffs is None:
                    return None
                if diffs is refs or diffs == refs:
                    diffs = None  # unchanged: the key is the picture id's alone
                else:  # negative: never the key of a picture id alone (nor -1)
                    for diff in diffs:
                        key = (key << 7) | diff
                    key = ~key
                self._refs_pid, self._refs_in = pid, refs
                self._refs_out, self._refs_key = diffs, key
        if info.rewritten_key == key:
            return info.rewritten_payload
        try:
            if vp9 is not None:
                payload = rewrite_vp9_descriptor(
                    payload, vp9, picture_id=out_pid, reference_diffs=diffs
                )
            elif info.vp8 is not None:
                payload = rewrite_vp8_descriptor(payload, info.vp8, picture_id=out_pid)
        except CodecError:
            pass
        info.rewritten_key = key
        info.rewritten_payload = payload
        return payload

    def _unresolved_reference(self, seq: int) -> None:
        """A frame to forward references a picture this subscriber never got (dropped
        whole): a receiver following the VP9 references cannot decode it nor what follows
        it.  Forward nothing until a keyframe, and ask for one."""
        assert self.selector is not None
        self.unresolved_references += 1
        self.selector.restart()
        self._keyframe_asked = True
        self.source.want_keyframe()
        self.munger.drop(seq)
        self.packets_dropped += 1
        self.drops[DropReason.UNRESOLVED_REFERENCE] += 1

    def _dependency_descriptor(
        self, info: LayerInfo, elements: list[tuple[int, bytes]], block: bytes
    ) -> bytes:
        """Tell the receiver which decode targets it can decode (AV1 RTP spec, active decode
        targets): on every packet of the first frame after what we forward changed, and on
        every packet where the publisher itself sends a bitmask."""
        selector = self.selector
        layers = self.source.layers
        dd = info.dd
        self._dd_quiet = -1
        if selector is None or layers is None or dd is None or layers.structure is None:
            return block
        if dd.structure is not None:  # a new structure: the receiver assumes all targets
            self._dd_mask = (1 << layers.structure.decode_target_count) - 1
        mask = layers.active_decode_targets(selector.current_spatial, selector.current_temporal)
        source_mask = dd.active_decode_targets_bitmask
        if source_mask is not None:
            mask &= source_mask
        elif mask == self._dd_mask:
            if dd.structure is None:  # the same answer until the layers or structure change
                self._dd_quiet = selector.switches
                self._dd_structure = layers.structure
            return block
        try:
            rewritten = self.source.writer.with_active_decode_targets(elements, info, layers, mask)
        except CodecError:
            return block
        if rewritten is None:
            return block
        if info.end_of_frame:
            self._dd_mask = mask
        return rewritten

    # -- feedback from the subscriber ----------------------------------------------------
    @property
    def refused(self) -> dict[Refusal, int]:
        """NACKed packets not resent, by reason."""
        return self.retransmitter.refused

    @property
    def retransmitted(self) -> int:
        return self.retransmitter.retransmitted

    @property
    def retransmitted_bytes(self) -> int:
        return self.retransmitter.retransmitted_bytes

    @property
    def retransmissions_skipped(self) -> int:
        """NACKed packets not resent, whatever the reason."""
        return sum(self.retransmitter.refused.values())

    def retransmit(self, lost: list[int], now: float) -> int:
        """Answer a NACK (see :class:`Retransmitter`); returns bytes sent.  A packet of a
        layer above what the subscriber gets or is about to get is not resent (it switched
        down: the frame is of no use to it)."""
        interval = max(MIN_RESEND_INTERVAL, self.rtt or 0.0)
        keeps = self._keeps if self.selector is not None else None
        return self.retransmitter.answer(lost, now, interval, keeps)

    def refuse(self, reason: Refusal, count: int) -> None:
        """``count`` NACK items refused before reaching :meth:`retransmit` (the caps)."""
        self.retransmitter.refuse(reason, count)

    def _keeps(self, seq: int, now: float) -> bool:
        """The layer policy of retransmission: whether the subscriber still wants packet
        ``seq``'s layers; if not, and leaving it unsent leaves a picture incomplete that the
        subscriber keeps, a keyframe is asked for (see :meth:`_leaves_kept_frame`)."""
        selector = self.selector
        assert selector is not None
        spatial, temporal = self.history.layer(seq)
        kept = min(selector.current_spatial, selector.target_spatial)
        if spatial <= kept and temporal <= min(selector.current_temporal, selector.target_temporal):
            return True
        if spatial > kept and not self._incomplete_asked and self._leaves_kept_frame(seq, kept):
            self._incomplete_asked = True
            self.incomplete_picture_keyframes += 1
            self.source.request_keyframe(now)
            # the layer switched down to cannot be decoded either: send nothing but that
            # keyframe's picture, which comes sooner so
            selector.restart()
        return False

    def _leaves_kept_frame(self, seq: int, spatial: int) -> bool:
        """Whether not resending ``seq`` (a packet of a layer above ``spatial``) leaves a
        picture incomplete that carries a frame the subscriber keeps (the lower layer's chain
        beside the top layer, or a keyframe's lower layers), since the last keyframe.  A
        receiver that decodes whole pictures, as libwebrtc does (a picture is decoded once its
        frame with the marker bit is complete), then never decodes that kept frame, nor what
        references it: only a keyframe repairs that."""
        start = self._keyframe_seq
        packet = self.history.get(seq)
        if packet is None or start is None or (seq - start) & 0x8000:
            return False  # unknown, or older than the last keyframe: nothing needs it
        timestamp = packet[4:8]
        for back in range(1, 64):  # the picture's earlier packets, lower layers first
            earlier = (seq - back) & 0xFFFF
            other = self.history.get(earlier)
            if other is None or other[4:8] != timestamp:
                return False
            if self.history.layer(earlier)[0] <= spatial:
                return True
        return False

    def send_padding(self, now: float) -> int:
        """Resend one recent packet as RTX, to probe the link; returns bytes sent (0: none)."""
        if self.retransmitter.rtx is None or not self.munger.started:
            return 0
        self._padding_back = (self._padding_back % 32) + 1
        seq = (self.munger.last_out_seq - self._padding_back) & 0xFFFF
        return self.retransmitter.pad(seq, now)

    def resume_after(self, seconds: float) -> None:
        """The source forwarded nothing for ``seconds`` (muted): the next packet sent
        follows the last one (sequence numbers continuous, the timestamp moved by the
        gap), video from its next keyframe."""
        self.munger.rebase(max(1, int(seconds * self.source.params.clock_rate)))
        if self.selector is not None:
            self.selector.restart()

    def handle_rtcp(self, packet: rtcp.RtcpPacket, now: float) -> None:
        if isinstance(packet, rtcp.Nack):
            self.nacks_received += 1
            self.retransmit(packet.lost, now)
        elif isinstance(packet, (rtcp.Pli, rtcp.Fir)):
            self.keyframe_requests += 1
            self.source.request_keyframe(now)
        elif isinstance(packet, rtcp.Remb):
            self.remb_bitrate = packet.bitrate
        elif isinstance(packet, (rtcp.ReceiverReport, rtcp.SenderReport)):
            for block in packet.reports:
                if block.ssrc != self.ssrc:
                    continue
                self.remote_packets_lost = block.packets_lost
                self.remote_fraction_lost = block.fraction_lost
                if block.lsr and block.lsr == self._last_sr_ntp_mid:
                    rtt = now - self._last_sr_time - block.dlsr / 65536
                    if rtt >= 0:
                        self.rtt = rtt if self.rtt is None else 0.875 * self.rtt + 0.125 * rtt

    def stats(self) -> dict[str, Any]:
        """What this down track did, for operators (``/stats``)."""
        selector = self.selector
        return {
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "packets_dropped": self.packets_dropped,
            "drops": drop_counts(self.drops),
            "retransmitted": self.retransmitted,
            "retransmitted_bytes": self.retransmitted_bytes,
            "retransmissions_skipped": self.retransmissions_skipped,
            "retransmissions_refused": {r.value: n for r, n in self.refused.items()},
            "keyframe_requests": self.keyframe_requests,
            "nacks_received": self.nacks_received,
            "incomplete_picture_keyframes": self.incomplete_picture_keyframes,
            "unresolved_references": self.unresolved_references,
            "spatial": selector.current_spatial if selector is not None else None,
            "temporal": selector.current_temporal if selector is not None else None,
            "paused": selector.paused if selector is not None else False,
            "rtt": self.rtt,
        }

    # -- reports to the subscriber -------------------------------------------------------
    def sender_report(self, now: float) -> rtcp.SenderReport | None:
        """A sender report whose NTP/RTP pair follows the publisher's own mapping, shifted by
        this subscriber's timestamp offset, so audio and video stay in sync (lip sync)."""
        mapping = self.source.clock_mapping(now)
        if mapping is None or not self.munger.started:
            return None
        ntp, source_rtp = mapping
        out_rtp = (source_rtp + self.munger.timestamp_offset) & 0xFFFFFFFF
        self._last_sr_ntp_mid = (ntp >> 16) & 0xFFFFFFFF
        self._last_sr_time = now
        return rtcp.SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=ntp,
            rtp_timestamp=out_rtp,
            packet_count=self.packets_sent,
            octet_count=self.bytes_sent,
        )
