"""Acknowledged bitrate: what the receiver actually got, from transport feedback.

libwebrtc's ``BitrateEstimator`` (modules/congestion_controller/goog_cc/bitrate_estimator.cc,
used by ``AcknowledgedBitrateEstimator``): bytes are summed over windows of receive time
(500 ms for the first sample, 150 ms after) and each window's rate is merged into a Bayesian
estimate whose sample variance grows with the distance from the current estimate, so that
single odd windows barely move it while a sustained change goes through within a second or
so.  This is R_hat of draft-ietf-rmcat-gcc-02 section 5.5.
"""

from __future__ import annotations

INITIAL_WINDOW = 0.5
WINDOW = 0.15
UNCERTAINTY_SCALE = 10.0
#: Process noise added to the estimate variance per sample (kbps^2).
PROCESS_VARIANCE = 5.0
INITIAL_VARIANCE = 50.0


class AcknowledgedBitrateEstimator:
    """Bits/s received by the peer, fed packet arrivals in receive-time order."""

    def __init__(self) -> None:
        self._sum = 0
        self._window_time = 0.0
        self._previous_time: float | None = None
        self._estimate_kbps: float | None = None
        self._variance = INITIAL_VARIANCE
        self._last_sample_kbps: float | None = None

    @property
    def last_sample(self) -> float | None:
        """Bits/s received over the last complete window alone (unfiltered), None before."""
        return None if self._last_sample_kbps is None else self._last_sample_kbps * 1000

    @property
    def bitrate(self) -> float | None:
        """The estimate in bits/s, None before the first full window."""
        return None if self._estimate_kbps is None else self._estimate_kbps * 1000

    def update(self, arrival_time: float, size: int) -> None:
        """A packet of ``size`` bytes arrived at ``arrival_time`` (receiver clock, s)."""
        self.update_many([arrival_time], [size])

    def update_many(self, arrival_times: list[float], sizes: list[int]) -> None:
        """Packets of ``sizes`` bytes arrived at ``arrival_times``, in receive-time order (a
        report's packets at once: the state is in locals, no call per packet)."""
        total = self._sum
        window_time = self._window_time
        previous = self._previous_time
        estimate = self._estimate_kbps
        window = INITIAL_WINDOW if estimate is None else WINDOW
        for now, size in zip(arrival_times, sizes, strict=True):
            if previous is not None:
                if now < previous:
                    now = previous  # reordered arrival: count its bytes in the current window
                elapsed = now - previous
                window_time += elapsed
                if elapsed > window:
                    # Nothing received for a whole window: start over.
                    total = 0
                    window_time %= window
            previous = now
            if not window_time >= window:
                total += size
                continue
            sample_kbps = 8 * total / window / 1000
            window_time -= window
            total = size
            self._last_sample_kbps = sample_kbps
            if estimate is None:
                estimate = sample_kbps
                window = WINDOW
                continue
            uncertainty = UNCERTAINTY_SCALE * abs(estimate - sample_kbps) / max(estimate, 1e-3)
            sample_variance = uncertainty * uncertainty
            predicted_variance = self._variance + PROCESS_VARIANCE
            estimate = (sample_variance * estimate + predicted_variance * sample_kbps) / (
                sample_variance + predicted_variance
            )
            self._variance = (
                sample_variance * predicted_variance / (sample_variance + predicted_variance)
            )
        self._sum = total
        self._window_time = window_time
        self._previous_time = previous
        self._estimate_kbps = estimate
