"""Receiver-CPU fit: a viewer whose machine cannot keep up (it drops a large share of the
frames it decodes) gets lower layers, whatever its bandwidth allows.

The rule, after the adaptive-streaming proposals this project builds on: when the frames a
viewer dropped exceed ``threshold`` x the frames it decoded over ``window`` seconds, its cap
steps one rung down the ladder (spatial layers first, temporal layers once at the bottom
spatial layer), from the level it receives; the cap holds, and after ``hold`` seconds without
overload it is tried one rung up.  An up-step followed by overload within ``FAILED_UP``
seconds doubles the hold (to ``MAX_HOLD``); a later overload starts afresh.

Sans-IO: fed the viewer's cumulative counters, the level it receives and a clock; it returns
the cap (``None``: no cap).  A report can only lower a level within the stream's own layers,
never raise one beyond what the other inputs allow, so a lying viewer only hurts itself.
"""

from __future__ import annotations

from collections import deque

Level = tuple[int, int]


def ladder(spatial_layers: int, temporal_layers: int) -> list[Level]:
    """The caps from none to the lowest: (S, T), (S-1, T) ... (0, T), (0, T-1) ... (0, 0)."""
    top_s, top_t = max(0, spatial_layers - 1), max(0, temporal_layers - 1)
    rungs = [(s, top_t) for s in range(top_s, -1, -1)]
    rungs += [(0, t) for t in range(top_t - 1, -1, -1)]
    return rungs


def capped(level: Level, cap: Level | None) -> Level:
    if cap is None:
        return level
    return min(level[0], cap[0]), min(level[1], cap[1])


class ReceiverCpuFit:
    #: fewer frames than this decoded in a window say nothing (a paused or starting video)
    MIN_FRAMES = 10
    #: an overload this soon after an up-step means the step did not fit
    FAILED_UP = 12.0
    MAX_HOLD = 64.0
    #: more frames per second than any stream carries: the report is not believed
    MAX_FPS = 480.0

    def __init__(self, *, threshold: float = 0.25, window: float = 4.0, hold: float = 8.0) -> None:
        self.threshold = threshold
        self.window = window
        self.min_hold = hold
        self.hold = hold
        #: the cap (highest level allowed); None: no cap
        self.cap: Level | None = None
        #: (time, frames_decoded, frames_dropped), oldest first
        self._samples: deque[tuple[float, int, int]] = deque()
        self.down_at = -1e18
        self.up_at = -1e18
        self._up_unconfirmed = False
        #: the last window's dropped / decoded share (None: not judged yet)
        self.dropped_share: float | None = None
        #: reports not believed (counters too fast), and counter resets
        self.rejected = 0
        self.steps_down = 0
        self.steps_up = 0

    def configure(self, *, threshold: float, window: float, hold: float) -> None:
        self.threshold = threshold
        self.window = window
        if hold != self.min_hold:
            self.min_hold = hold
            self.hold = max(hold, min(self.hold, self.MAX_HOLD))

    def reset(self) -> None:
        """Another stream (the track was replaced): nothing learnt applies."""
        self.cap = None
        self._samples.clear()
        self.hold = self.min_hold
        self._up_unconfirmed = False
        self.dropped_share = None

    def on_report(
        self,
        now: float,
        frames_decoded: int,
        frames_dropped: int,
        current: Level | None,
        spatial_layers: int,
        temporal_layers: int,
    ) -> Level | None:
        """One report's cumulative counters and the level the viewer receives now (None:
        nothing, paused); returns the cap."""
        samples = self._samples
        if samples:
            t0, decoded0, dropped0 = samples[-1]
            elapsed = now - t0
            d_decoded, d_dropped = frames_decoded - decoded0, frames_dropped - dropped0
            if d_decoded < 0 or d_dropped < 0:
                # the counters started again (a new receiver on the page): judge afresh
                self.rejected += 1
                samples.clear()
            elif elapsed <= 0 or d_decoded + d_dropped > self.MAX_FPS * max(elapsed, 0.5):
                self.rejected += 1
                return self.cap
        samples.append((now, frames_decoded, frames_dropped))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        rungs = ladder(spatial_layers, temporal_layers)
        if self.cap is not None and self.cap not in rungs:
            self.cap = None  # the stream's layers changed
        oldest = samples[0]
        if now - oldest[0] < self.window * 0.9:
            return self._maybe_up(now, rungs)
        decoded = frames_decoded - oldest[1]
        dropped = frames_dropped - oldest[2]
        if decoded + dropped < self.MIN_FRAMES:
            self.dropped_share = None
            return self.cap
        self.dropped_share = dropped / decoded if decoded else 1.0
        if self.dropped_share > self.threshold and current is not None:
            return self._step_down(now, current, rungs)
        return self._maybe_up(now, rungs)

    def _step_down(self, now: float, current: Level, rungs: list[Level]) -> Level | None:
        for rung in rungs:
            if capped(current, rung) < current:
                break
        else:
            return self.cap  # already at the lowest level
        failed_up = self._up_unconfirmed and now - self.up_at < self.FAILED_UP
        if failed_up:
            self.hold = min(self.MAX_HOLD, self.hold * 2)
        elif now - self.down_at >= 2 * self.hold:
            self.hold = self.min_hold
        self._up_unconfirmed = False
        self.cap = rung
        self.down_at = now
        self.steps_down += 1
        # the next verdict is on the new level alone
        last = self._samples[-1]
        self._samples.clear()
        self._samples.append(last)
        self.dropped_share = None
        return self.cap

    def _maybe_up(self, now: float, rungs: list[Level]) -> Level | None:
        cap = self.cap
        if cap is None or now - max(self.down_at, self.up_at) < self.hold:
            return cap
        if self.dropped_share is None:
            return cap  # not judged at this level yet
        index = rungs.index(cap)
        self.cap = None if index <= 1 else rungs[index - 1]
        self.up_at = now
        self._up_unconfirmed = True
        self.steps_up += 1
        last = self._samples[-1]
        self._samples.clear()
        self._samples.append(last)
        self.dropped_share = None
        return self.cap
