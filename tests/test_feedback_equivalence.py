"""The estimator's output over a realistic, deterministic sequence, held to what the
per-packet implementation (commit 0f66998, before the array one) produced.

The sequence is ``loadtest.feedback_cost.events``: the VP9 ``L3T3_KEY`` capture looped
through a bottleneck that narrows and widens, random loss, reordering, probe clusters,
sequence numbers wrapping, feedback built by the project's own ``TransportFeedbackBuilder``
and fed through ``SendSideCongestion.on_transport_feedback``.  The fixtures were recorded
at 0f66998 with::

    tests/fixtures/feedback_trajectory.json   trajectory(events(20.0)) (one report a line)
    tests/fixtures/feedback_mangled.json      _mangled(events(10.0))

The comparison is exact: the array implementation does the same floating-point operations
in the same order where the result depends on it (running sums are sequential, as
``numpy.cumsum`` is; only integer sums are reordered), so there is no tolerance to justify.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from loadtest.feedback_cost import FEEDBACK, FIRST_SEQUENCE, RTT, SEND, events, trajectory
from sfu.bwe import BandwidthEstimator
from sfu.rtp.twcc import parse_transport_feedback

FIXTURES = Path(__file__).parent / "fixtures"


def _mangled(sequence: list[Any]) -> list[list[Any]]:
    """The estimator fed lists (its other entry point): every report shuffled, and its
    first half delivered again (duplicates, packets reported lost then received)."""
    rng = random.Random(3)
    estimator = BandwidthEstimator(initial_bitrate=2_500_000)
    seq = FIRST_SEQUENCE
    out: list[list[Any]] = []
    for event in sequence:
        if event.kind == SEND:
            estimator.on_packet_sent(seq & 0xFFFF, event.value, event.at, event.cluster)
            seq += 1
        elif event.kind == FEEDBACK:
            packets = parse_transport_feedback(event.fci).packets
            shuffled = packets[:]
            rng.shuffle(shuffled)
            estimator.on_feedback(shuffled, event.at)
            estimator.on_feedback(packets[: len(packets) // 2], event.at + 0.001)
            out.append(
                [
                    estimator.estimate,
                    estimator.loss_ratio,
                    estimator.acknowledged_bitrate,
                    estimator.standing_delay,
                    estimator.state,
                ]
            )
        elif event.kind == RTT:
            estimator.on_rtt(event.value / 1e6)
    return out


def test_the_estimate_trajectory_is_the_per_packet_implementations() -> None:
    recorded = json.loads((FIXTURES / "feedback_trajectory.json").read_text())
    now = trajectory(events(recorded["seconds"]))
    assert len(now["reports"]) == len(recorded["reports"]) == 401
    for mine, theirs in zip(now["reports"], recorded["reports"], strict=True):
        assert mine == theirs, (mine, theirs)
    assert now["probes"] == recorded["probes"]


def test_the_sequence_exercises_every_part() -> None:
    """What the fixture covers: the detector's three states, the loss-based limit engaged
    and released, probes measured, heavy loss, a standing queue."""
    recorded = json.loads((FIXTURES / "feedback_trajectory.json").read_text())
    reports = recorded["reports"]
    assert {r[8] for r in reports} == {"normal", "overusing", "underusing"}
    assert any(r[3] is None for r in reports[100:]) and any(r[3] is not None for r in reports)
    assert max(r[6] for r in reports) > 0.3 and max(r[7] for r in reports) > 0.1
    assert sum(p[2] is not None for p in recorded["probes"]) == 2


def test_lists_shuffled_and_repeated_give_the_per_packet_implementations_estimates() -> None:
    recorded = json.loads((FIXTURES / "feedback_mangled.json").read_text())
    assert _mangled(events(10.0)) == recorded
