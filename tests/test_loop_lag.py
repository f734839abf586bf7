"""The server's event-loop lag monitor (sfu/signaling/loop_lag.py): its buckets, fed exact
lateness values; the difference of two snapshots; and in the real application, ``/stats``."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import pytest
from support.serving import RunningServer

from sfu.signaling.loop_lag import (
    BOUNDS_MS,
    LoopLag,
    bucket,
    difference,
    percentile_bound,
)


@pytest.mark.parametrize(
    ("late_ms", "index"),
    [
        (0.0, 0),
        (0.999, 0),
        (1.0, 1),  # a bound belongs to the bucket above it
        (1.999, 1),
        (2.0, 2),
        (4.9, 2),
        (5.0, 3),
        (9.99, 3),
        (10.0, 4),
        (19.0, 4),
        (20.0, 5),
        (49.9, 5),
        (50.0, 6),
        (99.0, 6),
        (100.0, 7),
        (199.9, 7),
        (200.0, 8),
        (5000.0, 8),
    ],
)
def test_bucket_bounds(late_ms: float, index: int) -> None:
    assert bucket(late_ms) == index


def test_record_counts_clamps_and_keeps_the_largest_per_second() -> None:
    lag = LoopLag()
    for late, second in [(-0.3, 10), (0.5, 10), (3.0, 10), (250.0, 11), (12.0, 11), (1.0, 12)]:
        lag.record(late, second)
    assert lag.counts == [2, 1, 1, 0, 1, 0, 0, 0, 1]  # -0.3 counts as on time
    assert lag.max_ms == 250.0
    assert list(lag.by_second) == [[10, 3.0], [11, 250.0], [12, 1.0]]
    snap = lag.snapshot(12.5)
    assert snap["counts"] == lag.counts and snap["bounds_ms"] == list(BOUNDS_MS)
    assert snap["max_ms_by_second"] == [[10, 3.0], [11, 250.0], [12, 1.0]]
    assert len(snap["counts"]) == len(BOUNDS_MS) + 1


def test_difference_counts_between_snapshots_and_max_of_whole_seconds_inside() -> None:
    lag = LoopLag()
    lag.record(300.0, 9)  # before the window: neither counted nor the window's max
    lag.record(0.2, 10)
    before = lag.snapshot(10.0)
    lag.record(0.4, 10)
    lag.record(7.0, 11)
    lag.record(60.0, 12)
    lag.record(0.1, 13)
    after = lag.snapshot(13.0)  # second 13 is not whole inside [10, 13]
    diff = difference(before, after)
    assert diff["counts"] == [2, 0, 0, 1, 0, 0, 1, 0, 0]  # 0.4 and 0.1; 7.0; 60.0
    assert diff["max_ms"] == 60.0
    lag.record(500.0, 13)
    assert difference(before, lag.snapshot(13.9))["max_ms"] == 60.0
    assert difference(before, lag.snapshot(14.0))["max_ms"] == 500.0
    with pytest.raises(ValueError):
        difference(after, before)


def test_percentile_bound_is_the_bucket_of_the_quantile() -> None:
    bounds = list(BOUNDS_MS)
    counts = [98, 1, 0, 0, 0, 0, 0, 0, 1]
    assert percentile_bound(counts, bounds, 0.5) == 1.0
    assert percentile_bound(counts, bounds, 0.99) == 2.0  # the 99th sample: in [1, 2)
    assert percentile_bound(counts, bounds, 0.995) == math.inf  # the 100th: >= 200 ms
    assert percentile_bound([0] * 9, bounds, 0.99) is None
    assert percentile_bound([0, 0, 5, 0, 0, 0, 0, 0, 0], bounds, 0.0) == 5.0


async def test_stats_show_a_blocked_loop(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{server.url}/stats"
        async with session.get(url, headers=server.admin, params={"only": "loop_lag"}) as r:
            before = (await r.json())["loop_lag"]
        await asyncio.sleep(0.2)
        time.sleep(0.12)  # the server's loop (this one) blocked: one wake-up >= 100 ms late
        await asyncio.sleep(0.1)
        async with session.get(url, headers=server.admin) as r:
            full = await r.json()
        async with session.get(url, params={"only": "loop_lag"}) as r:
            public = await r.json()
    after = full["loop_lag"]
    diff = difference(before, after)
    assert sum(diff["counts"]) >= 5  # ~50 wake-ups a second
    assert sum(diff["counts"][7:]) >= 1  # the block: >= 100 ms
    assert after["max_ms"] >= 100
    assert "rooms" in full and "loop_lag" not in public  # admins only
