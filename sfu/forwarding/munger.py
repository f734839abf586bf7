"""Per-subscriber rewriting of RTP sequence numbers and timestamps.

The subscriber must see one continuous stream: packets the SFU chooses not to forward
leave no gap in the sequence numbers, while packets lost upstream still show as gaps (so the
subscriber's NACKs keep meaning something).  A late packet (reordered, or recovered by RTX
upstream) is mapped with the offset that was in force when its slot went past.
"""

from __future__ import annotations

_RING = 1024
_MASK = _RING - 1
_DROPPED = -1


class RtpMunger:
    """Maps incoming (sequence number, timestamp) to outgoing ones for one subscriber."""

    __slots__ = (
        "started",
        "_highest_in",
        "_seq_offset",
        "_ts_offset",
        "last_out_seq",
        "last_out_ts",
        "_ring_seq",
        "_ring_offset",
        "_rebase",
        "_rebase_ts_gap",
    )

    def __init__(self, initial_sequence_number: int, initial_timestamp: int) -> None:
        self.started = False
        self._highest_in = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self.last_out_seq = (initial_sequence_number - 1) & 0xFFFF
        self.last_out_ts = initial_timestamp & 0xFFFFFFFF
        self._ring_seq = [-1] * _RING
        self._ring_offset = [0] * _RING
        self._rebase = True
        self._rebase_ts_gap = 0

    @property
    def timestamp_offset(self) -> int:
        return self._ts_offset

    def rebase(self, timestamp_gap: int = 1) -> None:
        """Start anew on the next forwarded packet (new source, or resume after a pause).

        The next packet follows the last one sent: sequence number + 1, timestamp +
        ``timestamp_gap`` (the time that passed, in clock-rate units).
        """
        self._rebase = True
        self._rebase_ts_gap = timestamp_gap

    def forward(self, sequence_number: int, timestamp: int) -> tuple[int, int] | None:
        """The outgoing (sequence number, timestamp), or ``None`` if the packet is too old
        or belongs to a slot that was dropped."""
        if self._rebase:
            self._rebase = False
            self.started = True
            self._seq_offset = (self.last_out_seq + 1 - sequence_number) & 0xFFFF
            gap = self._rebase_ts_gap or 1
            self._ts_offset = (self.last_out_ts + gap - timestamp) & 0xFFFFFFFF
            self._highest_in = (sequence_number - 1) & 0xFFFF
        delta = (sequence_number - self._highest_in) & 0xFFFF
        if delta and delta < 0x8000:
            # newer: slots skipped in between are losses, mapped with the current offset
            if delta > 1:
                offset = self._seq_offset
                for i in range(1, min(delta, _RING)):
                    slot = (self._highest_in + i) & 0xFFFF
                    self._ring_seq[slot & _MASK] = slot
                    self._ring_offset[slot & _MASK] = offset
            self._highest_in = sequence_number
            index = sequence_number & _MASK
            self._ring_seq[index] = sequence_number
            self._ring_offset[index] = self._seq_offset
            out_seq = (sequence_number + self._seq_offset) & 0xFFFF
            out_ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
            self.last_out_seq = out_seq
            self.last_out_ts = out_ts
            return out_seq, out_ts
        # duplicate or older: use the offset recorded for that slot
        index = sequence_number & _MASK
        if self._ring_seq[index] != sequence_number:
            return None
        offset = self._ring_offset[index]
        if offset == _DROPPED:
            return None
        return (sequence_number + offset) & 0xFFFF, (timestamp + self._ts_offset) & 0xFFFFFFFF

    def drop(self, sequence_number: int) -> None:
        """The SFU chose not to forward this packet: close the gap it would leave."""
        if self._rebase:
            return
        delta = (sequence_number - self._highest_in) & 0xFFFF
        if delta and delta < 0x8000:
            if delta > 1:
                offset = self._seq_offset
                for i in range(1, min(delta, _RING)):
                    slot = (self._highest_in + i) & 0xFFFF
                    self._ring_seq[slot & _MASK] = slot
                    self._ring_offset[slot & _MASK] = offset
            self._highest_in = sequence_number
            self._seq_offset = (self._seq_offset - 1) & 0xFFFF
            index = sequence_number & _MASK
            self._ring_seq[index] = sequence_number
            self._ring_offset[index] = _DROPPED
