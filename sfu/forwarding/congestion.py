"""Send-side congestion control for one subscriber transport (sans-IO glue): transport-wide
sequence numbers on everything sent, the feedback that comes back, the estimate."""

from __future__ import annotations

import math

from ..bwe.estimator import BandwidthEstimator
from ..rtp.rtcp import RtcpError
from ..rtp.twcc import parse_transport_feedback_arrivals

#: the share of the estimate retransmissions may take
RTX_SHARE = 0.5
#: seconds of that share that may go at once
RTX_BURST = 0.25
#: packet statuses transport feedback may report, per packet sent (a packet is reported
#: once, received or lost, and a loss maybe once more), and at most in hand: a subscriber
#: decides what it reports, and one 24-byte feedback can claim 65535 statuses (~28 ms of
#: parsing and estimation); beyond the credit a feedback is refused, whole, before parsing
STATUS_CREDIT_PER_PACKET = 2
STATUS_CREDIT_MAX = 16384


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
        #: feedbacks refused for claiming more statuses than packets were sent
        self.refused_feedback = 0
        self.bytes_sent = 0
        self.packets_sent = 0
        self._statuses_reported = 0  # charged against STATUS_CREDIT_PER_PACKET x sent
        #: the probe cluster packets sent now belong to, -1: none
        self.probe_cluster = -1
        #: bytes of retransmissions that may still be sent (refilled by the owner, from the
        #: estimate, see :meth:`refill_rtx_allowance`); unlimited until then
        self.rtx_allowance = math.inf
        self._rtx_refilled: float | None = None
        #: the sequence numbers stamped and not yet sent, when the sender batches (a list
        #: it empties through :meth:`on_flushed`); None: each leaves when stamped
        self.unsent: list[int] | None = None

    def stamp(self, size: int, now: float) -> int:
        """The transport-wide sequence number of a packet of ``size`` bytes sent now."""
        seq = self.sequence_number
        self.sequence_number = (seq + 1) & 0xFFFF
        self.bytes_sent += size
        self.packets_sent += 1
        self.estimator.on_packet_sent(seq, size, now, self.probe_cluster)
        unsent = self.unsent
        if unsent is not None:
            unsent.append(seq)
        return seq

    def on_flushed(self, now: float) -> None:
        """What was stamped since the last call left now (the sender batches its sends: see
        :attr:`unsent`)."""
        unsent = self.unsent
        if unsent:
            self.estimator.on_packets_left(unsent, now)
            unsent.clear()

    def refill_rtx_allowance(self, now: float, share: float = RTX_SHARE) -> None:
        """Let retransmissions take up to ``share`` of the estimate, with at most 250 ms of
        it in hand: on a congested link they cannot crowd out the media that still fits."""
        last, self._rtx_refilled = self._rtx_refilled, now
        # the last receive-rate window shows a capacity drop before the estimate does
        received = self.estimator.acknowledged_sample
        ceiling = self.estimator.estimate
        if received is not None:
            ceiling = min(ceiling, int(1.5 * received))
        rate = share * ceiling / 8
        if last is None or self.rtx_allowance == math.inf:
            self.rtx_allowance = rate * RTX_BURST
            return
        self.rtx_allowance = min(rate * RTX_BURST, self.rtx_allowance + rate * (now - last))

    def on_transport_feedback(self, fci: bytes, now: float) -> None:
        # the packet status count (FCI bytes 2-3) against the credit the packets sent give
        earned = STATUS_CREDIT_PER_PACKET * self.packets_sent
        reported = max(self._statuses_reported, earned - STATUS_CREDIT_MAX)
        count = int.from_bytes(fci[2:4], "big")
        if reported + count > earned:
            self.refused_feedback += 1
            return
        self._statuses_reported = reported + count
        try:
            base, _, _, arrivals = parse_transport_feedback_arrivals(fci)
        except RtcpError:
            self.malformed_feedback += 1
            return
        self.feedback_seen = True
        self.estimator.on_feedback_arrivals(base, arrivals, now)

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
