"""Transport-wide congestion control feedback, sans-IO.

Implements the RTCP transport feedback message (RTPFB, PT=205, FMT=15) of
draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1.  After the common RTCP
header and the sender/media SSRCs the FCI carries::

    base sequence number (16) | packet status count (16)
    reference time (24, signed, 64 ms units) | feedback packet count (8)
    packet status chunks (16 bits each)
    receive deltas (8 bits unsigned or 16 bits signed, 250 us units)
    zero padding to 32 bits

A status chunk is either a run length chunk (T=0, a 2-bit symbol and a 13-bit run length)
or a status vector chunk (T=1; S=0: fourteen 1-bit symbols, S=1: seven 2-bit symbols).
Symbols: 0 not received, 1 received with a small delta (one byte, 0..63.75 ms),
2 received with a large or negative delta (two bytes, signed), 3 reserved.  Each receive
delta is relative to the previous received packet; the first one to the reference time.

:func:`parse_transport_feedback` decodes the FCI of a packet that
:func:`sfu.rtp.rtcp.parse_rtcp` returned as :class:`sfu.rtp.rtcp.TransportFeedback`.
:class:`TransportFeedbackBuilder` is the receiving side: it records arrivals of packets
carrying the transport-wide sequence number header extension and builds feedback packets
the way libwebrtc's remote estimator proxy does.

The reference time field wraps every 2^24 * 64 ms (about 12.4 days) and is read as signed,
so consumers that compare arrival times across feedback packets must do so modulo that
period.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import accumulate

from sfu.rtp.rtcp import RTCP_RTPFB, RTPFB_TWCC, RtcpError

#: Receive delta unit (seconds).
DELTA_TICK = 0.00025
#: Reference time unit (seconds).
REFERENCE_TICK = 0.064
#: Largest feedback packet the builder produces (bytes, headers included).
MAX_PACKET_SIZE = 1200
#: How many sequence numbers behind the highest one the builder keeps arrivals for; older
#: packets are ignored.  Must stay below 2^15 for sequence number unwrapping.
HISTORY = 1 << 14

NOT_RECEIVED = 0
SMALL_DELTA = 1
LARGE_DELTA = 2

_TICK_US = 250
_REFERENCE_US = 64_000
_TICKS_PER_REFERENCE = _REFERENCE_US // _TICK_US  # 256
_TICKS_PER_SECOND = 1_000_000 // _TICK_US  # 4000
_HEADER_SIZE = 20  # common header, two SSRCs, fixed FCI fields
_MAX_STATUS_COUNT = 0xFFFF
_MAX_RUN_LENGTH = 0x1FFF
_ONE_BIT_CAPACITY = 14
_TWO_BIT_CAPACITY = 7

_FCI_HEADER = struct.Struct("!HHI")
_PACKET_HEADER = struct.Struct("!BBHIIHHI")


@dataclass(slots=True)
class TransportFeedbackReport:
    base_sequence: int
    reference_time: float  # seconds (reference_time_field * 0.064)
    feedback_count: int
    #: (transport sequence number, arrival time in seconds on the receiver's clock, or None
    #: if not received)
    packets: list[tuple[int, float | None]]


# The symbols of a status vector chunk, by table: a one-bit chunk's 14 symbols are two
# 7-bit halves, a two-bit chunk's 7 symbols are 4 (the high 8 bits) and 3 (the low 6 bits).
_ONE_BIT_HALF = tuple(tuple((v >> (6 - i)) & 1 for i in range(7)) for v in range(128))
_TWO_BIT_HIGH = tuple(tuple((v >> (6 - 2 * i)) & 3 for i in range(4)) for v in range(256))
_TWO_BIT_LOW = tuple(tuple((v >> (4 - 2 * i)) & 3 for i in range(3)) for v in range(64))


def parse_transport_feedback_arrivals(fci: bytes) -> tuple[int, int, int, list[float | None]]:
    """Decode the FCI of a transport feedback packet into flat fields: (base sequence
    number, reference time field (signed, 64 ms units), feedback packet count, the arrival
    time of each reported packet in seconds or None if not received).  Packet ``i`` has
    sequence number ``(base + i) & 0xFFFF``.

    Raises :class:`RtcpError` (and nothing else, for any bytes) when malformed.  Arrival
    times are the reference time plus cumulative deltas.  Bytes after the last receive delta
    (padding) are ignored.
    """
    size = len(fci)
    if size < 8:
        raise RtcpError("transport feedback is truncated")
    base, count, word = _FCI_HEADER.unpack_from(fci, 0)
    if count == 0:
        raise RtcpError("transport feedback reports no packets")
    reference = word >> 8
    if reference & 0x800000:
        reference -= 1 << 24

    symbols: list[int] = []
    known = 0
    pos = 8
    one_bit, two_high, two_low = _ONE_BIT_HALF, _TWO_BIT_HIGH, _TWO_BIT_LOW
    while known < count:
        if pos + 2 > size:
            raise RtcpError("transport feedback status chunks are truncated")
        chunk = (fci[pos] << 8) | fci[pos + 1]
        pos += 2
        remaining = count - known
        if chunk < 0x8000:  # run length
            run = chunk & _MAX_RUN_LENGTH
            if run > remaining:
                run = remaining
            if run:
                symbol = chunk >> 13
                if symbol == 3:
                    raise RtcpError("transport feedback uses the reserved status symbol")
                symbols += [symbol] * run
                known += run
        elif chunk < 0xC000:  # fourteen 1-bit symbols
            if remaining >= _ONE_BIT_CAPACITY:
                symbols += one_bit[(chunk >> 7) & 0x7F]
                symbols += one_bit[chunk & 0x7F]
                known += _ONE_BIT_CAPACITY
            else:
                symbols += (one_bit[(chunk >> 7) & 0x7F] + one_bit[chunk & 0x7F])[:remaining]
                known = count
        else:  # seven 2-bit symbols
            vector = two_high[(chunk >> 6) & 0xFF] + two_low[chunk & 0x3F]
            if remaining < _TWO_BIT_CAPACITY:
                vector = vector[:remaining]
            if 3 in vector:
                raise RtcpError("transport feedback uses the reserved status symbol")
            symbols += vector
            known += len(vector)

    small = symbols.count(SMALL_DELTA)
    if small == count:  # every packet received, every delta one byte: the common report
        if pos + count > size:
            raise RtcpError("transport feedback receive deltas are truncated")
        ticks = accumulate(fci[pos : pos + count], initial=reference * _TICKS_PER_REFERENCE)
        next(ticks)
        return base, reference, word & 0xFF, list(map(_TICKS_PER_SECOND.__rtruediv__, ticks))
    if pos + small + 2 * symbols.count(LARGE_DELTA) > size:
        raise RtcpError("transport feedback receive deltas are truncated")
    ticks = reference * _TICKS_PER_REFERENCE
    arrivals: list[float | None] = []
    append = arrivals.append
    for symbol in symbols:
        if symbol == SMALL_DELTA:
            ticks += fci[pos]
            pos += 1
            append(ticks / 4000)
        elif symbol == NOT_RECEIVED:
            append(None)
        else:
            delta = (fci[pos] << 8) | fci[pos + 1]
            ticks += delta - 0x10000 if delta & 0x8000 else delta
            pos += 2
            append(ticks / 4000)
    return base, reference, word & 0xFF, arrivals


def parse_transport_feedback(fci: bytes) -> TransportFeedbackReport:
    """Decode the FCI of a transport feedback packet (see
    :func:`parse_transport_feedback_arrivals`, which the estimator takes as is).

    Raises :class:`RtcpError` (and nothing else, for any bytes) when malformed.  Sequence
    numbers wrap mod 2^16.  Arrival times are the reference time plus cumulative deltas.
    Bytes after the last receive delta (padding) are ignored.
    """
    base, reference, feedback_count, arrivals = parse_transport_feedback_arrivals(fci)
    packets = [((base + i) & 0xFFFF, arrival) for i, arrival in enumerate(arrivals)]
    return TransportFeedbackReport(base, reference * REFERENCE_TICK, feedback_count, packets)


class _ChunkEncoder:
    """Incremental packet status chunk encoder (the scheme of libwebrtc's ``LastChunk``).

    Closed chunks are in ``chunks``; the pending symbols are still open to be encoded as a
    run length chunk (all equal, up to 8191), a one-bit vector (up to 14, no large delta) or
    a two-bit vector (up to 7).  ``size`` is the exact encoded size in bytes.
    """

    __slots__ = ("chunks", "pending", "count", "all_same", "has_large")

    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.pending: list[int] = []  # the first (at most 14) pending symbols
        self.count = 0  # number of pending symbols
        self.all_same = True
        self.has_large = False

    @property
    def size(self) -> int:
        return 2 * (len(self.chunks) + (1 if self.count else 0))

    def snapshot(self) -> tuple[int, list[int], int, bool, bool]:
        return (len(self.chunks), list(self.pending), self.count, self.all_same, self.has_large)

    def restore(self, state: tuple[int, list[int], int, bool, bool]) -> None:
        closed, pending, self.count, self.all_same, self.has_large = state
        del self.chunks[closed:]
        self.pending = pending

    def _can_add(self, symbol: int) -> bool:
        if self.count < _TWO_BIT_CAPACITY:
            return True
        if self.count < _ONE_BIT_CAPACITY and not self.has_large and symbol != LARGE_DELTA:
            return True
        return self.count < _MAX_RUN_LENGTH and self.all_same and symbol == self.pending[0]

    def add(self, symbol: int) -> None:
        if not self._can_add(symbol):
            self._emit()
        if self.count < _ONE_BIT_CAPACITY:
            self.pending.append(symbol)
        self.count += 1
        self.all_same = self.all_same and symbol == self.pending[0]
        self.has_large = self.has_large or symbol == LARGE_DELTA

    def _emit(self) -> None:
        # Only called when the pending symbols cannot take one more, so count >= 7.
        if self.all_same:
            self.chunks.append(self._run_length())
            self._clear()
        elif self.count == _ONE_BIT_CAPACITY:
            self.chunks.append(self._one_bit(self.count))
            self._clear()
        else:
            self.chunks.append(self._two_bit(_TWO_BIT_CAPACITY))
            rest = self.pending[_TWO_BIT_CAPACITY:]
            self._clear()
            for symbol in rest:
                self.add(symbol)

    def _clear(self) -> None:
        self.pending = []
        self.count = 0
        self.all_same = True
        self.has_large = False

    def _run_length(self) -> int:
        return (self.pending[0] << 13) | self.count

    def _one_bit(self, size: int) -> int:
        chunk = 0x8000
        for i in range(size):
            chunk |= self.pending[i] << (_ONE_BIT_CAPACITY - 1 - i)
        return chunk

    def _two_bit(self, size: int) -> int:
        chunk = 0xC000
        for i in range(size):
            chunk |= self.pending[i] << (2 * (_TWO_BIT_CAPACITY - 1 - i))
        return chunk

    def finish(self) -> list[int]:
        chunks = list(self.chunks)
        if self.count:
            if self.all_same:
                chunks.append(self._run_length())
            elif self.count <= _TWO_BIT_CAPACITY:
                chunks.append(self._two_bit(self.count))
            else:
                chunks.append(self._one_bit(self.count))
        return chunks


def _padded(size: int) -> int:
    return (size + 3) & ~3


class _FeedbackPacket:
    """One feedback packet being filled; sequence numbers are unwrapped (extended)."""

    __slots__ = ("base", "next", "reference", "last_us", "encoder", "deltas")

    def __init__(self, base: int, first_arrival_us: int) -> None:
        self.base = base
        self.next = base
        self.reference = first_arrival_us // _REFERENCE_US  # unwrapped, floored
        self.last_us = self.reference * _REFERENCE_US
        self.encoder = _ChunkEncoder()
        self.deltas = bytearray()

    def add(self, sequence: int, arrival_us: int) -> bool:
        """Add a received packet (and the lost ones before it); False when it does not fit."""
        if sequence - self.base + 1 > _MAX_STATUS_COUNT:
            return False
        elapsed = arrival_us - self.last_us
        ticks = (abs(elapsed) + _TICK_US // 2) // _TICK_US
        if elapsed < 0:
            ticks = -ticks
        if not -0x8000 <= ticks <= 0x7FFF:
            return False
        symbol = SMALL_DELTA if 0 <= ticks <= 0xFF else LARGE_DELTA
        state = self.encoder.snapshot()
        for _ in range(sequence - self.next):
            self.encoder.add(NOT_RECEIVED)
        self.encoder.add(symbol)
        # A small delta takes one byte, a large one two: the symbol value.
        if _padded(_HEADER_SIZE + self.encoder.size + len(self.deltas) + symbol) > MAX_PACKET_SIZE:
            self.encoder.restore(state)
            return False
        if symbol == SMALL_DELTA:
            self.deltas.append(ticks)
        else:
            self.deltas += (ticks & 0xFFFF).to_bytes(2, "big")
        self.last_us += ticks * _TICK_US
        self.next = sequence + 1
        return True

    def serialize(self, sender_ssrc: int, media_ssrc: int, feedback_count: int) -> bytes:
        chunks = self.encoder.finish()
        size = _HEADER_SIZE + 2 * len(chunks) + len(self.deltas)
        padding = _padded(size) - size
        first = 0x80 | (0x20 if padding else 0) | RTPFB_TWCC
        header = _PACKET_HEADER.pack(
            first,
            RTCP_RTPFB,
            (size + padding) // 4 - 1,
            sender_ssrc,
            media_ssrc,
            self.base & 0xFFFF,
            self.next - self.base,
            ((self.reference & 0xFFFFFF) << 8) | feedback_count,
        )
        body = struct.pack(f"!{len(chunks)}H", *chunks) + bytes(self.deltas)
        if padding:
            body += bytes(padding - 1) + bytes([padding])
        return header + body


class TransportFeedbackBuilder:
    """Receiver side (the SFU receiving from a publisher): records arrivals, builds feedback.

    Each feedback starts right after the previous one, so losses between two builds are
    reported.  Arrivals are kept for the last :data:`HISTORY` sequence numbers: a packet
    arriving after it was reported lost reopens the window from that packet, and the
    feedback covers the packets after it again (as libwebrtc does).  Older packets are
    ignored, and duplicates keep their first arrival.
    """

    def __init__(self, sender_ssrc: int, media_ssrc: int) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self._arrivals: dict[int, int] = {}  # extended sequence number -> arrival (us)
        self._highest: int | None = None
        self._floor = 0  # highest - HISTORY + 1: no key of _arrivals is below this
        self._start: int | None = None  # first sequence number of the next feedback
        self._feedback_count = 0

    def on_packet(self, sequence_number: int, arrival: float) -> None:
        """Record a packet's transport-wide sequence number and arrival time (seconds)."""
        sequence = sequence_number & 0xFFFF
        highest = self._highest
        if highest is None:
            extended = sequence
            self._floor = sequence - HISTORY + 1
        else:
            diff = (sequence - highest) & 0xFFFF
            if diff >= 0x8000:
                diff -= 0x10000
            extended = highest + diff
            if extended <= highest - HISTORY or extended in self._arrivals:
                return
        self._arrivals[extended] = round(arrival * 1_000_000)
        if highest is None or extended > highest:
            self._highest = extended
            self._prune(extended - HISTORY + 1)
        if self._start is None or extended < self._start:
            self._start = extended

    def _prune(self, cutoff: int) -> None:
        if cutoff <= self._floor:
            return
        if cutoff - self._floor > 2 * len(self._arrivals):
            self._arrivals = {k: v for k, v in self._arrivals.items() if k >= cutoff}
        else:
            for key in range(self._floor, cutoff):
                self._arrivals.pop(key, None)
        self._floor = cutoff

    def build(self) -> list[bytes]:
        """Complete RTCP packets covering every packet recorded since the last build.

        They run from the sequence number after the previous feedback (or the lowest one
        that arrived late since) to the highest seen, gaps reported as not received, split
        when one would exceed :data:`MAX_PACKET_SIZE` or when a delta does not fit 16 bits;
        ``[]`` when nothing is new.  Each packet's reference time is the arrival of its
        first received packet floored to 64 ms (24-bit wrap), as in libwebrtc.
        """
        start, highest = self._start, self._highest
        if start is None or highest is None or start > highest:
            return []
        self._start = highest + 1
        start = max(start, self._floor)
        out: list[bytes] = []
        current: _FeedbackPacket | None = None
        for sequence in range(start, highest + 1):
            arrival = self._arrivals.get(sequence)
            if arrival is None:
                continue
            if current is not None and current.add(sequence, arrival):
                continue
            base = start
            if current is not None:
                out.append(self._finish(current))
                base = current.next
            current = _FeedbackPacket(base, arrival)
            if not current.add(sequence, arrival):  # pragma: no cover - always fits
                raise AssertionError("a fresh transport feedback packet cannot take a packet")
        if current is not None:
            out.append(self._finish(current))
        return out

    def _finish(self, packet: _FeedbackPacket) -> bytes:
        data = packet.serialize(self.sender_ssrc, self.media_ssrc, self._feedback_count)
        self._feedback_count = (self._feedback_count + 1) & 0xFF
        return data
