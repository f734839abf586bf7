"""What a viewer reports of one video it receives, and what the server makes of it.

Sans-IO: fed the viewer's reports (cumulative counters, as the browser's ``getStats()``
gives them) and a clock; returns the deltas operators count and the receiver-CPU fit's cap.
A report is bounded by the wire schema; here it is bounded in rate (one per
``MIN_INTERVAL`` per track is used) and believed only where it cannot hurt anyone but the
viewer who sent it.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .cpu_fit import Level, ReceiverCpuFit


@dataclass(slots=True)
class ViewerFigures:
    """One report of one track, in ``getStats()`` ``inbound-rtp`` names (snake_case)."""

    frames_decoded: int
    frames_dropped: int
    frames_per_second: float | None = None
    frame_width: int | None = None
    frame_height: int | None = None
    freeze_count: int | None = None
    total_freezes_duration: float | None = None
    jitter_buffer_delay: float | None = None
    jitter_buffer_emitted_count: int | None = None
    element_width: int | None = None
    element_height: int | None = None


@dataclass(slots=True)
class ReportOutcome:
    """What one report changed: the cap (and whether it moved), and the figures' deltas
    since the last report used (0 after a counter reset)."""

    cap: Level | None
    cap_changed: bool
    decoded: int = 0
    dropped: int = 0
    freezes: int = 0
    freeze_seconds: float = 0.0
    first_frame: float | None = None
    switch_paints: list[float] = field(default_factory=list)


def _delta(new: float | None, old: float | None) -> float:
    if new is None or old is None or new < old:
        return 0
    return new - old


class ViewerQuality:
    #: reports of one track closer together than this are not used (the client sends one
    #: every 1-2 s)
    MIN_INTERVAL = 0.5

    def __init__(self, fit: ReceiverCpuFit | None = None) -> None:
        self.fit = fit if fit is not None else ReceiverCpuFit()
        #: the CPU fit acts (the room's policy may turn it off; the figures are kept)
        self.fit_enabled = True
        self.latest: ViewerFigures | None = None
        self.reported_at: float | None = None
        self.first_frame: float | None = None
        self.reports = 0
        #: reports not used: too soon after the previous one
        self.ignored = 0

    def on_report(
        self,
        now: float,
        figures: ViewerFigures,
        *,
        current: Level | None,
        spatial_layers: int,
        temporal_layers: int,
        first_frame: float | None = None,
        switch_paints: Iterable[float] = (),
    ) -> ReportOutcome | None:
        """``current``: the level the viewer receives now (None: paused or not started).
        None when the report came too soon and was not used."""
        if self.reported_at is not None and now - self.reported_at < self.MIN_INTERVAL:
            self.ignored += 1
            return None
        previous = self.latest
        before = self.fit.cap
        cap = (
            self.fit.on_report(
                now,
                figures.frames_decoded,
                figures.frames_dropped,
                current,
                spatial_layers,
                temporal_layers,
            )
            if self.fit_enabled
            else None
        )
        outcome = ReportOutcome(cap, cap != before)
        if previous is not None:
            outcome.decoded = int(_delta(figures.frames_decoded, previous.frames_decoded))
            outcome.dropped = int(_delta(figures.frames_dropped, previous.frames_dropped))
            outcome.freezes = int(_delta(figures.freeze_count, previous.freeze_count))
            outcome.freeze_seconds = float(
                _delta(figures.total_freezes_duration, previous.total_freezes_duration)
            )
        if first_frame is not None and self.first_frame is None:
            self.first_frame = first_frame
            outcome.first_frame = first_frame
        outcome.switch_paints = list(switch_paints)
        self.latest = figures
        self.reported_at = now
        self.reports += 1
        return outcome

    def disable_fit(self) -> Level | None:
        """The policy turned the fit off: the cap goes (returns the cap there was)."""
        self.fit_enabled = False
        cap = self.fit.cap
        self.fit.reset()
        return cap

    def stats(self, now: float) -> dict[str, object] | None:
        """The latest figures for ``/stats`` (None before the first report)."""
        latest = self.latest
        if latest is None or self.reported_at is None:
            return None
        fit = self.fit
        return {
            "decoded_frames": latest.frames_decoded,
            "dropped_frames": latest.frames_dropped,
            "frames_per_second": latest.frames_per_second,
            "frame_width": latest.frame_width,
            "frame_height": latest.frame_height,
            "freeze_count": latest.freeze_count,
            "total_freezes_duration": latest.total_freezes_duration,
            "jitter_buffer_delay": (
                latest.jitter_buffer_delay / latest.jitter_buffer_emitted_count
                if latest.jitter_buffer_delay is not None and latest.jitter_buffer_emitted_count
                else None
            ),
            "element_width": latest.element_width,
            "element_height": latest.element_height,
            "first_frame": self.first_frame,
            "dropped_share": fit.dropped_share,
            "cpu_cap": list(fit.cap) if fit.cap is not None else None,
            "cpu_hold": fit.hold,
            "reports": self.reports,
            "reports_ignored": self.ignored + fit.rejected,
            "reported_ago": round(now - self.reported_at, 3),
        }


class Samples:
    """The latest ``size`` values of a figure (seconds), for a median and a p95."""

    def __init__(self, size: int = 512) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self.values.append(value)
        self.count += 1

    def summary(self) -> dict[str, float | int | None]:
        values = sorted(self.values)
        if not values:
            return {"count": 0, "median": None, "p95": None}
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        return {"count": self.count, "median": statistics.median(values), "p95": p95}


class RoomQuality:
    """The viewers' figures of one room, aggregated: time to first frame and the time from
    a level change to its first painted frame."""

    def __init__(self) -> None:
        self.first_frame = Samples()
        self.switch_paint = Samples()

    def add(self, outcome: ReportOutcome) -> None:
        if outcome.first_frame is not None:
            self.first_frame.add(outcome.first_frame)
        for value in outcome.switch_paints:
            self.switch_paint.add(value)

    def stats(self) -> dict[str, object]:
        return {
            "first_frame": self.first_frame.summary(),
            "switch_paint": self.switch_paint.summary(),
        }
