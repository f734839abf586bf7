"""A simulated subscriber's per-packet bookkeeping, flat (sans-IO): which sequence numbers
arrived (:class:`SeenWindow`), packets and bytes by second (:class:`PerSecond`), and its
transport-wide feedback (:class:`FeedbackBuilder`).

Both are on the path of every packet a load generator receives, so they cost an index into
a preallocated array per packet, not a dict or set operation and an allocation.
"""

from __future__ import annotations

import struct

from sfu.rtp import rtcp, twcc

_SPACE = 0x10000
_HALF = 0x8000


class SeenWindow:
    """The 16-bit sequence numbers of one stream received within half the number space
    (32768) behind the highest: :meth:`add` says whether a number is new (a duplicate
    otherwise). One byte per possible number; when the highest moves ahead, the slots of the
    numbers that fall out of the window are cleared (they are the slots of the numbers half
    the space ahead)."""

    __slots__ = ("_bits", "highest")

    def __init__(self) -> None:
        self._bits = bytearray(_SPACE)
        #: the highest sequence number received (in 16-bit order), None before the first
        self.highest: int | None = None

    def add(self, seq: int) -> bool:
        """Record ``seq`` (0..65535): False when it was received already. A number exactly
        half the space from the highest is outside the window: new, and not recorded."""
        bits = self._bits
        highest = self.highest
        if highest is None:
            bits[seq] = 1
            self.highest = seq
            return True
        if bits[seq]:
            return False
        ahead = (seq - highest) & 0xFFFF
        if ahead == _HALF:
            return True
        bits[seq] = 1
        if ahead < _HALF:  # ahead (0 is the highest itself, received already)
            self.highest = seq
            if ahead == 1:
                bits[(seq + _HALF) & 0xFFFF] = 0
            else:  # the slots of highest + 1 .. seq, half the space on
                low = (highest + 1 + _HALF) & 0xFFFF
                if low + ahead <= _SPACE:
                    bits[low : low + ahead] = bytes(ahead)
                else:
                    first = _SPACE - low
                    bits[low:] = bytes(first)
                    bits[: ahead - first] = bytes(ahead - first)
        return True


class PerSecond:
    """Packets and bytes by whole second since ``started`` (arrays indexed by second). The
    caller adds to ``packets[index]`` and ``sizes[index]`` while ``start <= now < end`` and
    calls :meth:`roll` otherwise."""

    __slots__ = ("started", "start", "end", "index", "packets", "sizes")

    def __init__(self, started: float) -> None:
        self.started = started
        #: the current second: [start, end) on the caller's clock, its index
        self.start = started
        self.end = started  # empty: the first packet rolls
        self.index = 0
        self.packets: list[int] = [0]
        self.sizes: list[int] = [0]

    def roll(self, now: float) -> None:
        """Make the second of ``now`` current (``int(now - started)``, at least 0)."""
        index = max(0, int(now - self.started))
        missing = index + 1 - len(self.packets)
        if missing > 0:
            self.packets += [0] * missing
            self.sizes += [0] * missing
        self.index = index
        self.start = self.started + index
        self.end = self.start + 1
        if not self.start <= now < self.end:  # float rounding at the boundary: no caching
            self.start = self.end = self.started

    def add(self, now: float, size: int) -> None:
        """One packet of ``size`` bytes at ``now`` (what the caller inlines)."""
        if not self.start <= now < self.end:
            self.roll(now)
        self.packets[self.index] += 1
        self.sizes[self.index] += size

    def packets_by_second(self) -> dict[int, int]:
        """{second: packets} of the seconds with packets."""
        return {s: n for s, n in enumerate(self.packets) if n}

    def bytes_by_second(self) -> dict[int, int]:
        """{second: bytes} of the seconds with packets."""
        return {s: n for s, n in enumerate(self.sizes) if n}


#: the most packets one feedback takes on the short path (one run length chunk and a byte per
#: packet stay far below twcc.MAX_PACKET_SIZE)
_SHORT_PATH_PACKETS = 1000
_FEEDBACK_HEADER = struct.Struct("!BBHIIHHI")
_RUN_OF_SMALL_DELTAS = twcc.SMALL_DELTA << 13
#: packets in order between two prunings of the arrivals kept
_PRUNE_EVERY = 256


class FeedbackBuilder(twcc.TransportFeedbackBuilder):
    """:class:`sfu.rtp.twcc.TransportFeedbackBuilder` with short paths for the next packet in
    order (:meth:`on_packet`) and for the common feedback (:meth:`build`): every packet
    since the last one arrived, in order, each within 63.75 ms of the one before (one run
    length chunk of small deltas and a byte per packet). Anything else (a loss, a large or
    negative delta) is built by the base class; the bytes are the base class's either way
    (tests/test_tally.py checks them on random arrivals)."""

    def __init__(self, sender_ssrc: int, media_ssrc: int) -> None:
        super().__init__(sender_ssrc, media_ssrc)
        #: feedback packets built on the short path
        self.short_builds = 0

    def on_packet(self, sequence_number: int, arrival: float) -> None:
        """The base class's, with the next packet in order recorded at once and the
        arrivals that fell out of the history pruned every :data:`_PRUNE_EVERY` packets
        (and before each build) rather than one by one."""
        highest = self._highest
        if highest is None or ((sequence_number - highest) & 0xFFFF) != 1:
            super().on_packet(sequence_number, arrival)
            return
        highest += 1
        self._arrivals[highest] = round(arrival * 1_000_000)
        self._highest = highest
        if self._start is None:
            self._start = highest
        if highest - self._floor >= twcc.HISTORY + _PRUNE_EVERY:
            self._prune(highest - twcc.HISTORY + 1)

    def build(self) -> list[bytes]:
        if self._highest is not None:
            self._prune(self._highest - twcc.HISTORY + 1)
        start, highest = self._start, self._highest
        if start is None or highest is None or start > highest:
            return []
        start = max(start, self._floor)
        count = highest - start + 1
        if count > _SHORT_PATH_PACKETS:
            return super().build()
        get = self._arrivals.get
        times = [get(sequence) for sequence in range(start, highest + 1)]
        if None in times:
            return super().build()
        first = times[0]
        assert first is not None
        reference = first // 64_000
        last = reference * 64_000
        deltas = bytearray(count)
        for i, arrival in enumerate(times):
            # a delta rounds to 250 us ticks: packets within 125 us of the previous one's
            # rounded time (a burst) are 0 ticks later, even a little before it
            elapsed = arrival - last  # type: ignore[operator]
            ticks = (elapsed + 125) // 250
            if elapsed <= -125 or ticks > 0xFF:
                return super().build()
            deltas[i] = ticks
            last += ticks * 250
        self._start = highest + 1
        size = 22 + count
        padding = -size % 4
        header = _FEEDBACK_HEADER.pack(
            0x80 | (0x20 if padding else 0) | rtcp.RTPFB_TWCC,
            rtcp.RTCP_RTPFB,
            (size + padding) // 4 - 1,
            self.sender_ssrc,
            self.media_ssrc,
            start & 0xFFFF,
            count,
            ((reference & 0xFFFFFF) << 8) | self._feedback_count,
        )
        self._feedback_count = (self._feedback_count + 1) & 0xFF
        self.short_builds += 1
        packet = header + (_RUN_OF_SMALL_DELTAS | count).to_bytes(2, "big") + deltas
        if padding:
            packet += bytes(padding - 1) + bytes([padding])
        return [packet]
