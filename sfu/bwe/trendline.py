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
        delay_variation = recv_delta - send_delta
        self._num_deltas = min(self._num_deltas + 1, DELTA_COUNTER_MAX)
        if self._first_arrival is None:
            self._first_arrival = arrival_time
        self._accumulated_delay += delay_variation
        self._smoothed_delay = (
            self._smoothing * self._smoothed_delay + (1 - self._smoothing) * self._accumulated_delay
        )
        self._times.append(arrival_time - self._first_arrival)
        self._delays.append(self._smoothed_delay)
        trend = self._previous_trend
        if len(self._times) == self._window_size:
            slope = linear_fit_slope(self._times, self._delays)
            if slope is not None:
                trend = slope
        self._detect(trend, send_delta, arrival_time)
        return self.state

    def _detect(self, trend: float, send_delta: float, now: float) -> None:
        if self._num_deltas < 2:
            self.state = NORMAL
            return
        # The slope is dimensionless; libwebrtc's thresholds are calibrated for this scaling.
        modified_trend = min(self._num_deltas, MIN_NUM_DELTAS) * trend * self._gain
        self.modified_trend = modified_trend
        if modified_trend > self.threshold:
            if self._time_over_using == -1:
                # Assume we have been over-using for half the time since the last sample.
                self._time_over_using = send_delta / 2
            else:
                self._time_over_using += send_delta
            self._overuse_counter += 1
            if (
                self._time_over_using > OVERUSING_TIME_THRESHOLD
                and self._overuse_counter > 1
                and trend >= self._previous_trend
            ):
                self._time_over_using = 0
                self._overuse_counter = 0
                self.state = OVERUSING
        elif modified_trend < -self.threshold:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = UNDERUSING
        else:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = NORMAL
        self._previous_trend = trend
        self._update_threshold(modified_trend, now)

    def _update_threshold(self, modified_trend: float, now: float) -> None:
        """Adaptive threshold, draft section 5.4: gamma(i) = gamma(i-1) +
        dt * K(i) * (|m(i)| - gamma(i-1)), with K_d when |m| < gamma else K_u."""
        if self._last_threshold_update is None:
            self._last_threshold_update = now
        magnitude = abs(modified_trend)
        if magnitude > self.threshold + MAX_ADAPT_OFFSET:
            # Don't adapt to big latency spikes, caused e.g. by a sudden capacity drop.
            self._last_threshold_update = now
            return
        k = K_DOWN if magnitude < self.threshold else K_UP
        dt = min(max(now - self._last_threshold_update, 0.0), 0.1)
        self.threshold += k * (magnitude - self.threshold) * dt
        self.threshold = min(max(self.threshold, MIN_THRESHOLD), MAX_THRESHOLD)
        self._last_threshold_update = now
