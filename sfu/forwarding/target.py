"""Target layer selection for one subscription: the lowest of every input wins.

Inputs: the room's caps, the size the subscriber renders the video at (window fit), a manual
pin, the viewer's CPU (receiver-CPU fit: a cap lowered while it drops frames), and a bitrate
budget.  Pure function, no state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .meter import Level

WINDOW, PIN, POLICY, BANDWIDTH, CPU = "window", "pin", "policy", "bandwidth", "cpu"


@dataclass(frozen=True, slots=True)
class LayerCaps:
    max_spatial: int = 2
    max_temporal: int = 2
    max_width: int | None = None
    max_height: int | None = None
    max_fps: float | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """What the downlink allocator gives one video: a level, or paused (nothing fits);
    ``bitrate``: the level's measured cost (bits/s), 0 when not measured yet."""

    spatial: int
    temporal: int
    paused: bool
    bitrate: int


@dataclass(frozen=True, slots=True)
class Target:
    spatial: int
    temporal: int
    paused: bool
    reason: str


def window_spatial(
    resolutions: list[tuple[int, int]],
    spatial_layers: int,
    width: int,
    height: int,
    tolerance: float = 1.2,
) -> int:
    """The highest spatial layer whose width <= tolerance x the rendered width and height <=
    tolerance x the rendered height (a layer up to 20 % larger than its window still fits);
    layer 0 if none fits."""
    best = 0
    for s in range(min(spatial_layers, len(resolutions))):
        w, h = resolutions[s]
        if w <= tolerance * width and h <= tolerance * height:
            best = s
    return best


def choose_target(
    *,
    spatial_layers: int,
    temporal_layers: int,
    resolutions: list[tuple[int, int]],
    levels: Sequence[Level] | None = None,
    caps: LayerCaps = LayerCaps(),
    window: tuple[int, int] | None = None,
    pin: tuple[int, int] | None = None,
    cpu: tuple[int, int] | None = None,
    budget: float = math.inf,
    bandwidth: tuple[int, int] | None = None,
    bandwidth_paused: bool = False,
    tolerance: float = 1.2,
) -> Target:
    """``cpu``: the receiver-CPU fit's cap; ``budget`` (bits/s) picks the best level that
    fits it; ``bandwidth`` is a level already chosen by the allocator (and
    ``bandwidth_paused`` its verdict that nothing fits)."""
    top_s = max(0, spatial_layers - 1)
    top_t = max(0, temporal_layers - 1)
    if window is not None and (window[0] <= 0 or window[1] <= 0):
        return Target(0, 0, True, WINDOW)

    # (spatial, temporal, reason) limits, in the order reasons are reported on ties
    limits: list[tuple[int, int, str]] = []
    if pin is not None:
        limits.append((pin[0], pin[1], PIN))
    cap_s, cap_t = caps.max_spatial, caps.max_temporal
    for s in range(min(spatial_layers, len(resolutions))):
        w, h = resolutions[s]
        if (caps.max_width is not None and w > caps.max_width) or (
            caps.max_height is not None and h > caps.max_height
        ):
            cap_s = min(cap_s, max(0, s - 1))
            break
    if caps.max_fps is not None and levels:
        fits = [lv.temporal for lv in levels if lv.spatial == 0 and lv.fps <= caps.max_fps * 1.1]
        cap_t = min(cap_t, max(fits) if fits else 0)
    limits.append((cap_s, cap_t, POLICY))
    if window is not None:
        limits.append(
            (window_spatial(resolutions, spatial_layers, *window, tolerance), top_t, WINDOW)
        )
    if cpu is not None:
        limits.append((cpu[0], cpu[1], CPU))

    spatial, temporal = top_s, top_t
    reason = POLICY
    for s, t, why in limits:
        s, t = max(0, s), max(0, t)
        if s < spatial or t < temporal:
            reason = why
        spatial, temporal = min(spatial, s), min(temporal, t)

    if bandwidth_paused:
        return Target(0, 0, True, BANDWIDTH)
    if bandwidth is not None and (bandwidth[0] < spatial or bandwidth[1] < temporal):
        spatial, temporal = min(spatial, bandwidth[0]), min(temporal, bandwidth[1])
        reason = BANDWIDTH
    if budget != math.inf and levels:
        fitting = [
            lv
            for lv in levels
            if lv.spatial <= spatial and lv.temporal <= temporal and lv.bitrate <= budget
        ]
        if not fitting:
            return Target(0, 0, True, BANDWIDTH)
        best = max(fitting, key=lambda lv: (lv.spatial, lv.temporal))
        if (best.spatial, best.temporal) != (spatial, temporal):
            spatial, temporal, reason = best.spatial, best.temporal, BANDWIDTH
    return Target(spatial, temporal, False, reason)
