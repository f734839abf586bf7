"""One subscriber's copy of one published track: rewrite, remember, send.

The hot path is :meth:`DownTrack.write`, called once per incoming packet for every
subscriber, synchronously: one ``struct.pack``, one concatenation, one history slot and one
call to the transport's ``send``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..rtp import rtcp
from ..rtp.packet import wrap_rtx
from .history import RetransmissionBuffer
from .munger import RtpMunger

if TYPE_CHECKING:
    from .source import MediaSource

_HEADER = struct.Struct("!BBHII")
NTP_EPOCH_OFFSET = 2208988800


def ntp_from_time(seconds: float) -> int:
    """64-bit NTP timestamp from a Unix time."""
    return int((seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


class DownTrack:
    def __init__(
        self,
        source: MediaSource,
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
        self.payload_type = payload_type
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self._send = send
        self.munger = RtpMunger(random.getrandbits(15), random.getrandbits(32))
        self.history = RetransmissionBuffer(history_size)
        self._rtx_seq = random.getrandbits(15)
        self.packets_sent = 0
        self.bytes_sent = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self.remote_packets_lost = 0
        self.remote_fraction_lost = 0
        self.rtt: float | None = None
        self.remb_bitrate: int | None = None
        self._last_sr_ntp_mid = 0
        self._last_sr_time = 0.0
        self.closed = False

    # -- hot path ------------------------------------------------------------------------
    def write(self, first_byte: int, marker: int, seq: int, ts: int, tail: bytes) -> None:
        """Forward one packet; ``tail`` is everything after the fixed 12-byte header."""
        mapped = self.munger.forward(seq, ts)
        if mapped is None:
            return
        out_seq, out_ts = mapped
        packet = (
            _HEADER.pack(first_byte, marker | self.payload_type, out_seq, out_ts, self.ssrc) + tail
        )
        self.history.store(out_seq, packet)
        self.packets_sent += 1
        self.bytes_sent += len(packet)
        self._send(packet)

    def skip(self, seq: int) -> None:
        """The packet ``seq`` is not forwarded to this subscriber."""
        self.munger.drop(seq)

    # -- feedback from the subscriber ----------------------------------------------------
    def retransmit(self, lost: list[int]) -> None:
        for seq in lost:
            packet = self.history.get(seq)
            if packet is None:
                continue
            if self.rtx_payload_type is not None and self.rtx_ssrc is not None:
                packet = wrap_rtx(packet, self.rtx_payload_type, self._rtx_seq, self.rtx_ssrc)
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            self.retransmitted += 1
            self._send(packet)

    def handle_rtcp(self, packet: rtcp.RtcpPacket, now: float) -> None:
        if isinstance(packet, rtcp.Nack):
            self.retransmit(packet.lost)
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
