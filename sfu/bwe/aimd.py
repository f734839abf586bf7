"""AIMD rate controller of the delay-based estimate.

draft-ietf-rmcat-gcc-02 section 5.5 and libwebrtc's ``AimdRateControl``
(modules/remote_bitrate_estimator/aimd_rate_control.cc) with its ``LinkCapacityEstimator``
(modules/congestion_controller/goog_cc/link_capacity_estimator.cc).

The detector's hypothesis drives a three-state machine::

    overusing  -> Decrease: A = 0.85 * acknowledged bitrate (then Hold)
    underusing -> Hold     (the queue is draining: keep the rate)
    normal     -> Increase (from Hold)

In Increase the rate grows *multiplicatively* (8 %/s) while the link capacity is unknown
("far from convergence"), and *additively* (about one packet per response time, 2 x (RTT +
100 ms)) once overuses have given a capacity estimate and the throughput stays within three
standard deviations of it ("near convergence").  Increases are capped at 1.5 x the
acknowledged bitrate + 10 kbps so that an application-limited sender cannot drive the
estimate up without bound.

Deviation from libwebrtc: an uninterrupted multiplicative ramp speeds up ("ramp-up
acceleration"): its rate doubles every ``RAMP_DOUBLING_TIME`` (1.5 s), from 8 %/s up to
``MAX_RAMP_RATE`` (35 %/s, reached after ~3 s).  libwebrtc relies on active probing to find
capacity that appeared (8 %/s alone needs ~17 s to go from 400 kbps to 1.5 Mbps); without a
prober this keeps that within ~6 s.  The ramp restarts at 8 %/s after any overuse,
underuse or application-limited update, and is not used near convergence (the sawtooth
around a known capacity stays additive).
"""

from __future__ import annotations

import math
from typing import Final

from .trendline import NORMAL, OVERUSING, UNDERUSING

HOLD: Final = "hold"
INCREASE: Final = "increase"
DECREASE: Final = "decrease"

#: An acknowledged rate below this fraction of the estimate is application limited.
APPLICATION_LIMITED = 0.5
#: Multiplicative decrease factor beta, applied to the acknowledged bitrate.
BACKOFF_FACTOR = 0.85
#: ... after a sudden drop (see update's ``saturated``)
SATURATED_BACKOFF_FACTOR = 0.7
#: Multiplicative increase far from convergence: 8 % per second.
MULTIPLICATIVE_RATE = 0.08
#: Ramp-up acceleration: the multiplicative rate doubles every this many seconds ...
RAMP_DOUBLING_TIME = 1.5
#: ... up to this rate (per second).
MAX_RAMP_RATE = 0.35
#: Increase limit relative to the acknowledged bitrate (+ ``INCREASE_LIMIT_OFFSET``).
MAX_INCREASE_FACTOR = 1.5
INCREASE_LIMIT_OFFSET = 10_000.0
DEFAULT_RTT = 0.2
#: The overuse detector needs about this long to react (seconds).
DETECTOR_RESPONSE_TIME = 0.1
MIN_ADDITIVE_RATE = 4_000.0
PACKET_SIZE_BITS = 1200 * 8
FRAME_RATE = 30.0


class LinkCapacityEstimator:
    """Running estimate of the link capacity from the throughput at overuse (alpha 0.05)
    and its normalised variance; its bounds decide between additive and multiplicative
    increase."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation = 0.4

    def reset(self) -> None:
        self.estimate_kbps = None

    def upper_bound(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + 3 * self._deviation_kbps()) * 1000

    def lower_bound(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - 3 * self._deviation_kbps()) * 1000

    def on_overuse(self, acknowledged_bitrate: float) -> None:
        self._update(acknowledged_bitrate / 1000, 0.05)

    def _update(self, sample_kbps: float, alpha: float) -> None:
        if self.estimate_kbps is None:
            self.estimate_kbps = sample_kbps
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * sample_kbps
        norm = max(self.estimate_kbps, 1.0)
        error = self.estimate_kbps - sample_kbps
        self._deviation = (1 - alpha) * self._deviation + alpha * error * error / norm
        self._deviation = min(max(self._deviation, 0.4), 2.5)

    def _deviation_kbps(self) -> float:
        assert self.estimate_kbps is not None
        return math.sqrt(self._deviation * self.estimate_kbps)


class AimdRateControl:
    """The delay-based estimate A_r (bits/s), updated from detector hypotheses."""

    def __init__(self, initial_bitrate: float, min_bitrate: float, max_bitrate: float) -> None:
        self.min_bitrate = float(min_bitrate)
        self.max_bitrate = float(max_bitrate)
        self.bitrate = self._clamp(float(initial_bitrate))
        self.state: str = HOLD
        self.rtt = DEFAULT_RTT
        self.link_capacity = LinkCapacityEstimator()
        self._latest_throughput: float = self.bitrate
        self._last_change: float | None = None
        self._ramp_start: float | None = None

    def _clamp(self, bitrate: float) -> float:
        return min(max(bitrate, self.min_bitrate), self.max_bitrate)

    def set_estimate(self, bitrate: float, now: float) -> None:
        """Force the estimate (start bitrate, probe result, halving before any throughput)."""
        self.bitrate = self._clamp(bitrate)
        self._last_change = now

    def time_to_reduce_further(self, now: float, throughput: float) -> bool:
        """Whether a continued overuse may cut the rate again: once per RTT (clamped to
        10-200 ms), or at once if the throughput fell below half the estimate."""
        interval = min(max(self.rtt, 0.01), 0.2)
        if self._last_change is None or now - self._last_change >= interval:
            return True
        return throughput < 0.5 * self.bitrate

    def update(
        self, usage: str, throughput: float | None, now: float, saturated: bool = False
    ) -> float:
        """Apply one detector hypothesis with the current acknowledged bitrate.
        ``saturated``: the throughput is known to be what the link carries (a full queue),
        however far below the estimate."""
        if throughput is not None:
            self._latest_throughput = throughput
        throughput = self._latest_throughput
        self._change_state(usage, now)
        new_bitrate: float | None = None
        if self.state == INCREASE:
            if throughput > self.link_capacity.upper_bound():
                self.link_capacity.reset()  # far above what we knew: capacity has changed
            limit = MAX_INCREASE_FACTOR * throughput + INCREASE_LIMIT_OFFSET
            if self.bitrate >= limit:
                self._ramp_start = None  # application limited: the ramp proves nothing
            else:
                if self.link_capacity.estimate_kbps is not None:
                    self._ramp_start = None
                    increased = self.bitrate + self._additive_increase(now)
                else:
                    increased = self.bitrate + self._multiplicative_increase(now)
                new_bitrate = min(increased, limit)
            self._last_change = now
        elif self.state == DECREASE:
            if throughput < APPLICATION_LIMITED * self.bitrate and not saturated:
                # the sender sends far less than the estimate (its layers fit below it): the
                # acknowledged rate measures the sender, not the link, and backing off to it
                # would collapse the estimate after one burst; back off from the estimate
                decreased = self.bitrate * BACKOFF_FACTOR
            elif saturated:
                # a sudden drop: the link's queue is full and must drain before what the
                # lower layers send gets through at once (at 0.85 a 150 ms queue took a
                # second to drain, and the link stayed lossy that long)
                decreased = throughput * SATURATED_BACKOFF_FACTOR
            else:
                decreased = throughput * BACKOFF_FACTOR
            if decreased > 5_000:
                decreased -= 5_000  # a bit below the throughput, to drain self-inflicted delay
            if decreased > self.bitrate and self.link_capacity.estimate_kbps is not None:
                decreased = BACKOFF_FACTOR * self.link_capacity.estimate_kbps * 1000
            if decreased < self.bitrate:
                new_bitrate = decreased  # never increase on overuse
            if throughput < self.link_capacity.lower_bound():
                self.link_capacity.reset()
            self.link_capacity.on_overuse(throughput)
            self.state = HOLD  # hold until the queue has drained
            self._last_change = now
            self._ramp_start = None
        if new_bitrate is not None:
            self.bitrate = self._clamp(new_bitrate)
        return self.bitrate

    def _change_state(self, usage: str, now: float) -> None:
        if usage == NORMAL:
            if self.state == HOLD:
                self._last_change = now
                self.state = INCREASE
        elif usage == OVERUSING:
            self.state = DECREASE
        elif usage == UNDERUSING:
            self.state = HOLD
            self._ramp_start = None

    def _multiplicative_increase(self, now: float) -> float:
        """eta = (1 + rate)^min(dt, 1 s), draft section 5.5; rate is 8 %/s, accelerated
        while the ramp goes on uninterrupted."""
        if self._ramp_start is None:
            self._ramp_start = now
        ramp_time = now - self._ramp_start
        acceleration = math.pow(2.0, ramp_time / RAMP_DOUBLING_TIME)
        rate = min(MULTIPLICATIVE_RATE * acceleration, MAX_RAMP_RATE)
        dt = 1.0 if self._last_change is None else min(max(now - self._last_change, 0.0), 1.0)
        return max(self.bitrate * (math.pow(1 + rate, dt) - 1), 1_000.0 * dt)

    def _additive_increase(self, now: float) -> float:
        """About one average packet per response time 2 x (RTT + 100 ms), draft 5.5."""
        frame_bits = self.bitrate / FRAME_RATE
        packets_per_frame = math.ceil(frame_bits / PACKET_SIZE_BITS)
        average_packet_bits = frame_bits / packets_per_frame
        response_time = 2 * (self.rtt + DETECTOR_RESPONSE_TIME)
        rate = max(MIN_ADDITIVE_RATE, average_packet_bits / response_time)
        dt = 0.0 if self._last_change is None else max(now - self._last_change, 0.0)
        return rate * dt
