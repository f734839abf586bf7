"""``feedback-cost``: what a subscriber's transport-wide feedback costs the server, in process:
CPU microseconds per feedback report and per packet reported, through
:meth:`~sfu.forwarding.congestion.SendSideCongestion.on_transport_feedback` (parsing, the
estimator) -- and per packet sent (the estimator's send history).

The sequence is deterministic and open loop (what is sent does not follow the estimate, so
every build of the estimator gets the same input): the packets of the committed VP9
``L3T3_KEY`` capture (about 2.1 Mbit/s), looped, at the capture's times and sizes, with
three probe clusters of padding on top; through a FIFO bottleneck of 3 Mbit/s, 1.2 Mbit/s
from 6 s (the queue fills, tail drop beyond 150 ms), 5 Mbit/s from 12 s; 1 % random loss,
0.5 % of the packets held back 15 ms (reordered: reported lost, then received); feedback
every 50 ms built by :class:`~sfu.rtp.twcc.TransportFeedbackBuilder`, arriving 20 ms later;
the round trip every second, the probe results 0.4 s after each cluster.
:func:`trajectory` is what ``tests/test_feedback_equivalence.py`` holds every build to.

::

    python -m loadtest feedback-cost                 # 20 s of feedback, best of 7 runs
    python -m loadtest feedback-cost --seconds 60 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from dataclasses import dataclass
from typing import Any

from sfu.forwarding.congestion import SendSideCongestion
from sfu.rtp import rtcp
from sfu.rtp.twcc import TransportFeedbackBuilder

from .capturefile import read_capture
from .scenario import CAPTURES, VIDEO_CAPTURES

CAPTURE = CAPTURES / VIDEO_CAPTURES["VP9"]
FIRST_SEQUENCE = 65_000  # wraps within the first second
BASE_DELAY = 0.02
MAX_QUEUE_DELAY = 0.15
FEEDBACK_INTERVAL = 0.05
RECEIVER_CLOCK_OFFSET = 1234.5
#: (from, bits/s)
CAPACITY = [(0.0, 3_000_000), (6.0, 1_200_000), (12.0, 5_000_000)]
#: (start, cluster id): 20 padding packets of 1200 bytes at 3 Mbit/s
PROBES = [(3.0, 1), (9.0, 2), (15.0, 3)]
PROBE_PACKETS = 20
PROBE_RATE = 3_000_000
PADDING_SIZE = 1200
LOSS = 0.01
REORDER = 0.005
REORDER_DELAY = 0.015

SEND, FEEDBACK, RTT, PROBE_RESULT = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: int
    #: SEND: size; RTT: microseconds; PROBE_RESULT: cluster
    value: int = 0
    #: SEND: the probe cluster, -1: none
    cluster: int = -1
    fci: bytes = b""


def _capacity(t: float) -> float:
    rate = CAPACITY[0][1]
    for start, value in CAPACITY:
        if t >= start:
            rate = value
    return rate


def events(seconds: float = 20.0, seed: int = 1) -> list[Event]:
    """The deterministic sequence of sends, feedback deliveries, round trips and probe
    result reads, in time order."""
    capture = read_capture(CAPTURE)
    length = capture.packets[-1][0] + 1 / 30
    sends: list[tuple[float, int, int]] = []  # (time, size, cluster)
    loop = 0
    while loop * length < seconds:
        for at, data in capture.packets:
            t = loop * length + at
            if t < seconds:
                sends.append((t, len(data), -1))
        loop += 1
    for start, cluster in PROBES:
        for i in range(PROBE_PACKETS):
            sends.append((start + i * PADDING_SIZE * 8 / PROBE_RATE, PADDING_SIZE, cluster))
    sends.sort(key=lambda s: s[0])
    # media sent during a cluster is tagged with it too, as the server does
    spans = {c: (s, s + (PROBE_PACKETS - 1) * PADDING_SIZE * 8 / PROBE_RATE) for s, c in PROBES}
    for i, (t, size, cluster) in enumerate(sends):
        for c, (first, last) in spans.items():
            if cluster < 0 and first <= t <= last:
                sends[i] = (t, size, c)

    rng = random.Random(seed)
    busy_until = 0.0
    last_arrival = 0.0
    arrivals: list[tuple[float, int]] = []  # (arrival, sequence number)
    out: list[Event] = []
    sequence = FIRST_SEQUENCE
    for t, size, cluster in sends:
        out.append(Event(t, SEND, size, cluster))
        seq = sequence & 0xFFFF
        sequence += 1
        if rng.random() < LOSS:
            continue
        start = max(t, busy_until)
        if start - t > MAX_QUEUE_DELAY:
            continue
        busy_until = start + size * 8 / _capacity(t)
        arrival = max(busy_until + BASE_DELAY, last_arrival)
        last_arrival = arrival
        if rng.random() < REORDER:
            arrival += REORDER_DELAY  # not holding back the ones behind it
        arrivals.append((arrival, seq))
    arrivals.sort()

    builder = TransportFeedbackBuilder(1, 2)
    index = 0
    tick = FEEDBACK_INTERVAL
    while tick < seconds + 0.2:
        while index < len(arrivals) and arrivals[index][0] <= tick:
            arrival, seq = arrivals[index]
            builder.on_packet(seq, arrival + RECEIVER_CLOCK_OFFSET)
            index += 1
        for data in builder.build():
            (feedback,) = rtcp.parse_rtcp(data)
            assert isinstance(feedback, rtcp.TransportFeedback)
            out.append(Event(tick + BASE_DELAY, FEEDBACK, fci=feedback.fci))
        tick = round(tick + FEEDBACK_INTERVAL, 6)
    second = 1.0
    while second < seconds:
        out.append(Event(second, RTT, 40_000 + 10_000 * (int(second) % 3)))
        second += 1.0
    for start, cluster in PROBES:
        out.append(Event(start + 0.4, PROBE_RESULT, cluster))
    out.sort(key=lambda e: (e.at, e.kind))  # sends before feedback at the same time
    return out


def _congestion() -> SendSideCongestion:
    congestion = SendSideCongestion()
    congestion.sequence_number = FIRST_SEQUENCE
    return congestion


def trajectory(sequence: list[Event]) -> dict[str, list[Any]]:
    """The estimator's outputs after each feedback report and each probe result."""
    congestion = _congestion()
    estimator = congestion.estimator
    reports: list[list[Any]] = []
    probes: list[list[Any]] = []
    for event in sequence:
        if event.kind == SEND:
            congestion.probe_cluster = event.cluster
            congestion.stamp(event.value, event.at)
        elif event.kind == FEEDBACK:
            congestion.on_transport_feedback(event.fci, event.at)
            reports.append(
                [
                    event.at,
                    estimator.estimate,
                    estimator.delay_based_estimate,
                    estimator.loss_based_estimate,
                    estimator.acknowledged_bitrate,
                    estimator.acknowledged_sample,
                    estimator.loss_ratio,
                    estimator.standing_delay,
                    estimator.state,
                ]
            )
        elif event.kind == RTT:
            congestion.on_rtt(event.value / 1e6)
        else:
            result = estimator.probe_result(event.value)
            if result is not None:
                estimator.on_probe_result(result, event.at)
            probes.append([event.at, event.value, result, estimator.estimate])
    return {"reports": reports, "probes": probes}


def run(sequence: list[Event]) -> dict[str, float]:
    """CPU seconds (this thread's) of the feedback, and of the rest (the sends, mostly)."""
    congestion = _congestion()
    stamp = congestion.stamp
    on_feedback = congestion.on_transport_feedback
    on_rtt = congestion.on_rtt
    estimator = congestion.estimator
    feedback_seconds = 0.0
    reports = reported = sent = 0
    gc.collect()
    clock = time.thread_time
    begin = clock()
    for event in sequence:
        kind = event.kind
        if kind == SEND:
            congestion.probe_cluster = event.cluster
            stamp(event.value, event.at)
            sent += 1
        elif kind == FEEDBACK:
            start = clock()
            on_feedback(event.fci, event.at)
            feedback_seconds += clock() - start
            reports += 1
            reported += (event.fci[2] << 8) | event.fci[3]  # packet status count
        elif kind == RTT:
            on_rtt(event.value / 1e6)
        else:
            result = estimator.probe_result(event.value)
            if result is not None:
                estimator.on_probe_result(result, event.at)
    total = clock() - begin
    return {
        "reports": reports,
        "reported": reported,
        "sent": sent,
        "feedback_seconds": feedback_seconds,
        "rest_seconds": total - feedback_seconds,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="of the sequence")
    parser.add_argument("--runs", type=int, default=7, help="timed runs (best is reported)")


def command(args: argparse.Namespace) -> int:
    sequence = events(args.seconds)
    best: dict[str, float] | None = None
    for i in range(args.runs):
        result = run(sequence)
        per_report = 1e6 * result["feedback_seconds"] / result["reports"]
        per_packet = 1e6 * result["feedback_seconds"] / result["reported"]
        per_sent = 1e6 * result["rest_seconds"] / result["sent"]
        print(
            f"run {i + 1}: {result['reports']} reports of {result['reported']} packets: "
            f"{per_report:.1f} us/report, {per_packet:.2f} us/reported packet; "
            f"the rest (sends) {per_sent:.2f} us/sent packet",
            flush=True,
        )
        if best is None or result["feedback_seconds"] < best["feedback_seconds"]:
            best = result
    assert best is not None
    print(
        f"best: {1e6 * best['feedback_seconds'] / best['reports']:.1f} us/report, "
        f"{1e6 * best['feedback_seconds'] / best['reported']:.2f} us/reported packet "
        f"({best['reported'] / best['reports']:.1f} packets/report)"
    )
    return 0
