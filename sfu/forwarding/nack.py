"""Generation of NACKs towards a publisher for packets missing from its stream (RFC 4585)."""

from __future__ import annotations

MAX_AGE_PACKETS = 512
MAX_RETRIES = 5


class NackGenerator:
    """Tracks sequence-number gaps; ``add`` and ``poll`` return what to NACK now."""

    def __init__(self, retry_interval: float = 0.05) -> None:
        self.retry_interval = retry_interval
        self._highest: int | None = None
        #: missing sequence number -> (retries so far, time of the last NACK)
        self._missing: dict[int, tuple[int, float]] = {}
        #: packets given up on (their retries spent, or too far behind): lost for good, so
        #: the pictures after them may not decode until a keyframe
        self.given_up = 0

    @property
    def missing(self) -> list[int]:
        return sorted(self._missing)

    def add(self, sequence_number: int, now: float) -> list[int]:
        """Account for a received packet; returns newly missing sequence numbers to NACK."""
        if self._highest is None:
            self._highest = sequence_number
            return []
        delta = (sequence_number - self._highest) & 0xFFFF
        if delta == 0:
            return []
        if delta >= 0x8000:  # older: a retransmission or reordering filled a gap
            self._missing.pop(sequence_number, None)
            return []
        new: list[int] = []
        if delta >= MAX_AGE_PACKETS:  # a gap too long to NACK: lost for good
            self.given_up += delta - 1
        elif delta > 1:
            for i in range(1, delta):
                seq = (self._highest + i) & 0xFFFF
                self._missing[seq] = (1, now)
                new.append(seq)
        self._highest = sequence_number
        self._expire()
        return new

    def poll(self, now: float) -> list[int]:
        """Missing packets whose NACK is due again."""
        due = []
        for seq, (tries, last) in list(self._missing.items()):
            if now - last >= self.retry_interval:
                if tries >= MAX_RETRIES:
                    del self._missing[seq]
                    self.given_up += 1
                    continue
                self._missing[seq] = (tries + 1, now)
                due.append(seq)
        return due

    def _expire(self) -> None:
        if self._highest is None:
            return
        for seq in list(self._missing):
            if (self._highest - seq) & 0xFFFF > MAX_AGE_PACKETS:
                del self._missing[seq]
                self.given_up += 1
