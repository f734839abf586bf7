"""The hold after a bandwidth down-switch (anti-oscillation): doubled only by an up-switch
that did not fit, not by the further steps of one fall, and ended early by a clearly
larger link."""

from __future__ import annotations

import math

from support.captures import VP9, forward, load

from sfu.forwarding.subscription import Subscription
from sfu.forwarding.target import Allocation, LayerCaps


def _subscription() -> Subscription:
    result = forward(load(VP9), {0: (2, 2)})
    subscription = Subscription(result.source, LayerCaps())
    subscription.bind(result.downtrack, 0.0)
    return subscription


def level(spatial: int, temporal: int) -> Allocation:
    return Allocation(spatial, temporal, False, 0)


def test_the_steps_of_one_fall_do_not_lengthen_the_hold() -> None:
    sub = _subscription()
    sub.set_bandwidth(level(2, 2), 0.0, 2_500_000)
    sub.set_bandwidth(level(1, 1), 20.0, 400_000)  # the link fell
    sub.set_bandwidth(level(0, 2), 20.5, 300_000)  # ... and the estimate with it
    assert sub.up_hold == Subscription.MIN_UP_HOLD
    assert sub.available_at_down == 300_000


def test_an_up_switch_that_did_not_fit_doubles_the_hold() -> None:
    sub = _subscription()
    sub.set_bandwidth(level(1, 0), 0.0, 400_000)
    sub.set_bandwidth(level(1, 0), 30.0, 400_000)
    sub.set_bandwidth(level(1, 1), 40.0, 450_000)  # up
    sub.set_bandwidth(level(1, 0), 41.0, 300_000)  # ... down again: it did not fit
    assert sub.up_hold == 2 * Subscription.MIN_UP_HOLD
    # the hold ends early only once clearly more than at that up-switch is available
    assert sub.available_at_down == 450_000
    sub.set_bandwidth(level(0, 2), 41.5, 200_000)  # the same fall: no further doubling
    assert sub.up_hold == 2 * Subscription.MIN_UP_HOLD
    sub.set_bandwidth(level(1, 1), 60.0, 450_000)  # up, long after
    sub.set_bandwidth(level(1, 0), 61.0, 300_000)  # and down: doubled again
    assert sub.up_hold == 4 * Subscription.MIN_UP_HOLD
    sub.set_bandwidth(level(0, 2), 100.0, 200_000)  # a new fall, long after: afresh
    assert sub.up_hold == Subscription.MIN_UP_HOLD


def test_a_level_lowered_by_a_pin_is_not_held() -> None:
    """The allocator follows a pin (or a smaller window) down; that is no bandwidth
    down-switch, so the way back up when the pin is lifted is not held (the browser test's
    pinned T0 stayed at 8 fps for 4 s after auto())."""
    sub = _subscription()
    sub.set_bandwidth(level(2, 2), 0.0, 2_500_000)
    sub.set_pin(2, 0, 10.0)
    sub.set_bandwidth(level(2, 0), 10.0, 2_500_000)
    assert sub.bandwidth_down_at == -math.inf
    sub.set_pin(None, None, 14.0)
    sub.set_bandwidth(level(2, 2), 14.0, 2_500_000)
    assert sub.target is not None and (sub.target.spatial, sub.target.temporal) == (2, 2)
    # below what the pin allows, it is the bandwidth again
    sub.set_pin(2, 1, 20.0)
    sub.set_bandwidth(level(1, 1), 20.0, 600_000)
    assert sub.bandwidth_down_at == 20.0 and sub.available_at_down == 600_000
