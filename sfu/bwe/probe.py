"""Bandwidth probing (sans-IO): when an up-switch needs more than the estimate, send that much
for a short while and keep it only if the link carried it without delay growth or loss.

Failed probes back off (1 s, 2 s, 4 s ... up to 20 s) so a link at its capacity is not
flooded with probes; a success resets the back-off.
"""

from __future__ import annotations

from ..forwarding.allocator import Allocation, Demand, _ladder


class ProbeController:
    def __init__(
        self, duration: float = 0.5, min_interval: float = 0.5, max_interval: float = 20.0
    ) -> None:
        self.duration = duration
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.interval = min_interval
        self.running = False
        self.probes = 0
        self.successes = 0
        self._next_at = 0.0

    def start(self, target: int, estimate: int, now: float) -> int | None:
        """The rate to probe at, or None if not now."""
        if self.running or now < self._next_at or target <= estimate:
            return None
        self.running = True
        self.probes += 1
        return target

    def finish(self, success: bool, now: float) -> bool:
        self.running = False
        if success:
            self.successes += 1
            self.interval = self.min_interval
        else:
            self.interval = min(self.max_interval, self.interval * 2)
        self._next_at = now + self.interval
        return success


def needed_for_upgrade(
    demands: list[Demand], allocations: dict[str, Allocation], headroom: float
) -> int | None:
    """The estimate (bits/s) at which every video would get all its other inputs allow (the
    top of its ladder), or None if every video has that already."""
    total = 0
    short = False
    for demand in demands:
        allocation = allocations.get(demand.key)
        ladder = _ladder(demand)
        if allocation is None or not ladder:
            continue
        total += ladder[-1].bitrate
        top = (ladder[-1].spatial, ladder[-1].temporal)
        short = short or allocation.paused or (allocation.spatial, allocation.temporal) != top
    if not short:
        return None
    return int(total / headroom / 0.85)
