"""The retransmission budget of one subscriber: bytes within a share of the media forwarded
over a sliding window, NACK items within a per-packet cap and a rate (exact inputs)."""

from __future__ import annotations

import pytest

from sfu.forwarding.rtx_budget import RetransmissionBudget


def test_nothing_before_media_was_seen_forwarded() -> None:
    budget = RetransmissionBudget()
    assert budget.bytes == 0
    budget.refill(50_000, 0.0)  # the first refill only sets the baseline
    assert budget.bytes == 0
    budget.refill(60_000, 0.25)
    assert budget.bytes == 10_000


def test_bytes_follow_the_media_forwarded_over_the_window() -> None:
    budget = RetransmissionBudget(ratio=0.5, window=1.0)
    budget.refill(0, 0.0)
    for i in range(1, 5):  # 10 kB forwarded every 250 ms
        budget.refill(10_000 * i, 0.25 * i)
    assert budget.bytes == 0.5 * 40_000
    budget.spend(15_000)
    assert budget.bytes == 5_000
    budget.refill(50_000, 1.25)  # the 0.25 s record leaves the window: 40 kB in it
    assert budget.bytes == 0.5 * 40_000 - 15_000
    for i in range(6, 10):  # the spend leaves the window with the refill that recorded it
        budget.refill(10_000 * i, 0.25 * i)
    assert budget.bytes == 0.5 * 40_000


def test_media_stopped_leaves_nothing_once_the_window_passed() -> None:
    budget = RetransmissionBudget(ratio=1.0, window=1.0)
    budget.refill(0, 0.0)
    budget.refill(100_000, 0.25)
    assert budget.bytes == 100_000
    for t in (0.5, 0.75, 1.0):
        budget.refill(100_000, t)
        assert budget.bytes == 100_000
    budget.refill(100_000, 1.25)
    assert budget.bytes == 0


def test_a_total_that_drops_counts_as_nothing_forwarded() -> None:
    """A down track removed takes its bytes out of the subscriber's total."""
    budget = RetransmissionBudget(ratio=1.0)
    budget.refill(0, 0.0)
    budget.refill(30_000, 0.25)
    budget.refill(5_000, 0.5)
    assert budget.bytes == 30_000
    budget.refill(8_000, 0.75)
    assert budget.bytes == 33_000


@pytest.mark.parametrize("step", [0.05, 0.25, 0.5])
def test_any_window_takes_at_most_the_ratio_of_its_media(step: float) -> None:
    """A greedy subscriber spending everything it may, the moment it may, at a media rate
    that changes: over every window, retransmitted <= ratio x media forwarded from two
    refill intervals before the window to its end."""
    ratio, window = 1.0, 1.0
    budget = RetransmissionBudget(ratio=ratio, window=window)
    media_total = 0
    media: list[tuple[float, int]] = []  # (time, bytes forwarded since the previous refill)
    spent: list[tuple[float, int]] = []
    t = 0.0
    rates = [100_000, 20_000, 300_000, 0, 50_000]
    while t < 10:
        t = round(t + step, 6)
        forwarded = int(rates[int(t) % len(rates)] * step)
        media_total += forwarded
        media.append((t, forwarded))
        budget.refill(media_total, t)
        while budget.bytes >= 1200:  # spends right after the refill, in 1200-byte packets
            budget.spend(1200)
            spent.append((t, 1200))
    for start in [x / 20 for x in range(0, 200)]:
        end = start + window
        rtx = sum(size for at, size in spent if start < at <= end)
        allowed = ratio * sum(size for at, size in media if start - 2 * step < at <= end)
        assert rtx <= allowed, (start, rtx, allowed)
    # and it is not much stricter than that: most of the media's worth was spent
    assert sum(size for _, size in spent) > 0.8 * ratio * media_total


def test_nack_items_per_packet_and_per_second() -> None:
    budget = RetransmissionBudget(items_per_packet=100, items_per_second=250)
    assert budget.nack_limit(0.0) == (100, "nack_cap")
    budget.take_nack_items(100)
    assert budget.nack_limit(0.0) == (100, "nack_cap")
    budget.take_nack_items(100)
    assert budget.nack_limit(0.0) == (50, "nack_rate")
    budget.take_nack_items(50)
    assert budget.nack_limit(0.0) == (0, "nack_rate")
    assert budget.nack_limit(0.1) == (25, "nack_rate")  # 250 a second
    budget.take_nack_items(25)
    assert budget.nack_limit(10.0) == (100, "nack_cap")  # at most one second's worth held
    budget.take_nack_items(100)
    budget.take_nack_items(100)
    assert budget.nack_limit(10.0) == (50, "nack_rate")
    # an overdraft (a caller that handled more than it was allowed) is paid back first
    budget.take_nack_items(150)
    assert budget.nack_limit(10.0) == (0, "nack_rate")
    assert budget.nack_limit(10.4) == (0, "nack_rate")
    assert budget.nack_limit(10.8) == (100, "nack_cap")
