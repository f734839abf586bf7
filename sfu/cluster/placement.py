"""Which worker takes a new room (sans-IO): the least loaded of those not draining."""

from __future__ import annotations

from collections.abc import Iterable

from .wire import WorkerInfo


def load_score(info: WorkerInfo) -> tuple[float, int, int, str]:
    """Lower is less loaded: CPU first (what limits a worker), then participants, then
    rooms (a room placed counts at once: the claim adds it to the record); the name breaks
    ties so that every worker picks the same one."""
    # CPU in steps of 5 % of a core: noise between two idle workers does not decide
    return (round(info.cpu * 20) / 20, info.participants, info.rooms, info.worker)


def least_loaded(workers: Iterable[WorkerInfo]) -> WorkerInfo | None:
    """The worker a new room goes to; None when every worker drains (or there is none)."""
    candidates = [w for w in workers if not w.draining]
    if not candidates:
        return None
    return min(candidates, key=load_score)
