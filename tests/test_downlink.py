"""The downlink allocation policy over time (sans-IO): pause debounce, holds after a
down-switch, fast reallocation, and when (and at what rate) to probe."""

from __future__ import annotations

from sfu.allocation.allocator import Demand
from sfu.allocation.downlink import (
    Decision,
    DownlinkAllocator,
    Link,
    ProbeOutcome,
    VideoState,
    reallocate_now,
)
from sfu.forwarding.meter import Level
from sfu.forwarding.target import Allocation

# bits/s of each level (spatial, temporal) of the one camera below
RATES = {(0, 0): 100_000, (1, 0): 300_000, (1, 1): 400_000, (2, 0): 900_000}
RES = [(320, 180), (640, 360), (1280, 720)]
HEADROOM = 0.9


def camera(current: tuple[int, int] | None = None) -> Demand:
    levels = [Level(s, t, *RES[s], 15.0 * 2**t, rate) for (s, t), rate in RATES.items()]
    return Demand("cam", 1, levels, 2, 1, current)


def has(spatial: int, temporal: int) -> VideoState:
    """A video the bandwidth gives (spatial, temporal) now, with no hold."""
    return VideoState(Allocation(spatial, temporal, False, RATES[spatial, temporal]))


def capped(
    allocator: DownlinkAllocator,
    now: float,
    cap: int,
    state: VideoState,
    current: tuple[int, int] | None = (0, 0),
) -> Decision:
    """An allocation by the policy's cap alone (no estimate: no proven rate, no probe)."""
    return allocator.allocate(
        now, [camera(current)], link=None, cap=cap, headroom=HEADROOM, states={"cam": state}
    )


PAUSED = Allocation(0, 0, True, 0)


# -- what is shared ----------------------------------------------------------------------------


def test_nothing_to_share_without_an_estimate_or_a_cap() -> None:
    decision = DownlinkAllocator().allocate(0.0, [camera()], link=None, cap=None, headroom=HEADROOM)
    assert (decision.available, decision.usable, decision.levels) == (None, None, {})
    assert decision.kept == frozenset() and decision.probe is None


def test_climbing_is_held_to_the_proven_rate() -> None:
    allocator = DownlinkAllocator()
    first = allocator.allocate(
        0.0, [camera((1, 0))], link=Link(500_000), cap=None, headroom=HEADROOM
    )
    # 500k: S1T1 (400k) > 0.9 x 0.85 x 500k = 382.5k: S1T0 is kept
    assert first.levels == {"cam": Allocation(1, 0, False, 300_000)}
    # the estimate grew by itself to 900k: that proves nothing, the level stays
    grown = allocator.allocate(
        0.25, [camera((1, 0))], link=Link(900_000), cap=None, headroom=HEADROOM
    )
    assert (grown.available, grown.usable) == (900_000, 500_000)
    assert grown.levels == {"cam": Allocation(1, 0, False, 300_000)}
    # the policy's cap below the estimate is what is shared
    limited = allocator.allocate(
        0.5, [camera((1, 0))], link=Link(900_000), cap=200_000, headroom=HEADROOM
    )
    assert (limited.available, limited.usable) == (200_000, 200_000)


# -- pause debounce ---------------------------------------------------------------------------


def test_a_video_is_paused_only_after_its_lowest_level_has_not_fitted_for_a_second() -> None:
    allocator = DownlinkAllocator()
    # 100k x 0.9 = 90k < 100k, the lowest level: no room
    assert capped(allocator, 10.0, 100_000, has(0, 0)).kept == {"cam"}
    later = capped(allocator, 10.9, 100_000, has(0, 0))
    assert later.kept == {"cam"} and later.levels == {}
    assert capped(allocator, 11.0, 100_000, has(0, 0)).levels == {"cam": PAUSED}


def test_room_again_restarts_the_wait_for_a_pause() -> None:
    allocator = DownlinkAllocator()
    assert capped(allocator, 20.0, 100_000, has(0, 0)).kept == {"cam"}
    fits = capped(allocator, 20.5, 200_000, has(0, 0))
    assert fits.levels == {"cam": Allocation(0, 0, False, 100_000)} and not fits.kept
    assert capped(allocator, 20.6, 100_000, has(0, 0)).kept == {"cam"}
    assert capped(allocator, 21.5, 100_000, has(0, 0)).kept == {"cam"}  # 0.9 s of 1
    assert capped(allocator, 21.6, 100_000, has(0, 0)).levels == {"cam": PAUSED}


def test_a_paused_video_stays_paused_at_once() -> None:
    allocator = DownlinkAllocator()
    assert capped(allocator, 5.0, 100_000, VideoState(PAUSED)).levels == {"cam": PAUSED}


def test_a_video_no_longer_received_is_forgotten() -> None:
    allocator = DownlinkAllocator()
    assert capped(allocator, 30.0, 100_000, has(0, 0)).kept == {"cam"}
    allocator.forget("cam")
    # the same track id again (a new subscription): its wait starts now, not at 30.0
    assert capped(allocator, 31.0, 100_000, has(0, 0)).kept == {"cam"}
    assert capped(allocator, 32.0, 100_000, has(0, 0)).levels == {"cam": PAUSED}


# -- hold after a bandwidth down-switch --------------------------------------------------------

#: S1T0 since a down-switch at 10.0, when 400k were available; a hold of 4 s
HELD = VideoState(Allocation(1, 0, False, 300_000), 10.0, 4.0, 400_000)


def test_no_climb_during_the_hold() -> None:
    # 590k: S1T1 (400k) fits 0.9 x 0.85 x 590k = 451k, but 590k < 1.5 x 400k
    decision = capped(DownlinkAllocator(), 12.0, 590_000, HELD, current=(1, 0))
    assert decision.kept == {"cam"} and decision.levels == {}
    assert capped(DownlinkAllocator(), 13.9, 590_000, HELD, current=(1, 0)).kept == {"cam"}


def test_the_hold_ends_after_its_length() -> None:
    decision = capped(DownlinkAllocator(), 14.0, 550_000, HELD, current=(1, 0))
    assert decision.levels == {"cam": Allocation(1, 1, False, 400_000)}


def test_a_link_that_clearly_grew_ends_the_hold_early() -> None:
    # 600k = 1.5 x the 400k available at the down-switch
    decision = capped(DownlinkAllocator(), 12.0, 600_000, HELD, current=(1, 0))
    assert decision.levels == {"cam": Allocation(1, 1, False, 400_000)}


def test_a_hold_does_not_stop_a_further_fall_nor_a_resume() -> None:
    # 200k: 0.9 x 200k = 180k, only S0T0 fits: down at once, hold or not
    down = capped(DownlinkAllocator(), 12.0, 200_000, HELD, current=(1, 0))
    assert down.levels == {"cam": Allocation(0, 0, False, 100_000)}
    paused = VideoState(PAUSED, 10.0, 4.0, 400_000)
    resumed = capped(DownlinkAllocator(), 12.0, 550_000, paused, current=None)
    assert resumed.levels == {"cam": Allocation(1, 1, False, 400_000)}


# -- fast reallocation -------------------------------------------------------------------------


def test_a_sharp_fall_of_the_estimate_is_allocated_at_once() -> None:
    assert reallocate_now(1_000_000, 690_000)
    assert not reallocate_now(1_000_000, 700_000)  # 0.7 x: not below
    assert not reallocate_now(1_000_000, 1_200_000)
    assert not reallocate_now(None, 500_000) and not reallocate_now(1_000_000, None)


def test_a_fall_lowers_a_kept_level_without_waiting() -> None:
    allocator = DownlinkAllocator()
    top = Link(2_000_000)
    first = allocator.allocate(
        0.0, [camera((2, 0))], link=top, cap=None, headroom=HEADROOM, states={"cam": has(2, 0)}
    )
    assert first.levels == {"cam": Allocation(2, 0, False, 900_000)}
    fell = allocator.allocate(
        0.05,
        [camera((2, 0))],
        link=Link(600_000),
        cap=None,
        headroom=HEADROOM,
        states={"cam": has(2, 0)},
    )
    # 0.9 x 600k = 540k: S1T1 (400k) is kept (a held level needs no margin), S2 is not
    assert fell.levels == {"cam": Allocation(1, 1, False, 400_000)} and not fell.kept


# -- when and how much to probe -----------------------------------------------------------------

# at 500k the camera gets S1T0 (300k); S1T1 needs 400k / 0.9 / 0.85 = 522_875 and the top
# (S2T0, 900k) 1_176_470
WANTED = 1_176_470
NEXT_LEVEL = 522_875


def probe_at(
    allocator: DownlinkAllocator, now: float, link: Link, *, probing: bool = False
) -> int | None:
    return allocator.allocate(
        now, [camera((1, 0))], link=link, cap=None, headroom=HEADROOM, probing=probing
    ).probe


def test_a_probe_asks_for_the_top_up_to_twice_the_proven_rate() -> None:
    allocator = DownlinkAllocator()
    assert probe_at(allocator, 10.0, Link(500_000)) == 1_000_000  # min(WANTED, 2 x 500k)
    assert allocator.probe.cluster == 1 and allocator.probe.running
    # one at a time
    assert probe_at(allocator, 10.25, Link(500_000)) is None
    # a probe abandoned (cancelled) lets the next one start
    allocator.abandon_probe()
    assert probe_at(allocator, 10.5, Link(500_000)) == 1_000_000
    assert allocator.probe.cluster == 2


def test_a_probe_asks_for_what_the_top_needs_when_that_is_less() -> None:
    assert probe_at(DownlinkAllocator(), 10.0, Link(700_000)) == WANTED  # < 2 x 700k


def test_no_probe_when_not_needed() -> None:
    # every video at its top: nothing to probe for
    assert probe_at(DownlinkAllocator(), 10.0, Link(2_000_000)) is None
    # a probe cluster still being sent or measured (the adapter's task)
    assert probe_at(DownlinkAllocator(), 10.0, Link(500_000), probing=True) is None
    # the policy's cap at or below the proven rate: more would not be given anyway
    capped_at = DownlinkAllocator().allocate(
        10.0, [camera((1, 0))], link=Link(500_000), cap=500_000, headroom=HEADROOM
    )
    assert capped_at.probe is None
    # no estimate (the cap alone): nothing to prove
    assert capped(DownlinkAllocator(), 10.0, 500_000, has(1, 0), current=(1, 0)).probe is None


def test_no_probe_within_two_seconds_of_overuse_then_one_level_up() -> None:
    allocator = DownlinkAllocator()
    assert probe_at(allocator, 10.0, Link(500_000, overusing=True, delivered=450_000)) is None
    assert allocator.congested_at == 10.0 and allocator.probe.careful
    assert allocator.probe.full_at == 0  # overuse alone may be a frame's burst
    assert probe_at(allocator, 11.9, Link(500_000)) is None
    # careful: one level up with 10 % to spare (more than 1.1 x the proven 500k)
    assert probe_at(allocator, 12.0, Link(500_000)) == int(1.1 * NEXT_LEVEL)


def test_no_probe_within_two_seconds_of_loss() -> None:
    allocator = DownlinkAllocator()
    assert probe_at(allocator, 10.0, Link(500_000, loss=0.06)) is None
    assert allocator.congested_at == 10.0
    assert probe_at(allocator, 11.0, Link(500_000, loss=0.05)) is None  # 5 %: not loss
    assert allocator.congested_at == 10.0
    assert probe_at(allocator, 12.0, Link(500_000)) is not None


def test_overuse_with_loss_is_a_full_link_whose_delivery_is_its_capacity() -> None:
    allocator = DownlinkAllocator()
    full = Link(500_000, overusing=True, loss=0.1, delivered=450_000)
    assert probe_at(allocator, 10.0, full) is None
    assert allocator.probe.full_at == 450_000
    # the careful probe asks for 1.6 x that (has the link grown?), above one level up
    assert probe_at(allocator, 12.0, Link(500_000)) == 720_000


# -- after a probe -------------------------------------------------------------------------------


def started() -> DownlinkAllocator:
    allocator = DownlinkAllocator()
    assert probe_at(allocator, 10.0, Link(500_000)) == 1_000_000
    return allocator


STATES = {"plain": VideoState(up_hold=4.0), "doubled": VideoState(up_hold=8.0)}


def test_a_probe_that_got_its_rate_through_ends_the_plain_holds() -> None:
    outcome = started().finish_probe(10.5, 950_000, 1_000_000, STATES)
    assert outcome == ProbeOutcome(950_000, frozenset({"plain"}))


def test_a_probe_that_proved_less_than_its_rate_ends_no_hold() -> None:
    allocator = started()
    outcome = allocator.finish_probe(10.5, 800_000, 1_000_000, STATES)  # < 0.9 x its rate
    assert outcome == ProbeOutcome(800_000, frozenset())
    assert allocator.probe.proven == 800_000 and not allocator.probe.running


def test_a_probe_that_proved_nothing_raises_nothing() -> None:
    assert started().finish_probe(10.5, None, 1_000_000, STATES) == ProbeOutcome(None, frozenset())
    below = started()
    assert below.finish_probe(10.5, 400_000, 1_000_000, STATES) == ProbeOutcome(None, frozenset())
    assert below.probe.proven == 500_000
