"""Splitting one subscriber's downlink estimate across the videos it receives (sans-IO).

Lowest layers first: every video gets its lowest level if it fits, in priority order (a video
whose lowest level does not fit is paused; audio is never touched). Then upgrades, in
priority order: the highest-priority video climbs as far as it fits, then the next. A level
fits when its measured bitrate <= headroom x the estimate left for it.

Hysteresis: a level a video already has is kept while it fits the whole budget; climbing
above it needs ``up_margin`` more room, so a steady link does not flip between two levels.
Climbing may also be held to a lower ``climb_limit`` than the estimate (what the link has
been shown to carry), while kept levels are judged against the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from .meter import Level

#: climbing above a held level needs this much more room than keeping it
UP_MARGIN = 0.15


@dataclass(frozen=True, slots=True)
class Demand:
    key: str
    priority: int
    #: the levels the source offers, with measured bitrates
    levels: list[Level]
    #: the most this video may get from its other inputs (caps, window, pin)
    max_spatial: int
    max_temporal: int
    #: the level it receives now, if any (for hysteresis)
    current: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    spatial: int
    temporal: int
    paused: bool
    bitrate: int


def _ladder(demand: Demand) -> list[Level]:
    """The levels within the ceiling, cheapest first; a level that costs more than a higher
    one (noisy measurement) is left out."""
    levels = [
        lv
        for lv in demand.levels
        if lv.spatial <= demand.max_spatial and lv.temporal <= demand.max_temporal
    ]
    levels.sort(key=lambda lv: (lv.spatial, lv.temporal))
    ladder: list[Level] = []
    for level in levels:
        while ladder and ladder[-1].bitrate >= level.bitrate and level.bitrate > 0:
            ladder.pop()
        ladder.append(level)
    return ladder


def allocate(
    estimate: float,
    demands: list[Demand],
    *,
    headroom: float = 0.9,
    up_margin: float = UP_MARGIN,
    climb_limit: float | None = None,
) -> dict[str, Allocation]:
    budget = estimate * headroom
    climb_room = budget * (1 - up_margin)
    if climb_limit is not None:
        climb_room = min(climb_room, climb_limit * headroom * (1 - up_margin))
    order = sorted(demands, key=lambda d: -d.priority)
    ladders = {d.key: _ladder(d) for d in order}
    chosen: dict[str, int] = {}
    used = 0.0
    for demand in order:
        ladder = ladders[demand.key]
        if ladder and used + ladder[0].bitrate <= budget:
            chosen[demand.key] = 0
            used += ladder[0].bitrate
    for demand in order:
        if demand.key not in chosen:
            continue
        ladder = ladders[demand.key]
        index = chosen[demand.key]
        while index + 1 < len(ladder):
            nxt = ladder[index + 1]
            extra = nxt.bitrate - ladder[index].bitrate
            held = demand.current == (nxt.spatial, nxt.temporal) or (
                demand.current is not None and (nxt.spatial, nxt.temporal) <= demand.current
            )
            room = budget if held else climb_room
            if used + extra > room:
                break
            used += extra
            index += 1
        chosen[demand.key] = index
    out = {}
    for demand in demands:
        ladder = ladders[demand.key]
        if not ladder:  # nothing measured yet: no reason to hold it back
            out[demand.key] = Allocation(demand.max_spatial, demand.max_temporal, False, 0)
        elif demand.key in chosen:
            level = ladder[chosen[demand.key]]
            out[demand.key] = Allocation(level.spatial, level.temporal, False, level.bitrate)
        else:
            out[demand.key] = Allocation(0, 0, True, 0)
    return out
