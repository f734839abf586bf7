"""Send-side congestion control for one subscriber transport (sans-IO glue): transport-wide
sequence numbers on everything sent, the feedback that comes back, the estimate."""

from __future__ import annotations

from ..bwe.estimator import BandwidthEstimator
from ..rtp.rtcp import RtcpError
from ..rtp.twcc import parse_transport_feedback


class SendSideCongestion:
    #: what a new subscriber is assumed to take before any feedback: a 720p top layer fits;
    #: less is found within a second or two, more by probing
    INITIAL_BITRATE = 2_500_000

    def __init__(self, estimator: BandwidthEstimator | None = None) -> None:
        self.estimator = estimator or BandwidthEstimator(initial_bitrate=self.INITIAL_BITRATE)
        self.sequence_number = 0
        self.feedback_seen = False
        self.remb_seen = False
        self.malformed_feedback = 0
        self.bytes_sent = 0

    def stamp(self, size: int, now: float) -> int:
        """The transport-wide sequence number of a packet of ``size`` bytes sent now."""
        seq = self.sequence_number
        self.sequence_number = (seq + 1) & 0xFFFF
        self.bytes_sent += size
        self.estimator.on_packet_sent(seq, size, now)
        return seq

    def on_transport_feedback(self, fci: bytes, now: float) -> None:
        try:
            report = parse_transport_feedback(fci)
        except RtcpError:
            self.malformed_feedback += 1
            return
        self.feedback_seen = True
        self.estimator.on_feedback(report.packets, now)

    def on_remb(self, bitrate: int, now: float) -> None:
        self.remb_seen = True
        self.estimator.on_remb(bitrate, now)

    def on_rtt(self, rtt: float) -> None:
        self.estimator.on_rtt(rtt)

    @property
    def estimate(self) -> int | None:
        """Bits/s the subscriber's downlink carries; None when nothing is known (no feedback
        of any kind negotiated)."""
        if not (self.feedback_seen or self.remb_seen or self.bytes_sent):
            return None
        return self.estimator.estimate
