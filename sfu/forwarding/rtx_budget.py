"""What one subscriber's NACKs may cost (sans-IO): retransmitted bytes within a share of the
media forwarded to it, and NACK items within a count per RTCP packet and a rate.

A NACK costs the server a history lookup per item and, for each packet resent, an SRTP
protect and a ``sendto``; nothing in the protocol bounds what a subscriber may ask for.  One
:class:`RetransmissionBudget` per subscriber, shared by its down tracks, bounds it whatever
the subscriber negotiated (with transport-cc the congestion allowance of
:class:`~sfu.forwarding.congestion.SendSideCongestion` may restrict it further).  What it
refuses is counted by the caller, never queued.
"""

from __future__ import annotations

from collections import deque

from .drops import Refusal

_NACK_RATE = Refusal.NACK_RATE
_NACK_CAP = Refusal.NACK_CAP

#: the share of the media bytes forwarded that retransmissions may take
RETRANSMISSION_RATIO = 1.0
#: ... over any window of this many seconds
WINDOW = 1.0
#: NACK items (lost sequence numbers) handled per RTCP packet
NACK_ITEMS_PER_PACKET = 256
#: NACK items handled per second (on average; as many at once)
NACK_ITEMS_PER_SECOND = 1000


class RetransmissionBudget:
    """Bytes: over any :attr:`window` seconds, retransmissions take at most :attr:`ratio`
    times the media bytes forwarded to the subscriber over that window, as of the last
    :meth:`refill` (a sliding window, kept per refill: the owner calls :meth:`refill`
    periodically with the total media bytes forwarded so far, so no work is added per
    forwarded packet).  With refills every ``T`` seconds, the retransmissions of any
    ``window`` seconds are at most ``ratio`` x the media forwarded from ``2 T`` before that
    window to its end.  Nothing may be retransmitted before the first refill that saw media.

    NACK items: at most :attr:`items_per_packet` of one RTCP packet (compound packets
    included) are handled, and at most :attr:`items_per_second` a second on average (a token
    bucket holding one second's worth), see :meth:`nack_limit`.
    """

    __slots__ = (
        "ratio",
        "window",
        "items_per_packet",
        "items_per_second",
        "bytes",
        "_records",
        "_media_total",
        "_media_in_window",
        "_spent",
        "_spent_in_window",
        "_items",
        "_items_at",
    )

    def __init__(
        self,
        ratio: float = RETRANSMISSION_RATIO,
        items_per_packet: int = NACK_ITEMS_PER_PACKET,
        items_per_second: int = NACK_ITEMS_PER_SECOND,
        window: float = WINDOW,
    ) -> None:
        self.ratio = ratio
        self.window = window
        self.items_per_packet = items_per_packet
        self.items_per_second = items_per_second
        #: bytes that may be retransmitted now (read before each retransmission)
        self.bytes = 0.0
        #: per refill: (time, media bytes forwarded since the previous one, retransmitted)
        self._records: deque[tuple[float, int, int]] = deque()
        self._media_total: int | None = None
        self._media_in_window = 0
        self._spent = 0  # retransmitted since the last refill
        self._spent_in_window = 0
        self._items = float(items_per_second)
        self._items_at: float | None = None

    # -- bytes ---------------------------------------------------------------------------
    def refill(self, media_total: int, now: float) -> None:
        """``media_total``: the media bytes forwarded to the subscriber so far (a total that
        may drop when a down track goes: the drop counts as nothing forwarded)."""
        last = self._media_total
        self._media_total = media_total
        media = 0 if last is None else max(0, media_total - last)
        records = self._records
        records.append((now, media, self._spent))
        self._media_in_window += media
        self._spent_in_window += self._spent
        self._spent = 0
        horizon = now - self.window
        while records and records[0][0] <= horizon:
            _, old_media, old_spent = records.popleft()
            self._media_in_window -= old_media
            self._spent_in_window -= old_spent
        self.bytes = self.ratio * self._media_in_window - self._spent_in_window

    def spend(self, size: int) -> None:
        """``size`` bytes were retransmitted."""
        self.bytes -= size
        self._spent += size

    # -- NACK items ----------------------------------------------------------------------
    def nack_limit(self, now: float) -> tuple[int, Refusal]:
        """How many NACK items the RTCP packet arriving now may have handled, and what
        limits it: ``Refusal.NACK_CAP`` (the per-packet cap) or ``Refusal.NACK_RATE``.  The
        caller charges what it handled with :meth:`take_nack_items`.  (Called for every RTCP
        packet a subscriber sends.)"""
        items = self._items
        at = self._items_at
        if at is not None and now > at:
            rate = self.items_per_second
            items = self._items = min(rate, items + (now - at) * rate)
        self._items_at = now
        available = int(items) if items > 0 else 0
        if available < self.items_per_packet:
            return available, _NACK_RATE
        return self.items_per_packet, _NACK_CAP

    def take_nack_items(self, count: int) -> None:
        self._items -= count
