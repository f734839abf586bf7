import math
import random
from typing import Any

from sfu.forwarding.meter import LayerMeter, Level
from sfu.forwarding.target import LayerCaps, choose_target, window_spatial

RES = [(320, 180), (640, 360), (1280, 720)]


def target(**kw):  # type: ignore[no-untyped-def]
    args = dict(spatial_layers=3, temporal_layers=3, resolutions=RES)
    args.update(kw)
    return choose_target(**args)


def test_window_fit_uses_the_tolerance() -> None:
    assert window_spatial(RES, 3, 320, 180) == 0
    assert window_spatial(RES, 3, 534, 300) == 1  # 640 <= 1.2 * 534
    assert window_spatial(RES, 3, 533, 300) == 0
    assert window_spatial(RES, 3, 1067, 600) == 2
    assert window_spatial(RES, 3, 100, 100) == 0  # nothing fits: the lowest layer
    assert window_spatial(RES, 3, 2000, 200) == 0  # height limits too
    assert window_spatial(RES, 3, 2000, 300) == 1


def test_no_input_gives_the_top_layer() -> None:
    t = target()
    assert (t.spatial, t.temporal, t.paused, t.reason) == (2, 2, False, "policy")


def test_lowest_input_wins_with_its_reason() -> None:
    assert target(window=(640, 360)).reason == "window"
    t = target(window=(640, 360), pin=(0, 2))
    assert (t.spatial, t.temporal, t.reason) == (0, 2, "pin")
    t = target(window=(320, 180), pin=(2, 1))
    assert (t.spatial, t.temporal) == (0, 1)
    t = target(window=(1280, 720), caps=LayerCaps(max_spatial=1, max_temporal=1))
    assert (t.spatial, t.temporal, t.reason) == (1, 1, "policy")
    t = target(caps=LayerCaps(max_width=700))
    assert (t.spatial, t.reason) == (1, "policy")


def test_hidden_window_pauses() -> None:
    t = target(window=(0, 0))
    assert t.paused and t.reason == "window"


def test_budget_picks_the_best_level_that_fits() -> None:
    levels = [
        Level(s, t, *RES[s], 7.5 * 2**t, 100_000 * (s + 1) * (t + 1))
        for s in range(3)
        for t in range(3)
    ]
    t = target(levels=levels, budget=350_000)
    # the highest spatial layer first, then the highest temporal layer that still fits
    assert (t.spatial, t.temporal, t.reason) == (2, 0, "bandwidth")
    t = target(levels=levels, budget=50_000)
    assert t.paused and t.reason == "bandwidth"
    t = target(levels=levels, budget=math.inf)
    assert (t.spatial, t.temporal) == (2, 2)


def test_max_fps_cap_uses_measured_rates() -> None:
    levels = [Level(s, t, *RES[s], 7.5 * 2**t, 1) for s in range(3) for t in range(3)]
    t = target(levels=levels, caps=LayerCaps(max_fps=15))
    assert t.temporal == 1


def test_layer_meter_rates() -> None:
    meter = LayerMeter()
    now = 0.0
    for frame in range(120):  # 4 s at 30 fps: T0 every 4th frame, 1000 bytes per layer frame
        tid = (0, 2, 1, 2)[frame % 4]
        for sid in range(3):
            meter.add(sid, tid, 1000, True, now)
        now += 1 / 30
    levels = {(lv.spatial, lv.temporal): lv for lv in meter.levels(now, 3, 3, RES)}
    assert abs(levels[(0, 0)].fps - 7.5) < 1
    assert abs(levels[(2, 2)].fps - 30) < 2
    assert abs(levels[(0, 2)].bitrate - 30 * 8000) < 20000
    assert abs(levels[(2, 2)].bitrate - 3 * 30 * 8000) < 60000
    assert levels[(1, 0)].width == 640


def test_layer_meter_levels_remembered_within_a_bucket_match_a_fresh_count() -> None:
    """levels() is asked by every subscriber on every tick and remembered until a bucket
    closes; whatever the order of packets (some late, from an earlier bucket) and questions,
    it answers what counting afresh answers."""
    rng = random.Random(5)
    meter = LayerMeter()
    fresh = meter._compute_levels
    computed = 0

    def counted(*args: Any) -> list[Level]:
        nonlocal computed
        computed += 1
        return fresh(*args)

    meter._compute_levels = counted  # type: ignore[method-assign]
    now = 0.0
    targets = {(0, 0): 0, (1, 1): 4, (2, 2): 8}
    asked = 0
    for i in range(4000):
        now += rng.random() * 0.02
        at = now - (rng.random() * 0.6 if rng.random() < 0.05 else 0.0)
        if rng.random() < 0.7:
            present = rng.choice([-1, 5, 0x1FF]) if i > 1500 else -1
            meter.add(rng.randrange(3), rng.randrange(3), 1000, rng.random() < 0.3, at, present)
            continue
        resolutions = RES if rng.random() < 0.98 else RES[:2]
        decode_targets = targets if rng.random() < 0.98 else None
        got = meter.levels(at, 3, 3, resolutions, decode_targets)
        asked += 1
        assert got == fresh(at, 3, 3, resolutions, decode_targets)
    assert 0 < computed < asked / 2, (computed, asked)  # most answered from memory


def test_the_cpu_cap_is_one_more_input_with_its_reason() -> None:
    t = target(cpu=(1, 2))
    assert (t.spatial, t.temporal, t.reason) == (1, 2, "cpu")
    # a window lower than the cap: the window binds
    t = target(cpu=(1, 2), window=(320, 180))
    assert (t.spatial, t.temporal, t.reason) == (0, 2, "window")
    # the cap lowers the temporal layer at the bottom spatial layer
    t = target(cpu=(0, 1), window=(320, 180))
    assert (t.spatial, t.temporal, t.reason) == (0, 1, "cpu")
    # bandwidth below the cap: bandwidth binds
    t = target(cpu=(1, 2), bandwidth=(0, 2))
    assert (t.spatial, t.temporal, t.reason) == (0, 2, "bandwidth")
