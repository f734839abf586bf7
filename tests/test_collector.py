"""The garbage collector's pauses as /stats reports them, and the server's settings for it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sfu.signaling.collector import THRESHOLDS, CollectorPauses, difference, tune
from sfu.signaling.loop_lag import LoopLag
from sfu.signaling.loop_lag import difference as lag_difference


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_collections_and_their_pauses_are_counted_by_generation() -> None:
    pauses = CollectorPauses()
    pauses.install()
    pauses.install()  # once only
    try:
        assert gc.callbacks.count(pauses) == 1
        before = pauses.snapshot()
        gc.collect(0)
        gc.collect(2)
        after = pauses.snapshot()
    finally:
        pauses.remove()
    assert pauses not in gc.callbacks
    change = difference(before, after)
    assert change["collections"][0] >= 1 and change["collections"][2] >= 1
    assert change["pause_ms"][2] > 0 and after["max_pause_ms"] >= change["pause_ms"][2] / 2
    gc.collect(2)  # removed: no longer counted
    assert pauses.snapshot()["collections"] == after["collections"]


def test_tune_freezes_start_up_and_spaces_collections_out(restored: None) -> None:
    frozen = tune()
    assert gc.get_threshold() == THRESHOLDS
    assert frozen == gc.get_freeze_count() > 1000  # this process's modules, classes, ...
    assert CollectorPauses().snapshot()["thresholds"] == list(THRESHOLDS)


def test_the_loop_lag_snapshot_carries_the_collector_and_its_difference() -> None:
    lag = LoopLag()
    first = lag.snapshot(100.0)
    lag.collector(phase="start", info={"generation": 1})
    lag.collector(phase="stop", info={"generation": 1})
    second = lag.snapshot(101.0)
    change = lag_difference(first, second)
    assert change["gc"]["collections"] == [0, 1, 0]
    assert change["gc"]["pause_ms"][1] >= 0
