from sfu.allocation.allocator import Demand, allocate, needed_for_next_level, needed_for_upgrade
from sfu.forwarding.meter import Level

RES = [(320, 180), (640, 360), (1280, 720)]
# kbit/s of each level (spatial, temporal), all forwarded layers included
RATES = {
    (0, 0): 80,
    (0, 1): 110,
    (0, 2): 150,
    (1, 0): 250,
    (1, 1): 350,
    (1, 2): 500,
    (2, 0): 800,
    (2, 1): 1100,
    (2, 2): 1500,
}


def levels() -> list[Level]:
    return [Level(s, t, *RES[s], 7.5 * 2**t, 1000 * r) for (s, t), r in RATES.items()]


def demand(
    key: str,
    priority: int = 1,
    current: tuple[int, int] | None = None,
    ceiling: tuple[int, int] = (2, 2),
) -> Demand:
    return Demand(key, priority, levels(), *ceiling, current=current)


def test_one_video_gets_the_best_level_that_fits_with_headroom() -> None:
    a = allocate(2_000_000, [demand("v")])["v"]
    assert (a.spatial, a.temporal, a.paused) == (2, 2, False)  # 1500 <= 0.85 * 0.9 * 2000
    a = allocate(600_000, [demand("v")])["v"]
    assert (a.spatial, a.temporal) == (1, 1)  # 500 > 0.9*600*0.85, 350 fits
    a = allocate(80_000, [demand("v")])["v"]
    assert a.paused  # 80 > 0.9 * 80


def test_hysteresis_keeps_a_held_level_but_needs_margin_to_climb() -> None:
    # 1.7 Mbps: 1500 <= 0.9 * 1700 = 1530 but > 0.85 * 1530
    assert (allocate(1_700_000, [demand("v", current=(2, 2))])["v"].spatial) == 2
    a = allocate(1_700_000, [demand("v", current=(2, 1))])["v"]
    assert (a.spatial, a.temporal) == (2, 1)


def test_priorities_lowest_layers_first_then_upgrades() -> None:
    demands = [demand("screen", priority=2), demand("cam1"), demand("cam2")]
    out = allocate(1_000_000, demands)
    assert not any(a.paused for a in out.values())  # everyone gets at least its lowest
    assert out["screen"].bitrate > out["cam1"].bitrate
    assert sum(a.bitrate for a in out.values()) <= 0.9 * 1_000_000
    # too little for all: the lowest priority pauses first
    out = allocate(180_000, demands)
    assert not out["screen"].paused and out["cam2"].paused


def test_the_dominant_speakers_camera_goes_first_among_equal_priorities() -> None:
    def speaker(key: str, rank: int, current: tuple[int, int] | None = None) -> Demand:
        return Demand(key, 1, levels(), 2, 2, current=current, rank=rank)

    # 1.5 Mbit/s: one camera can climb to S2T0 (of 0.85 x 1350k), the other gets what is left
    out = allocate(1_500_000, [speaker("ann", 0), speaker("bob", 1)])
    assert (out["bob"].spatial, out["bob"].temporal) == (2, 0)
    assert (out["ann"].spatial, out["ann"].temporal) == (1, 0)
    # the speaker changes: the allocation follows (ann climbs, bob keeps what still fits)
    held = [speaker("ann", 1, current=(1, 0)), speaker("bob", 0, current=(2, 0))]
    out = allocate(1_500_000, held)
    assert (out["ann"].spatial, out["ann"].temporal) == (2, 0)
    assert (out["bob"].spatial, out["bob"].temporal) == (1, 2)
    # a screen share still goes before the speaker's camera
    out = allocate(1_500_000, [speaker("ann", 1), demand("screen", priority=2)])
    assert out["screen"].bitrate > out["ann"].bitrate
    # and so does the inverse, for probing: the speaker's camera is the next to climb
    demands = [speaker("ann", 0), speaker("bob", 1)]
    step = needed_for_next_level(demands, allocate(1_500_000, demands), 0.9)
    assert step == int((800_000 + 250_000 + 300_000) / 0.9 / 0.85)  # bob's S2T1, not ann's S1T1


def test_ceiling_from_other_inputs_is_respected() -> None:
    a = allocate(10_000_000, [demand("v", ceiling=(0, 2))])["v"]
    assert (a.spatial, a.temporal) == (0, 2)


def test_unmeasured_video_is_not_held_back() -> None:
    a = allocate(100_000, [Demand("v", 1, [], 2, 2)])["v"]
    assert (a.spatial, a.temporal, a.paused) == (2, 2, False)


def test_the_estimate_one_level_more_and_the_top_need() -> None:
    """The inverse of allocate, for probing."""
    levels = [
        Level(s, t, 320 << s, 180 << s, 7.5 * 2**t, bitrate)
        for (s, t), bitrate in {
            (0, 0): 80_000,
            (1, 0): 250_000,
            (1, 1): 310_000,
            (2, 0): 800_000,
            (2, 2): 1_800_000,
        }.items()
    ]
    camera = Demand("cam", 1, levels, 2, 2, (1, 0))
    allocations = allocate(350_000, [camera])
    assert (allocations["cam"].spatial, allocations["cam"].temporal) == (1, 0)
    # the next level (S1T1, 60 kbit/s more) needs 310k / 0.9 / 0.85; the top much more
    step = needed_for_next_level([camera], allocations, 0.9)
    top = needed_for_upgrade([camera], allocations, 0.9)
    assert step == int(310_000 / 0.9 / 0.85)
    assert top == int(1_800_000 / 0.9 / 0.85)
    # a screen share (higher priority) that is paused comes first: its lowest level
    screen = Demand("screen", 2, levels, 2, 2, None)
    both = allocate(100_000, [screen, camera])
    assert both["screen"].paused is False  # it took the budget; the camera is paused
    assert both["cam"].paused is True
    step = needed_for_next_level([screen, camera], both, 0.9)
    assert step == int((both["screen"].bitrate + 80_000) / 0.9 / 0.85)
    # at the top: nothing to probe for
    at_top = allocate(5_000_000, [camera])
    assert needed_for_next_level([camera], at_top, 0.9) is None
