"""The steady window of a run, and what is measured over it (pure functions of the report
data; ``loadtest.run.summarize`` and ``loadtest.bench`` use them).

The window starts once every subscriber has received media for :data:`SETTLE` seconds
(connections, DTLS handshakes and the first layer switches are behind) and ends
:data:`MARGIN` seconds before the workers stop (peers closing, a worker's result taken
before another's). Latency, loss, packets, layers, the server's and the load generator's
CPU and the server's event-loop lag are all counted over this one window.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from sfu.signaling.loop_lag import difference, percentile_bound

#: seconds of media every subscriber has had when the window starts
SETTLE = 1.0
#: seconds before the end of the run at which the window ends
MARGIN = 1.0


def steady_window(
    first_media: list[float | None], end: float, settle: float = SETTLE, margin: float = MARGIN
) -> tuple[float, float] | None:
    """(start, stop) on the monotonic clock: from ``settle`` seconds after the last subscriber's
    first media packet to ``margin`` seconds before ``end``; None when a subscriber got no
    media or nothing is left between the two."""
    if not first_media or any(f is None for f in first_media):
        return None
    start = max(f for f in first_media if f is not None) + settle
    stop = end - margin
    return (start, stop) if stop > start else None


def inside(
    samples: list[Any], window: tuple[float, float], at: Any = lambda s: s[0]
) -> tuple[Any, Any] | None:
    """The first and the last of time-ordered ``samples`` inside ``window`` (``at(sample)``:
    its time), or None when fewer than two are."""
    start, stop = window
    chosen = [s for s in samples if start <= at(s) <= stop]
    if len(chosen) < 2:
        return None
    return chosen[0], chosen[-1]


def cpu_per_second(samples: list[tuple[float, float]], window: tuple[float, float]) -> float | None:
    """CPU seconds per second between the first and last (time, CPU seconds) sample inside
    ``window``."""
    pair = inside(samples, window)
    if pair is None:
        return None
    (t0, c0), (t1, c1) = pair
    return (c1 - c0) / (t1 - t0) if t1 > t0 else None


def whole_seconds(
    per_second: list[tuple[int, int]] | list[list[int]],
    started: float,
    window: tuple[float, float],
) -> tuple[int, int]:
    """(sum of the counts, number of seconds) of per-second counts (second since ``started``,
    count) over the seconds wholly inside ``window``. Seconds with no entry count as 0 when
    inside."""
    start, stop = window
    first = max(0, math.ceil(start - started))
    last = math.floor(stop - started) - 1
    total = sum(count for s, count in per_second if first <= s <= last)
    return total, max(0, last - first + 1)


def subscriber_figures(sub: dict[str, Any], window: tuple[float, float]) -> dict[str, Any]:
    """One subscriber over ``window``: packets and packets missing (in whole seconds), frames
    by layer (S, T) of the highest decodable frame."""
    packets, seconds = whole_seconds(sub["packets_per_second"], sub["started"], window)
    lost, _ = whole_seconds(sub.get("lost_per_second", []), sub["started"], window)
    start, stop = window
    layers = Counter(
        f"S{sid}T{tid}" for at, sid, tid in sub.get("frame_layers", []) if start <= at <= stop
    )
    return {"packets": packets, "lost": lost, "seconds": seconds, "frames_by_layer": layers}


def layer_shares(counts: Counter[str]) -> dict[str, float]:
    """Frames by layer as fractions of all, most frequent first."""
    total = sum(counts.values())
    return {k: round(v / total, 3) for k, v in counts.most_common()} if total else {}


def merged_loop_lag(
    processes: list[tuple[list[dict[str, Any]], dict[str, Any]]], window: tuple[float, float]
) -> dict[str, Any] | None:
    """Several processes' event-loop lag over ``window``, in one histogram.  Each process
    gives its samples (``{"at", "counts"}`` every second, time-ordered) and its last
    snapshot (:meth:`sfu.signaling.loop_lag.LoopLag.snapshot`: the bounds and the largest
    lateness per second); the counts are differenced over the window and added, the largest
    lateness is the largest of the window's whole seconds.  None unless every process has
    two samples inside the window."""
    if not processes:
        return None
    counts: list[int] | None = None
    maxima: list[float] = []
    bounds: list[float] = []
    for samples, snapshot in processes:
        span = inside(samples, window, lambda s: s["at"])
        if span is None:
            return None
        first, last = span
        diff = difference(
            {**snapshot, "at": first["at"], "counts": first["counts"]},
            {**snapshot, "at": last["at"], "counts": last["counts"]},
        )
        bounds = diff["bounds_ms"]
        counts = (
            diff["counts"]
            if counts is None
            else [a + b for a, b in zip(counts, diff["counts"], strict=True)]
        )
        if diff["max_ms"] is not None:
            maxima.append(diff["max_ms"])
    assert counts is not None
    return {
        "bounds_ms": bounds,
        "counts": counts,
        "max_ms": max(maxima) if maxima else None,
        "p99_ms": percentile_bound(counts, bounds, 0.99),
    }
