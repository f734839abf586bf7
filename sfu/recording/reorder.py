"""Packets of one RTP stream put back in sequence-number order, gaps declared lost (sans-IO).

A recorder is not in a hurry: it holds a packet that comes after a gap until the gap fills
(a late packet, the publisher's retransmission of a NACKed one) or until the gap has lasted
``window`` seconds of arrival time, or ``capacity`` packets wait behind it; then the missing
packets are declared lost and the packets after them go on.  A packet behind what was already
given out (too late, or a duplicate) is dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Ordered", "ReorderBuffer"]

T = TypeVar("T")


@dataclass(slots=True)
class Ordered(Generic[T]):
    """One packet in sequence-number order, and how many packets were declared lost just
    before it."""

    lost_before: int
    sequence: int  # extended (unwrapped) sequence number
    item: T


class ReorderBuffer(Generic[T]):
    def __init__(self, window: float = 0.5, capacity: int = 512) -> None:
        self.window = window
        self.capacity = capacity
        #: the extended sequence number of the next packet to give out (None: none seen yet)
        self.next: int | None = None
        self._held: dict[int, tuple[T, float]] = {}
        self._lost = 0
        #: counts: packets too late or duplicated (dropped), packets declared lost
        self.dropped = 0
        self.lost = 0

    def extend(self, sequence: int) -> int:
        """The extended sequence number of a 16-bit one, nearest to what comes next."""
        if self.next is None:
            return sequence
        return self.next + ((sequence - self.next + 0x8000) & 0xFFFF) - 0x8000

    def push(self, sequence: int, item: T, now: float) -> list[Ordered[T]]:
        """Hold ``item`` (16-bit ``sequence``, arrived at ``now``); return what is now in
        order."""
        ext = self.extend(sequence)
        if self.next is None:
            self.next = ext
        if ext < self.next or ext in self._held:
            self.dropped += 1
            return self.poll(now)
        self._held[ext] = (item, now)
        return self.poll(now)

    def poll(self, now: float) -> list[Ordered[T]]:
        """What is in order by ``now``: the run from the next sequence number, and past each
        gap that has waited long enough."""
        out: list[Ordered[T]] = []
        held = self._held
        while held:
            assert self.next is not None
            if self.next not in held:
                first = min(held)
                if len(held) < self.capacity and now - held[first][1] < self.window:
                    break
                self._declare_lost(first)
            item, _ = held.pop(self.next)
            out.append(Ordered(self._lost, self.next, item))
            self._lost = 0
            self.next += 1
        return out

    def flush(self) -> list[Ordered[T]]:
        """Everything held, in order, every gap declared lost (the stream ended)."""
        out: list[Ordered[T]] = []
        while self._held:
            self._declare_lost(min(self._held))
            out += self.poll(float("-inf"))
        return out

    def _declare_lost(self, first: int) -> None:
        assert self.next is not None
        self._lost += first - self.next
        self.lost += first - self.next
        self.next = first
