"""Per-subscriber rewriting of RTP sequence numbers and timestamps.

The subscriber must see one continuous stream: packets the SFU chooses not to forward
leave no gap in the sequence numbers, while packets lost upstream still show as gaps (so the
subscriber's NACKs keep meaning something); that rule is :class:`SequenceMapper`'s.  A late
packet (reordered, or recovered by RTX upstream) is mapped with the offset that was in force
when its slot went past.  Timestamps move by one offset, set when the stream (re)starts.
"""

from __future__ import annotations

from .sequence import SequenceMapper


class RtpMunger(SequenceMapper):
    """Maps incoming (sequence number, timestamp) to outgoing ones for one subscriber."""

    __slots__ = ("timestamp_offset", "last_out_ts", "_rebase_ts_gap")

    def __init__(self, initial_sequence_number: int, initial_timestamp: int) -> None:
        super().__init__(16, 1024)
        self.last_out = (initial_sequence_number - 1) & 0xFFFF
        #: added to every incoming timestamp (mod 2**32)
        self.timestamp_offset = 0
        self.last_out_ts = initial_timestamp & 0xFFFFFFFF
        self.pending = True
        self._rebase_ts_gap = 0

    @property
    def last_out_seq(self) -> int:
        return self.last_out

    def rebase(self, timestamp_gap: int = 1) -> None:
        """Start anew on the next forwarded packet (new source, or resume after a pause).

        The next packet follows the last one sent: sequence number + 1, timestamp +
        ``timestamp_gap`` (the time that passed, in clock-rate units).
        """
        self.pending = True
        self._rebase_ts_gap = timestamp_gap

    def restart(self, sequence_number: int, timestamp: int) -> None:
        """The packet forwarded first after a :meth:`rebase` follows the last one sent."""
        self.sync(sequence_number, self.last_out + 1)
        gap = self._rebase_ts_gap or 1
        self.timestamp_offset = (self.last_out_ts + gap - timestamp) & 0xFFFFFFFF

    def forward(self, sequence_number: int, timestamp: int) -> tuple[int, int] | None:
        """The outgoing (sequence number, timestamp), or ``None`` if the packet is too old
        or belongs to a slot that was dropped.  (Inlined in ``DownTrack.write``.)"""
        if self.pending:
            self.restart(sequence_number, timestamp)
        out_seq = self.map(sequence_number)
        if out_seq is None:
            return None
        out_ts = (timestamp + self.timestamp_offset) & 0xFFFFFFFF
        if out_seq == self.last_out:  # the newest packet
            self.last_out_ts = out_ts
        return out_seq, out_ts
