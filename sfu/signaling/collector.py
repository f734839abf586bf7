"""Python's garbage collector in the server: how often it runs and how long it stops the
event loop (``/stats``, admin, beside the loop lag), and its settings for a packet server.

Reference counting frees almost everything a packet makes; the cyclic collector only looks
for cycles, and while it runs nothing else does.  CPython starts a young collection every 700
net container allocations and a full one (every tracked object, aiortc's peers among them)
every hundred young ones or so: at thousands of packets a second that is many collections a
second and, with many peers, full ones long enough to delay packets (loop lag).
:func:`tune` moves what exists at start-up (modules, classes, the configuration) out of the
collector's sight for good (``gc.freeze``) and spaces collections out (:data:`THRESHOLDS`);
cycles are still collected, just in larger batches.
"""

from __future__ import annotations

import gc
import time
from typing import Any

#: (young collection every N net allocations, middle every N young, full every N middle)
THRESHOLDS = (10_000, 20, 20)


def tune(thresholds: tuple[int, int, int] = THRESHOLDS) -> int:
    """Freeze what exists now and space collections out (once, at start-up); returns how
    many objects were frozen.  (``gc.get_freeze_count`` walks them all: not for /stats.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_freeze_count()


class CollectorPauses:
    """Collections and the time they took, per generation (``gc.callbacks``)."""

    __slots__ = ("collections", "pause_ms", "max_pause_ms", "_started")

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_ms = [0.0, 0.0, 0.0]
        self.max_pause_ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = 1000 * (time.perf_counter() - self._started)
        generation = info.get("generation", 2)
        self.collections[generation] += 1
        self.pause_ms[generation] += took
        if took > self.max_pause_ms:
            self.max_pause_ms = took

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def snapshot(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "pause_ms": [round(p, 3) for p in self.pause_ms],
            "max_pause_ms": round(self.max_pause_ms, 3),
            "thresholds": list(gc.get_threshold()),
        }


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Collections and pause time between two snapshots, by generation."""
    return {
        "collections": [
            b - a for a, b in zip(before["collections"], after["collections"], strict=True)
        ],
        "pause_ms": [
            round(b - a, 3) for a, b in zip(before["pause_ms"], after["pause_ms"], strict=True)
        ],
    }
