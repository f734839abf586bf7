"""Splitting one subscriber's downlink estimate across the videos it receives (sans-IO
arithmetic, no state, no clock).

Lowest layers first: every video gets its lowest level if it fits, in priority order (a video
whose lowest level does not fit is paused; audio is never touched). Then upgrades, in
priority order: the highest-priority video climbs as far as it fits, then the next.  Among
videos of one priority, a higher ``rank`` goes first (the room's dominant speaker's: its
camera before the other cameras, still after a screen share). A level
fits when its measured bitrate <= headroom x the estimate left for it.

Hysteresis: a level a video already has is kept while it fits the whole budget; climbing
above it needs ``up_margin`` more room, so a steady link does not flip between two levels.
Climbing may also be held to a lower ``climb_limit`` than the estimate (what the link has
been shown to carry), while kept levels are judged against the estimate.

The inverse, for probing: :func:`needed_for_upgrade` and :func:`needed_for_next_level` give
the estimate at which :func:`allocate` would give more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..forwarding.meter import Level
from ..forwarding.target import Allocation

#: climbing above a held level needs this much more room than keeping it
UP_MARGIN = 0.15


@dataclass(frozen=True, slots=True)
class Demand:
    key: str
    priority: int
    #: the levels the source offers, with measured bitrates
    levels: Sequence[Level]
    #: the most this video may get from its other inputs (caps, window, pin)
    max_spatial: int
    max_temporal: int
    #: the level it receives now, if any (for hysteresis)
    current: tuple[int, int] | None = None
    #: among demands of one priority, a higher rank goes first (1: the dominant speaker's)
    rank: int = 0


def by_priority(demands: list[Demand]) -> list[Demand]:
    """``demands`` in the order the allocator serves them: priority, then rank."""
    return sorted(demands, key=lambda d: (-d.priority, -d.rank))


def ladder(demand: Demand) -> list[Level]:
    """The levels within the ceiling, cheapest first; a level that costs more than a higher
    one (noisy measurement) is left out."""
    levels = [
        lv
        for lv in demand.levels
        if lv.spatial <= demand.max_spatial and lv.temporal <= demand.max_temporal
    ]
    levels.sort(key=lambda lv: (lv.spatial, lv.temporal))
    rungs: list[Level] = []
    for level in levels:
        while rungs and rungs[-1].bitrate >= level.bitrate and level.bitrate > 0:
            rungs.pop()
        rungs.append(level)
    return rungs


def allocate(
    estimate: float,
    demands: list[Demand],
    *,
    headroom: float = 0.9,
    up_margin: float = UP_MARGIN,
    climb_limit: float | None = None,
    ladders: Mapping[str, list[Level]] | None = None,
) -> dict[str, Allocation]:
    """Every demand's level (by key) within ``estimate`` (bits/s); ``ladders``: each
    demand's :func:`ladder`, if already worked out."""
    budget = estimate * headroom
    climb_room = budget * (1 - up_margin)
    if climb_limit is not None:
        climb_room = min(climb_room, climb_limit * headroom * (1 - up_margin))
    order = by_priority(demands)
    if ladders is None:
        ladders = ladders_of(demands)
    chosen: dict[str, int] = {}
    used = 0.0
    for demand in order:
        rungs = ladders[demand.key]
        if rungs and used + rungs[0].bitrate <= budget:
            chosen[demand.key] = 0
            used += rungs[0].bitrate
    for demand in order:
        if demand.key not in chosen:
            continue
        rungs = ladders[demand.key]
        index = chosen[demand.key]
        while index + 1 < len(rungs):
            nxt = rungs[index + 1]
            extra = nxt.bitrate - rungs[index].bitrate
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
        rungs = ladders[demand.key]
        if not rungs:  # nothing measured yet: no reason to hold it back
            out[demand.key] = Allocation(demand.max_spatial, demand.max_temporal, False, 0)
        elif demand.key in chosen:
            level = rungs[chosen[demand.key]]
            out[demand.key] = Allocation(level.spatial, level.temporal, False, level.bitrate)
        else:
            out[demand.key] = Allocation(0, 0, True, 0)
    return out


def ladders_of(demands: list[Demand]) -> dict[str, list[Level]]:
    """Every demand's :func:`ladder`, by key."""
    return {d.key: ladder(d) for d in demands}


def needed_for_upgrade(
    demands: list[Demand],
    allocations: dict[str, Allocation],
    headroom: float,
    ladders: Mapping[str, list[Level]] | None = None,
) -> int | None:
    """The estimate (bits/s) at which every video would get all its other inputs allow (the
    top of its ladder), or None if every video has that already."""
    total = 0
    short = False
    for demand in demands:
        allocation = allocations.get(demand.key)
        rungs = ladders[demand.key] if ladders is not None else ladder(demand)
        if allocation is None or not rungs:
            continue
        total += rungs[-1].bitrate
        top = (rungs[-1].spatial, rungs[-1].temporal)
        short = short or allocation.paused or (allocation.spatial, allocation.temporal) != top
    if not short:
        return None
    return int(total / headroom / (1 - UP_MARGIN))


def needed_for_next_level(
    demands: list[Demand],
    allocations: dict[str, Allocation],
    headroom: float,
    ladders: Mapping[str, list[Level]] | None = None,
) -> int | None:
    """The estimate (bits/s) at which the first video in priority order that can climb would
    get one level more (a paused video: its lowest level), the others keeping theirs; None
    if every video is at the top of its ladder."""
    used = sum(a.bitrate for a in allocations.values() if not a.paused)
    order = by_priority(demands)
    if ladders is None:
        ladders = ladders_of(demands)
    # as the allocator goes: every video's lowest level first, then upgrades
    for demand in order:
        allocation = allocations.get(demand.key)
        rungs = ladders[demand.key]
        if allocation is not None and rungs and allocation.paused:
            return int((used + rungs[0].bitrate) / headroom / (1 - UP_MARGIN))
    for demand in order:
        allocation = allocations.get(demand.key)
        rungs = ladders[demand.key]
        if allocation is None or not rungs or allocation.paused:
            continue
        current = (allocation.spatial, allocation.temporal)
        above = [lv for lv in rungs if (lv.spatial, lv.temporal) > current]
        if above:
            extra = above[0].bitrate - allocation.bitrate
            return int((used + extra) / headroom / (1 - UP_MARGIN))
    return None
