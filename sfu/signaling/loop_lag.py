"""How late the server's event loop runs what is due: a histogram for ``/stats`` (admin).

A task sleeps :data:`INTERVAL` seconds, again and again, and records how much later than
asked it woke up (:meth:`LoopLag.record`): the time the loop spent on other work (packets,
feedback, signaling) past the timer. One sample per wake-up, 50 a second; the histogram
counts wake-ups, not seconds. Buckets are fixed (:data:`BOUNDS_MS`); the largest lateness
is kept overall and per second of ``time.monotonic()`` (the last :data:`SECONDS_KEPT`), so a
reader with two snapshots gets the histogram between them (:func:`difference`) and the
largest lateness in any span of whole seconds.

Cost: one timer and a few integer additions per wake-up, nothing per packet.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from . import collector
from .collector import CollectorPauses

#: seconds slept between two samples
INTERVAL = 0.02
#: the buckets' upper bounds (ms, exclusive); the last bucket is ">= 200"
BOUNDS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
#: per-second maxima kept
SECONDS_KEPT = 120


def bucket(late_ms: float) -> int:
    """The bucket of a lateness (ms): ``i`` for ``BOUNDS_MS[i-1] <= late < BOUNDS_MS[i]``."""
    return bisect.bisect_right(BOUNDS_MS, late_ms)


class LoopLag:
    """The histogram; :meth:`record` is given lateness values (pure: no clock of its own)."""

    __slots__ = ("counts", "max_ms", "sum_ms", "by_second", "collector")

    def __init__(self) -> None:
        #: the garbage collector's pauses, reported with the lag (they are part of it)
        self.collector = CollectorPauses()
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.max_ms = 0.0
        #: the lateness of every wake-up added up (``/metrics``' histogram sum)
        self.sum_ms = 0.0
        #: [second, largest lateness in it (ms)], oldest first
        self.by_second: deque[list[float]] = deque(maxlen=SECONDS_KEPT)

    def record(self, late_ms: float, second: int) -> None:
        """One wake-up ``late_ms`` late (negative: on time), in ``second`` (a monotonic clock's
        whole second)."""
        late_ms = max(0.0, late_ms)
        self.counts[bucket(late_ms)] += 1
        self.sum_ms += late_ms
        if late_ms > self.max_ms:
            self.max_ms = late_ms
        last = self.by_second[-1] if self.by_second else None
        if last is None or last[0] != second:
            self.by_second.append([second, late_ms])
        elif late_ms > last[1]:
            last[1] = late_ms

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "at": now,
            "interval_ms": INTERVAL * 1000,
            "bounds_ms": list(BOUNDS_MS),
            "counts": list(self.counts),
            "max_ms": round(self.max_ms, 3),
            "max_ms_by_second": [[int(s), round(m, 3)] for s, m in self.by_second],
            "gc": self.collector.snapshot(),
        }


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The histogram between two snapshots: counts after less counts before, and the largest
    lateness in the whole seconds from ``before["at"]`` to ``after["at"]`` (None when no
    second of the span is kept)."""
    counts = [b - a for a, b in zip(before["counts"], after["counts"], strict=True)]
    if any(c < 0 for c in counts):
        raise ValueError("snapshots out of order (or of two servers)")
    inside = [m for s, m in after["max_ms_by_second"] if before["at"] <= s and s + 1 <= after["at"]]
    out: dict[str, Any] = {
        "bounds_ms": list(after["bounds_ms"]),
        "counts": counts,
        "max_ms": max(inside) if inside else None,
    }
    if "gc" in before and "gc" in after:
        out["gc"] = collector.difference(before["gc"], after["gc"])
    return out


def percentile_bound(counts: list[int], bounds_ms: list[float], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``q`` quantile of a histogram (inf: the
    last bucket; None: no sample)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return bounds_ms[i] if i < len(bounds_ms) else float("inf")
    return float("inf")


async def watch(lag: LoopLag, interval: float = INTERVAL) -> None:
    """Sleep ``interval``, record how late the wake-up was, forever."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        woke = loop.time()
        lag.record(1000 * (woke - asked), int(time.monotonic()))


LOOP_LAG_KEY = web.AppKey("loop_lag", LoopLag)


async def loop_lag_context(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the watching task, for as long as the application runs."""
    lag = app[LOOP_LAG_KEY]
    lag.collector.install()
    task = asyncio.ensure_future(watch(lag))
    yield
    lag.collector.remove()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
