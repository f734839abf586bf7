"""A simulated subscriber's flat bookkeeping (loadtest/tally.py) against plain models: the
window of sequence numbers seen, packets and bytes by second, and the feedback builder's
short path byte for byte against sfu.rtp.twcc's builder."""

from __future__ import annotations

import random

import pytest

from loadtest.tally import FeedbackBuilder, PerSecond, SeenWindow
from sfu.rtp.twcc import TransportFeedbackBuilder, parse_transport_feedback


class _SeenModel:
    """Extended sequence numbers: a number is a duplicate when it was received and is less
    than half the space behind the highest."""

    def __init__(self) -> None:
        self.received: set[int] = set()
        self.highest: int | None = None

    def add(self, seq: int) -> bool:
        if self.highest is None:
            self.highest = seq
            self.received.add(seq)
            return True
        ahead = (seq - self.highest) & 0xFFFF
        extended = self.highest + ahead if ahead < 0x8000 else self.highest - (0x10000 - ahead)
        inside = extended > self.highest - 0x8000
        if inside and extended in self.received:
            return False
        if inside:
            self.received.add(extended)
        self.highest = max(self.highest, extended)
        return True


@pytest.mark.parametrize("seed", range(6))
def test_seen_window_against_a_model(seed: int) -> None:
    rng = random.Random(seed)
    window, model = SeenWindow(), _SeenModel()
    seq = rng.randrange(0x10000)
    recent: list[int] = []
    for _ in range(60_000):
        r = rng.random()
        if r < 0.8:
            seq = (seq + 1) & 0xFFFF
        elif r < 0.9:
            seq = (seq + rng.randrange(2, 300)) & 0xFFFF  # a gap
        elif r < 0.93:
            seq = (seq + rng.choice([0x7FFF, 0x8000, 0x8001, 40_000])) & 0xFFFF  # far
        if r >= 0.95 and recent:
            number = rng.choice(recent)  # a duplicate or a late one
        else:
            number = seq
        recent = (recent + [number])[-500:]
        assert window.add(number) == model.add(number), number
        assert window.highest == model.highest % 0x10000  # type: ignore[operator]


def test_seen_window_in_order_wraps_and_drops_duplicates() -> None:
    window = SeenWindow()
    for i in range(3 * 0x10000):
        assert window.add(i & 0xFFFF)
        if i % 1000 == 0:
            assert not window.add(i & 0xFFFF)
            assert not window.add((i - 5) & 0xFFFF) if i >= 5 else True
    assert window.highest == (3 * 0x10000 - 1) & 0xFFFF


def test_per_second_counts_as_a_dict_by_int_seconds() -> None:
    rng = random.Random(1)
    started = 1000.25
    counts = PerSecond(started)
    packets: dict[int, int] = {}
    sizes: dict[int, int] = {}
    now = started
    for _ in range(5000):
        now += rng.choice([0.001, 0.004, 0.3, 1.7])
        size = rng.randrange(20, 1300)
        counts.add(now, size)
        second = int(now - started)
        packets[second] = packets.get(second, 0) + 1
        sizes[second] = sizes.get(second, 0) + size
    assert counts.packets_by_second() == packets
    assert counts.bytes_by_second() == sizes


def _arrivals(rng: random.Random, n: int) -> list[tuple[int, float]]:
    """(transport sequence number, arrival) with losses, reordering, duplicates, late and
    bursty arrivals, pauses and jumps back in time."""
    out = []
    seq = rng.randrange(0x10000)
    now = 500.0 + rng.random()
    for _ in range(n):
        r = rng.random()
        now += rng.choice([0.0, 0.0001, 0.003, 0.02, 0.07, 0.3]) if r < 0.97 else -0.01
        if r < 0.05:
            seq += rng.randrange(2, 40)  # lost ones
        elif r < 0.08:
            out.append(((seq - rng.randrange(1, 30)) & 0xFFFF, now))  # late or duplicate
            continue
        else:
            seq += 1
        out.append((seq & 0xFFFF, now))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_feedback_builder_bytes_are_the_base_builders(seed: int) -> None:
    rng = random.Random(seed)
    fast, base = FeedbackBuilder(0x1234, 0), TransportFeedbackBuilder(0x1234, 0)
    built_count = 0
    # two runs in three: the common case, in order (bursts of packets microseconds apart
    # between gaps of up to 60 ms)
    clean = seed % 3 != 0
    if clean:
        arrivals, now = [], 100.0
        for i in range(4000):
            now += rng.choice([0.0, 0.00001, 0.00012, 0.00013, 0.004, 0.06])
            arrivals.append(((7 + i) & 0xFFFF, now))
    else:
        arrivals = _arrivals(rng, 4000)
    for i, (seq, at) in enumerate(arrivals):
        fast.on_packet(seq, at)
        base.on_packet(seq, at)
        if rng.random() < 0.08 or i == len(arrivals) - 1:
            built = fast.build()
            assert built == base.build()
            built_count += len(built)
            for packet in built:
                parse_transport_feedback(packet[12:])
    assert built_count > 100 and fast.short_builds > 0
    if clean:  # all but those whose first delta from the 64 ms reference is over 63.75 ms
        assert fast.short_builds > 0.97 * built_count
    assert fast.build() == base.build() == []


def test_feedback_builder_takes_the_short_path_for_in_order_arrivals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = FeedbackBuilder(1, 0)
    calls = []
    monkeypatch.setattr(
        TransportFeedbackBuilder,
        "build",
        lambda self: calls.append(1) or [],  # type: ignore[func-returns-value]
    )
    for i in range(10):
        fast.on_packet(i, 10.0 + 0.005 * i)
    (packet,) = fast.build()
    assert not calls
    report = parse_transport_feedback(packet[12:])
    assert [s for s, _ in report.packets] == list(range(10))
    fast.on_packet(12, 10.1)  # two lost: the base class builds it
    assert fast.build() == [] and calls == [1]


def test_feedback_builder_over_the_history_and_the_wrap() -> None:
    """70000 packets (past the 16-bit wrap and the builder's history several times), a few
    lost, late or far behind, feedback every ten or so."""
    rng = random.Random(7)
    fast, base = FeedbackBuilder(9, 0), TransportFeedbackBuilder(9, 0)
    now, seq = 0.0, 65000
    for i in range(70_000):
        now += rng.choice([0.0, 0.0001, 0.004])
        r = rng.random()
        seq += rng.randrange(2, 5) if r < 0.01 else 1
        number = (seq - (20_000 if r > 0.9995 else 3)) if 0.995 < r else seq
        fast.on_packet(number & 0xFFFF, now)
        base.on_packet(number & 0xFFFF, now)
        if i % 10 == 9 or r < 0.02:
            assert fast.build() == base.build()
    assert fast.short_builds > 5000
