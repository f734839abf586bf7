"""The estimator's send history (preallocated arrays indexed by the unwrapped transport-wide
sequence number): which sent packets feedback is still matched with, and the flat feedback
entry point against the list one."""

from __future__ import annotations

import pytest

from sfu.bwe import BandwidthEstimator
from sfu.bwe.estimator import HISTORY_DURATION, MAX_HISTORY
from sfu.forwarding.congestion import SendSideCongestion
from sfu.rtp.twcc import TransportFeedbackBuilder, parse_transport_feedback_arrivals


def test_packets_sent_more_than_5s_before_the_last_one_are_not_matched() -> None:
    estimator = BandwidthEstimator()
    estimator.on_packet_sent(10, 1200, 0.0)
    estimator.on_packet_sent(11, 1200, 1.0)
    estimator.on_packet_sent(12, 1200, HISTORY_DURATION + 0.5)  # 10 expired, 11 kept
    assert len(estimator._history) == 2
    estimator.on_feedback([(10, None), (11, None)], HISTORY_DURATION + 0.6)
    assert estimator.loss_ratio == 1.0  # one lost of one reported: 10 was not counted
    estimator.on_feedback([(12, 1000.0)], HISTORY_DURATION + 0.7)
    assert estimator.loss_ratio == pytest.approx(1 / 2)


def test_a_packet_is_forgotten_once_as_many_as_the_history_holds_were_sent_after_it() -> None:
    estimator = BandwidthEstimator()
    count = MAX_HISTORY + 1
    for i in range(count):  # sequence numbers wrap; all within a second
        estimator.on_packet_sent((40_000 + i) & 0xFFFF, 100, i / count)
    assert len(estimator._history) == MAX_HISTORY
    first, second = 40_000 & 0xFFFF, (40_000 + 1) & 0xFFFF
    estimator.on_feedback([(first, None), (second, None)], 1.0)
    assert estimator.loss_ratio == 1.0 and estimator._loss_window.total == 1


def test_flat_feedback_is_the_list_feedback() -> None:
    """SendSideCongestion hands the parsed arrivals over as they are; a second estimator
    fed the same reports as (sequence number, arrival) lists ends up the same."""
    congestion = SendSideCongestion()
    congestion.sequence_number = 65_500
    twin = BandwidthEstimator(initial_bitrate=SendSideCongestion.INITIAL_BITRATE)
    builder = TransportFeedbackBuilder(1, 2)
    for i in range(400):
        now = i * 0.004
        sequence = congestion.stamp(1000 + i % 200, now)
        twin.on_packet_sent(sequence, 1000 + i % 200, now)
        if i % 17 != 3:  # some lost
            builder.on_packet(sequence, 50.0 + now + 0.02 + (i % 5) * 0.001)
        if i % 12 == 11:
            for packet in builder.build():
                fci = packet[12:]
                congestion.on_transport_feedback(fci, now + 0.03)
                base, _, _, arrivals = parse_transport_feedback_arrivals(fci)
                twin.on_feedback(
                    [((base + k) & 0xFFFF, a) for k, a in enumerate(arrivals)], now + 0.03
                )
                mine = congestion.estimator
                assert (mine.estimate, mine.loss_ratio, mine.acknowledged_bitrate) == (
                    twin.estimate,
                    twin.loss_ratio,
                    twin.acknowledged_bitrate,
                )
    assert 0 < congestion.estimator.loss_ratio < 0.2
    assert congestion.estimator.acknowledged_bitrate is not None
