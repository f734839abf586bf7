"""Trendline filter and adaptive-threshold overuse detector.

draft-ietf-rmcat-gcc-02 section 5.3-5.4 estimates the queuing delay gradient m(i) with a
Kalman filter; libwebrtc replaced it with the *trendline* filter
(modules/congestion_controller/goog_cc/trendline_estimator.cc), implemented here:

* the inter-group delay variations d(i) are accumulated into a delay curve, smoothed with
  an exponential filter (coefficient 0.9);
* a least-squares line is fitted through the last ``window_size`` (20) points of
  (arrival time, smoothed accumulated delay); its slope is ~ (send rate - capacity) /
  capacity: positive while a queue builds, negative while it drains;
* the slope, scaled by ``min(num_deltas, 60) * threshold_gain``, is compared to an adaptive
  threshold gamma(i) (section 5.4): above for at least 10 ms (and two samples) with a
  non-decreasing trend -> "overusing"; below ``-gamma`` -> "underusing"; else "normal".
* gamma follows |m(i)| with gain K_u = 0.0087/ms when rising and K_d = 0.039/ms when
  falling, clamped to [6, 600], and is not adapted to spikes far above it.
"""

from __future__ import annotations

from collections import deque
from typing import Final

NORMAL: Final = "normal"
OVERUSING: Final = "overusing"
UNDERUSING: Final = "underusing"

WINDOW_SIZE = 20
SMOOTHING_COEFFICIENT = 0.9
THRESHOLD_GAIN = 4.0
#: Initial adaptive threshold gamma(0) (in units of the modified trend, "ms").
INITIAL_THRESHOLD = 12.5
#: Threshold adaptation gains, per second (libwebrtc: 0.0087 and 0.039 per ms).
K_UP = 8.7
K_DOWN = 39.0
#: Modified trends further than this above the threshold do not adapt it.
MAX_ADAPT_OFFSET = 15.0
MIN_THRESHOLD = 6.0
MAX_THRESHOLD = 600.0
#: Overuse must persist this long (seconds of send time) before it is signalled.
OVERUSING_TIME_THRESHOLD = 0.010
MIN_NUM_DELTAS = 60
DELTA_COUNTER_MAX = 1000


def linear_fit_slope(xs: deque[float], ys: deque[float]) -> float | None:
    """Least-squares slope of the points ``(xs[i], ys[i])``, None if all x are equal."""
    n = len(xs)
    x_avg = sum(xs) / n
    y_avg = sum(ys) / n
    numerator = 0.0
    denominator = 0.0
    for x, y in zip(xs, ys, strict=True):
        dx = x - x_avg
        numerator += dx * (y - y_avg)
        denominator += dx * dx
    if denominator == 0:
        return None
    return numerator / denominator


class TrendlineEstimator:
    """Delay-gradient estimate and bandwidth usage hypothesis from inter-group deltas."""

    def __init__(
        self,
        window_size: int = WINDOW_SIZE,
        smoothing_coefficient: float = SMOOTHING_COEFFICIENT,
        threshold_gain: float = THRESHOLD_GAIN,
    ) -> None:
        self._window_size = window_size
        self._smoothing = smoothing_coefficient
        self._gain = threshold_gain
        self._num_deltas = 0
        self._first_arrival: float | None = None
        self._accumulated_delay = 0.0
        self._smoothed_delay = 0.0
        #: the last ``window_size`` points: arrival time, smoothed accumulated delay
        self._times: deque[float] = deque(maxlen=window_size)
        self._delays: deque[float] = deque(maxlen=window_size)
        self.threshold = INITIAL_THRESHOLD
        self._last_threshold_update: float | None = None
        self._previous_trend = 0.0
        self.modified_trend = 0.0
        self._time_over_using = -1.0
        self._overuse_counter = 0
        self.state: str = NORMAL

    def update(self, recv_delta: float, send_delta: float, arrival_time: float) -> str:
        """Add one inter-group delta (seconds) for the group completed at ``arrival_time``
        (receiver clock, seconds); returns the new hypothesis."""
        return self.update_many([(send_delta, recv_delta, 0, arrival_time)])

    def update_many(self, deltas: list[tuple[float, float, int, float]]) -> str:
        """:meth:`update` for each (send delta, arrival delta, size delta (unused), arrival
        time) in turn, as :meth:`.InterArrival.compute_many` gives them; returns the
        hypothesis after the last.

        (For the groups of every feedback report: the state is in locals, and the detector
        and threshold adaptation inlined; the same floating-point operations in the same
        order as one update at a time.)"""
        num_deltas = self._num_deltas
        first_arrival = self._first_arrival
        accumulated = self._accumulated_delay
        smoothed = self._smoothed_delay
        times, delays = self._times, self._delays
        window_size = self._window_size
        smoothing = self._smoothing
        gain = self._gain
        threshold = self.threshold
        last_threshold_update = self._last_threshold_update
        previous_trend = self._previous_trend
        modified_trend = self.modified_trend
        time_over_using = self._time_over_using
        overuse_counter = self._overuse_counter
        state = self.state
        for send_delta, recv_delta, _, arrival_time in deltas:
            if num_deltas < DELTA_COUNTER_MAX:
                num_deltas += 1
            if first_arrival is None:
                first_arrival = arrival_time
            accumulated += recv_delta - send_delta
            smoothed = smoothing * smoothed + (1 - smoothing) * accumulated
            times.append(arrival_time - first_arrival)
            delays.append(smoothed)
            trend = previous_trend
            if len(times) == window_size:
                slope = linear_fit_slope(times, delays)
                if slope is not None:
                    trend = slope
            # the overuse detector
            if num_deltas < 2:
                state = NORMAL
                continue
            # The slope is dimensionless; libwebrtc's thresholds are calibrated for this
            # scaling.
            modified_trend = (
                (num_deltas if num_deltas < MIN_NUM_DELTAS else MIN_NUM_DELTAS) * trend * gain
            )
            if modified_trend > threshold:
                if time_over_using == -1:
                    # Assume we have been over-using for half the time since the last sample.
                    time_over_using = send_delta / 2
                else:
                    time_over_using += send_delta
                overuse_counter += 1
                if (
                    time_over_using > OVERUSING_TIME_THRESHOLD
                    and overuse_counter > 1
                    and trend >= previous_trend
                ):
                    time_over_using = 0
                    overuse_counter = 0
                    state = OVERUSING
            elif modified_trend < -threshold:
                time_over_using = -1
                overuse_counter = 0
                state = UNDERUSING
            else:
                time_over_using = -1
                overuse_counter = 0
                state = NORMAL
            previous_trend = trend
            # the adaptive threshold, draft section 5.4: gamma(i) = gamma(i-1) +
            # dt * K(i) * (|m(i)| - gamma(i-1)), with K_d when |m| < gamma else K_u; not
            # adapted to big latency spikes (e.g. caused by a sudden capacity drop).  The
            # clamps as min() and max() would (the first argument unless the other is past
            # it)
            if last_threshold_update is None:
                last_threshold_update = arrival_time
            magnitude = abs(modified_trend)
            if not magnitude > threshold + MAX_ADAPT_OFFSET:
                k = K_DOWN if magnitude < threshold else K_UP
                dt = arrival_time - last_threshold_update
                if 0.0 > dt:
                    dt = 0.0
                if dt > 0.1:
                    dt = 0.1
                threshold += k * (magnitude - threshold) * dt
                if MIN_THRESHOLD > threshold:
                    threshold = MIN_THRESHOLD
                if MAX_THRESHOLD < threshold:
                    threshold = MAX_THRESHOLD
            last_threshold_update = arrival_time
        self._num_deltas = num_deltas
        self._first_arrival = first_arrival
        self._accumulated_delay = accumulated
        self._smoothed_delay = smoothed
        self.threshold = threshold
        self._last_threshold_update = last_threshold_update
        self._previous_trend = previous_trend
        self.modified_trend = modified_trend
        self._time_over_using = time_over_using
        self._overuse_counter = overuse_counter
        self.state = state
        return state
