"""One subscriber's view of one published video track: its inputs (window, pin, the room's
caps, a bitrate budget), the target they give, and the events it reports.

Sans-IO: fed inputs and a clock; it drives the down track's selector and calls
``on_level_changed`` (rarely) with what the subscriber now receives and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..quality.viewer import ViewerQuality
from .downtrack import DownTrack
from .meter import Level
from .source import MediaSource
from .target import CPU, PIN, POLICY, WINDOW, Allocation, LayerCaps, Target, choose_target


@dataclass(frozen=True, slots=True)
class LevelEvent:
    track_id: str
    spatial: int
    temporal: int
    width: int
    height: int
    paused: bool
    reason: str


class Subscription:
    #: the hold after a bandwidth down-switch; doubled after an up-switch that did not fit
    MIN_UP_HOLD = 4.0
    MAX_UP_HOLD = 32.0

    def __init__(
        self,
        source: MediaSource,
        caps: LayerCaps,
        *,
        tolerance: float = 1.2,
        on_level_changed: Callable[[LevelEvent], None] | None = None,
    ) -> None:
        self.source = source
        self.caps = caps
        self.tolerance = tolerance
        self.window: tuple[int, int] | None = None
        self.pin: tuple[int, int] | None = None
        #: what the viewer reports of this video, and its receiver-CPU fit
        self.viewer = ViewerQuality()
        #: the receiver-CPU fit's cap (None: the viewer keeps up)
        self.cpu: tuple[int, int] | None = None
        self.budget = math.inf
        #: the allocator's level for this video (None: bandwidth does not limit it)
        self.bandwidth: Allocation | None = None
        self.bandwidth_down_at = -math.inf
        self.bandwidth_up_at = -math.inf
        #: how long to wait after a bandwidth down-switch before going up again: doubles
        #: when an up-switch is soon followed by a down-switch (it did not fit), to 32 s
        self.up_hold = self.MIN_UP_HOLD
        self._up_unconfirmed = False
        #: the bandwidth available (bits/s) at the last bandwidth down-switch (or at the
        #: up-switch before it, if that did not fit)
        self.available_at_down = math.inf
        self._available_at_up = 0.0
        #: the allocation is below what every other input allows: bandwidth limits it
        self._limited = False
        self.downtrack: DownTrack | None = None
        self.target: Target | None = None
        self.on_level_changed = on_level_changed
        self._reported: tuple[int, int, bool] | None = None
        # asked every allocation tick, they change far less often: (what they were worked
        # out from, the result)
        self._priced: tuple[tuple[object, ...], tuple[Level, ...]] | None = None
        self._ceiling: tuple[tuple[object, ...], Target] | None = None

    @property
    def track_id(self) -> str:
        return self.source.track_id

    def bind(self, downtrack: DownTrack, now: float) -> None:
        self.downtrack = downtrack
        downtrack.on_layers_changed = self._on_layers_changed
        self.update(now)

    # -- inputs ------------------------------------------------------------------------------
    def set_window(self, width: int, height: int, now: float) -> None:
        self.window = (max(0, width), max(0, height))
        self.update(now, WINDOW)

    def set_pin(self, spatial: int | None, temporal: int | None, now: float) -> None:
        """``set_level(spatial, temporal)``; ``None`` returns to automatic selection."""
        self.pin = None if spatial is None or temporal is None else (spatial, temporal)
        self.update(now, PIN)

    def set_cpu(self, cap: tuple[int, int] | None, now: float) -> None:
        """The receiver-CPU fit's cap (None: none)."""
        if cap != self.cpu:
            self.cpu = cap
            self.update(now, CPU)

    def set_caps(self, caps: LayerCaps, tolerance: float, now: float) -> None:
        self.caps = caps
        self.tolerance = tolerance
        self.update(now, POLICY)

    def levels(self, now: float) -> tuple[Level, ...]:
        """The source's levels, priced as this subscriber receives them: with the lower
        layer's chain kept at the top layer (K-SVC), a top level costs that chain's rate
        too.  The same tuple while they do not change."""
        levels = self.source.levels(now)
        downtrack = self.downtrack
        layers = self.source.layers
        if (
            downtrack is None
            or downtrack.selector is None
            or not downtrack.keep_lower_chain
            or layers is None
            or not layers.lower_chain_targets
        ):
            return levels
        top = layers.spatial_layers - 1
        if top not in layers.lower_chain_targets:
            return levels
        key = (levels, top)
        priced = self._priced
        if priced is not None and priced[0][0] is levels and priced[0][1] == top:
            return priced[1]
        # the same for every subscriber of the source: priced once (per 0.5 s bucket)
        shared = self.source.priced_levels
        if shared is not None and shared[0][0] is levels and shared[0][1] == top:
            self._priced = shared
            return shared[1]
        base = {(level.spatial, level.temporal): level.bitrate for level in levels}
        result = tuple(
            Level(
                level.spatial,
                level.temporal,
                level.width,
                level.height,
                level.fps,
                level.bitrate + base.get((level.spatial - 1, 0), 0),
            )
            if level.spatial == top
            else level
            for level in levels
        )
        self._priced = self.source.priced_levels = (key, result)
        return result

    def level_bitrate(self, now: float) -> int | None:
        """The measured bitrate (bits/s) of the level this subscriber receives now."""
        current = self.current_level()
        if current is None:
            return None
        for level in self.levels(now):
            if (level.spatial, level.temporal) == current:
                return level.bitrate
        return None

    # -- target --------------------------------------------------------------------------------
    def update(self, now: float, cause: str | None = None) -> Target:
        source = self.source
        target = choose_target(
            spatial_layers=source.spatial_layers,
            temporal_layers=source.temporal_layers,
            resolutions=source.resolutions,
            levels=source.levels(now) if (self.caps.max_fps or self.budget != math.inf) else None,
            caps=self.caps,
            window=self.window,
            pin=self.pin,
            cpu=self.cpu,
            budget=self.budget,
            bandwidth=(self.bandwidth.spatial, self.bandwidth.temporal)
            if self.bandwidth is not None
            else None,
            bandwidth_paused=self.bandwidth is not None and self.bandwidth.paused,
            tolerance=self.tolerance,
        )
        self.target = target
        downtrack = self.downtrack
        if downtrack is not None and downtrack.selector is not None:
            selector = downtrack.selector
            if target.paused:
                if not selector.paused:
                    # dropped packets keep the sequence numbers and timestamps continuous, so
                    # the stream resumes (at a keyframe) as if nothing happened
                    selector.pause()
                    self._report()
            else:
                selector.resume()
                selector.set_target(target.spatial, target.temporal)
        return target

    def ceiling(self, now: float) -> Target:
        """The target from every input but bandwidth."""
        source = self.source
        caps = self.caps
        levels = source.levels(now) if caps.max_fps else None
        layers = source.layers
        key = (
            levels,
            layers.spatial_layers if layers is not None else 1,
            layers.temporal_layers if layers is not None else 1,
            tuple(layers.resolutions) if layers is not None else None,
            caps,
            self.window,
            self.pin,
            self.cpu,
            self.tolerance,
        )
        cached = self._ceiling
        if cached is not None and cached[0][0] is levels and cached[0][1:] == key[1:]:
            return cached[1]
        target = choose_target(
            spatial_layers=source.spatial_layers,
            temporal_layers=source.temporal_layers,
            resolutions=source.resolutions,
            levels=levels,
            caps=caps,
            window=self.window,
            pin=self.pin,
            cpu=self.cpu,
            tolerance=self.tolerance,
        )
        self._ceiling = (key, target)
        return target

    def current_level(self) -> tuple[int, int] | None:
        downtrack = self.downtrack
        if downtrack is None or downtrack.selector is None or not downtrack.selector.started:
            return None
        return downtrack.selector.current_spatial, downtrack.selector.current_temporal

    def set_bandwidth(
        self, allocation: Allocation | None, now: float, available: float | None = None
    ) -> None:
        """The allocator's level (None: bandwidth does not limit this video); ``available``:
        the bandwidth it was allocated from (bits/s), which sets when a hold ends."""
        previous = self.bandwidth
        if (
            allocation is not None
            and previous is not None
            and allocation.paused == previous.paused
            and allocation.spatial == previous.spatial
            and allocation.temporal == previous.temporal
        ):
            # the same level at another measured cost: the target stays, unless it is
            # worked out from the measured levels too
            self.bandwidth = allocation
            if self.caps.max_fps or self.budget != math.inf:
                self.update(now)
            return
        if allocation != previous:
            down = allocation is not None and (
                previous is None
                or allocation.paused
                or (allocation.spatial, allocation.temporal) < (previous.spatial, previous.temporal)
            )
            limited = self._limited
            self._limited = (
                allocation is not None
                and not allocation.paused
                and self._below_ceiling(allocation, now)
            )
            if down and allocation is not None and not allocation.paused:
                if self._limited:
                    self._on_down_switch(now, available)
                # else lowered by a pin, the window or the policy, not by the bandwidth:
                # nothing to hold when that input allows more again
            elif allocation is not None and previous is not None and limited:
                # a climb from a level the bandwidth held (not one a pin or the window did)
                self.bandwidth_up_at = now
                self._up_unconfirmed = True
                if available is not None:
                    self._available_at_up = available
            self.bandwidth = allocation
            self.update(now)

    def _below_ceiling(self, allocation: Allocation, now: float) -> bool:
        """Whether ``allocation`` is below what every input but bandwidth allows."""
        ceiling = self.ceiling(now)
        level = (allocation.spatial, allocation.temporal)
        return not ceiling.paused and level < (ceiling.spatial, ceiling.temporal)

    def release_hold(self) -> None:
        """Its share changed because its priority did (the room's dominant speaker changed),
        not because the link fell short: no hold (nor a doubled one) from that switch.  A
        climb stays within the proven rate, as always."""
        self.bandwidth_down_at = -math.inf
        self.up_hold = self.MIN_UP_HOLD
        self._up_unconfirmed = False

    def _on_down_switch(self, now: float, available: float | None) -> None:
        """A bandwidth down-switch: the first within 10 s of an up-switch means that up-switch
        did not fit, so the next waits twice as long; further down-switches of the same fall
        do not count again."""
        failed_up = self._up_unconfirmed and now - self.bandwidth_up_at < 10.0
        if failed_up:
            self.up_hold = min(self.MAX_UP_HOLD, self.up_hold * 2)
        elif now - self.bandwidth_down_at >= self.up_hold:
            self.up_hold = self.MIN_UP_HOLD  # the last hold is over: start afresh
        self._up_unconfirmed = False
        self.bandwidth_down_at = now
        if available is not None:
            # the hold ends early once clearly more is available than at the down-switch,
            # or than at the up-switch that did not fit
            self.available_at_down = (
                max(available, self._available_at_up) if failed_up else available
            )

    def _on_layers_changed(self, downtrack: DownTrack) -> None:
        self._report()

    def current(self) -> LevelEvent | None:
        downtrack = self.downtrack
        if downtrack is None or downtrack.selector is None:
            return None
        selector = downtrack.selector
        paused = selector.paused
        spatial = max(0, selector.current_spatial)
        temporal = max(0, selector.current_temporal)
        resolutions = self.source.resolutions
        width, height = resolutions[spatial] if spatial < len(resolutions) else (0, 0)
        reason = self.target.reason if self.target is not None else POLICY
        return LevelEvent(self.track_id, spatial, temporal, width, height, paused, reason)

    def _report(self) -> None:
        event = self.current()
        if event is None:
            return
        key = (event.spatial, event.temporal, event.paused)
        if key == self._reported:
            return
        self._reported = key
        if self.on_level_changed is not None:
            self.on_level_changed(event)
