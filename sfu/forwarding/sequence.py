"""One subscriber's numbering of a counter the SFU thins out: RTP sequence numbers, VP8/VP9
picture ids.

The rule (mediasoup's ``SeqManager`` is the model): what the SFU drops on purpose leaves no
gap in the subscriber's numbering, while what was lost upstream still does (the subscriber's
NACKs and reference checks keep meaning something).  An input newer than any before is mapped
with the current offset, and the inputs it skips (lost so far) get that offset too, so that
they map the same way should they arrive late; an older input gets the offset recorded in its
slot of a ring, or nothing if it was dropped or is older than the ring remembers.
"""

from __future__ import annotations

#: a ring slot's offset when its input was dropped on purpose
DROPPED = -1


class SequenceMapper:
    """Maps a counter that wraps at ``2**bits`` from the publisher's numbering to one
    subscriber's: ``out = (n + offset) mod 2**bits``, the offset going down by one for each
    input dropped on purpose.  ``ring``: how many recent inputs are remembered (a power of
    two), for late ones."""

    __slots__ = (
        "bits",
        "mask",
        "started",
        "pending",
        "highest",
        "offset",
        "last_out",
        "_ring_mask",
        "_slots",
        "_offsets",
    )

    def __init__(self, bits: int, ring: int = 1024) -> None:
        if ring & (ring - 1) or not 0 < ring <= 1 << bits:
            raise ValueError(f"ring must be a power of two up to 2**{bits}, not {ring}")
        self.bits = bits
        self.mask = (1 << bits) - 1
        #: an input was mapped or dropped since the first :meth:`sync`
        self.started = False
        #: a :meth:`sync` is due before the next input is mapped: drops change nothing
        self.pending = False
        #: the newest input mapped or dropped
        self.highest = 0
        self.offset = 0
        #: the output of the newest input mapped
        self.last_out = 0
        self._ring_mask = ring - 1
        self._slots = [-1] * ring  # the input each slot last held
        self._offsets = [0] * ring  # ... and its offset (DROPPED: dropped on purpose)

    def sync(self, n: int, out: int) -> None:
        """Map input ``n`` (the next one expected) to ``out``: a new stream, or one resumed
        after a pause."""
        mask = self.mask
        self.started = True
        self.pending = False
        self.offset = (out - n) & mask
        self.highest = (n - 1) & mask

    def map(self, n: int) -> int | None:
        """``n``'s output, or ``None``: dropped on purpose, or too old to be remembered."""
        if not self.started:
            self.sync(n, n + self.offset)
        mask = self.mask
        slots = self._slots
        ring_mask = self._ring_mask
        delta = (n - self.highest) & mask
        if delta and delta <= mask >> 1:  # newer
            offset = self.offset
            if delta > 1:
                self._skip(delta, offset)
            self.highest = n
            slots[n & ring_mask] = n
            self._offsets[n & ring_mask] = offset
            out = self.last_out = (n + offset) & mask
            return out
        at = n & ring_mask
        if slots[at] != n:
            return None
        offset = self._offsets[at]
        if offset == DROPPED:
            return None
        return (n + offset) & mask

    def drop(self, n: int) -> None:
        """``n`` is not forwarded: the inputs after it take its output.  ``n`` is newer than
        any before, or the newest itself, mapped already (a picture found dropped whole once
        the next one starts); an older input, or any while a sync is pending, changes
        nothing."""
        if self.pending:
            return
        mask = self.mask
        slots = self._slots
        ring_mask = self._ring_mask
        delta = (n - self.highest) & mask
        if delta and delta <= mask >> 1:
            if delta > 1:
                self._skip(delta, self.offset)
            self.highest = n
            slots[n & ring_mask] = n
        elif delta or slots[n & ring_mask] != n or self._offsets[n & ring_mask] == DROPPED:
            return
        self._offsets[n & ring_mask] = DROPPED
        self.offset = (self.offset - 1) & mask

    def offset_of(self, n: int) -> int | None:
        """The offset ``n`` was mapped with: ``DROPPED``, or ``None`` if not remembered."""
        at = n & self._ring_mask
        return self._offsets[at] if self._slots[at] == n else None

    def _skip(self, delta: int, offset: int) -> None:
        """The inputs between the newest and one ``delta`` after it were not seen (lost so
        far): should they arrive, they map with ``offset``."""
        slots, offsets = self._slots, self._offsets
        ring_mask = self._ring_mask
        mask = self.mask
        highest = self.highest
        for i in range(1, min(delta, len(slots))):
            skipped = (highest + i) & mask
            slots[skipped & ring_mask] = skipped
            offsets[skipped & ring_mask] = offset
