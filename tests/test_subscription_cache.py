"""What a subscription works out on every allocation tick is kept until its inputs change:
the priced levels, the ceiling, and the target when the allocator gives the same level at
another measured cost.  Each cache must follow the inputs it was worked out from."""

from __future__ import annotations

from support.captures import VP9, forward, load

from sfu.forwarding.meter import BUCKET
from sfu.forwarding.subscription import Subscription
from sfu.forwarding.target import BANDWIDTH, WINDOW, Allocation, LayerCaps


def _subscription(keep_lower_chain: bool = True) -> tuple[Subscription, float]:
    result = forward(load(VP9), {0: (2, 2)}, keep_lower_chain=keep_lower_chain)
    subscription = Subscription(result.source, LayerCaps())
    subscription.bind(result.downtrack, result.duration)
    return subscription, result.duration


def test_priced_levels_are_the_same_until_the_measurement_moves() -> None:
    sub, now = _subscription()
    first = sub.levels(now)
    assert sub.levels(now) is first
    top = max(level.spatial for level in first)
    raw = {(lv.spatial, lv.temporal): lv.bitrate for lv in sub.source.levels(now)}
    # the top layer carries the lower layer's T0 chain too
    for level in first:
        if level.spatial == top:
            assert level.bitrate == raw[(top, level.temporal)] + raw[(top - 1, 0)]
    # a bucket later the source's figures are worked out again: so are the priced ones
    later = sub.levels(now + 2 * BUCKET)
    assert later is not first
    assert later == sub.levels(now + 2 * BUCKET)


def test_the_ceiling_follows_the_window_and_the_pin() -> None:
    sub, now = _subscription()
    full = sub.ceiling(now)
    assert (full.spatial, full.paused) == (2, False)
    sub.set_window(320, 180, now)
    small = sub.ceiling(now)
    assert (small.spatial, small.reason) == (0, WINDOW)
    sub.set_window(0, 0, now)
    assert sub.ceiling(now).paused
    sub.set_window(1280, 720, now)
    sub.set_pin(1, 1, now)
    assert (sub.ceiling(now).spatial, sub.ceiling(now).temporal) == (1, 1)
    sub.set_pin(None, None, now)
    assert sub.ceiling(now) == full


def test_the_ceiling_follows_a_new_structure() -> None:
    sub, now = _subscription()
    assert sub.ceiling(now).spatial == 2
    layers = sub.source.layers
    assert layers is not None
    # the publisher drops to one spatial layer (a new keyframe's scalability structure)
    layers.spatial_layers = 1
    layers.resolutions = layers.resolutions[:1]
    assert sub.ceiling(now).spatial == 0


def test_the_ceiling_follows_the_caps() -> None:
    sub, now = _subscription()
    sub.set_caps(LayerCaps(max_spatial=1, max_temporal=1), 1.2, now)
    assert (sub.ceiling(now).spatial, sub.ceiling(now).temporal) == (1, 1)
    sub.set_caps(LayerCaps(max_fps=8.0), 1.2, now)
    capped = sub.ceiling(now)
    assert capped.temporal < 2  # the fps cap reads the measured levels


def test_the_same_level_at_another_cost_keeps_the_target_and_the_hold() -> None:
    sub, now = _subscription()
    sub.set_bandwidth(Allocation(2, 2, False, 2_000_000), now, 3_000_000)
    sub.set_bandwidth(Allocation(1, 2, False, 900_000), now + 1, 1_000_000)
    assert sub.target is not None and sub.target.reason == BANDWIDTH
    down_at, hold = sub.bandwidth_down_at, sub.up_hold
    assert down_at == now + 1
    # the next tick measures the level a little differently: nothing else changes
    sub.set_bandwidth(Allocation(1, 2, False, 950_000), now + 1.25, 1_100_000)
    assert sub.bandwidth == Allocation(1, 2, False, 950_000)
    assert (sub.target.spatial, sub.target.temporal) == (1, 2)
    assert (sub.bandwidth_down_at, sub.up_hold) == (down_at, hold)
    # a paused allocation of the same level is a change
    sub.set_bandwidth(Allocation(1, 2, True, 0), now + 2, 100_000)
    assert sub.target.paused


def test_the_ceiling_and_the_target_follow_the_cpu_cap() -> None:
    from sfu.forwarding.target import CPU

    sub, now = _subscription()
    events = []
    sub.on_level_changed = events.append
    full = sub.ceiling(now)
    sub.set_cpu((1, 2), now)
    capped = sub.ceiling(now)
    assert (capped.spatial, capped.temporal, capped.reason) == (1, 2, CPU)
    assert sub.target is not None and (sub.target.spatial, sub.target.reason) == (1, CPU)
    sub.set_cpu(None, now)
    assert sub.ceiling(now) == full
