"""Probing (sans-IO): what a probe asks for, and what its result proves (what the videos
would need is the allocator's: tests/test_allocator.py)."""

from sfu.bwe.probe import ProbeController


def test_probing_asks_for_the_top_up_to_twice_the_proven_rate_then_carefully() -> None:
    # probing asks for the top, up to 2x the proven rate...
    controller = ProbeController()
    controller.follow(500_000)
    assert controller.target(3_000_000, 600_000) == 1_000_000
    # ... an estimate that grew by itself proves nothing; a drop is followed at once
    assert controller.follow(900_000) == 500_000
    assert controller.follow(400_000) == 400_000
    # after congestion, carefully: one level up, and at least 1.6x what the link delivered
    # full (has it grown?)
    controller.on_congestion(380_000)
    assert controller.careful
    assert controller.target(3_000_000, 420_000) == int(1.6 * 380_000)
    assert controller.target(3_000_000, 600_000) == int(1.1 * 600_000)
    # ... even when that is more than 2x the proven rate (after a deep fall)
    controller.follow(150_000)
    assert controller.target(3_000_000, 200_000) == int(1.6 * 380_000)
    controller.proven = 400_000
    # a result within a shaper's burst allowance of that proves nothing
    assert controller.start(494_000, 1.0) == 494_000
    assert not controller.finish(1.2, result=450_000, rate=494_000)
    assert controller.proven == 400_000 and controller.careful
    assert controller.start(494_000, 1.3) is None  # backing off
    # clearly more does, and raises the proven rate
    assert controller.start(494_000, 5.0) == 494_000
    assert controller.finish(5.2, result=480_000, rate=494_000)
    assert controller.proven == 480_000 and controller.careful
    # 1.5x the full rate: the link has grown, careful probing ends
    assert controller.start(700_000, 6.0) == 700_000
    assert controller.finish(6.2, result=690_000, rate=700_000)
    assert not controller.careful
    # ... and the next probe takes a bigger step (the link may have grown a lot)
    assert controller.target(9_000_000, 800_000) == 4 * 690_000
    # a probe that arrives slower than sent: the link is full at about what arrived
    assert controller.start(1_380_000, 7.0) == 1_380_000
    assert controller.finish(7.2, result=900_000, rate=1_380_000)  # more than proven
    assert controller.careful and controller.full_at == 900_000
    # while careful, the most a saturated probe measured is kept (a probe that met a burst
    # of media gets less through than the link carries); congestion sets it anew
    controller.finish(7.5, result=800_000, rate=1_300_000)
    assert controller.full_at == 900_000
    controller.on_congestion(700_000)
    assert controller.full_at == 700_000
    controller.careful = False  # (as if released again, but not just now)
    controller.finish(8.0, result=None, rate=1_000_000)
    controller.careful = False
    assert controller.target(9_000_000, 1_000_000) == 2 * 900_000
