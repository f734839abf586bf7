"""Retransmission history: the packets sent to one subscriber, by outgoing sequence number."""

from __future__ import annotations


class RetransmissionBuffer:
    """A ring of the last ``size`` packets sent, for answering NACKs (RFC 4585)."""

    __slots__ = ("_mask", "_seq", "_packets", "_spatial", "_resent")

    def __init__(self, size: int = 1024) -> None:
        if size & (size - 1):
            raise ValueError("size must be a power of two")
        self._mask = size - 1
        self._seq = [-1] * size
        self._packets: list[bytes | None] = [None] * size
        self._spatial = [0] * size
        self._resent = [0.0] * size

    def store(self, sequence_number: int, packet: bytes, layer: int = 0) -> None:
        """``layer``: spatial id x 16 + temporal id of the packet (0 when unknown)."""
        index = sequence_number & self._mask
        self._seq[index] = sequence_number
        self._packets[index] = packet
        self._spatial[index] = layer
        self._resent[index] = 0.0

    def layer(self, sequence_number: int) -> tuple[int, int]:
        """(spatial id, temporal id) of a stored packet ((0, 0) when unknown)."""
        value = self._spatial[sequence_number & self._mask]
        return value >> 4, value & 15

    def resend_allowed(self, sequence_number: int, now: float, interval: float) -> bool:
        """Whether the packet was not resent within ``interval`` (the subscriber's NACK for it
        may be a repeat while the first retransmission is still on its way); marks it resent
        now if allowed."""
        index = sequence_number & self._mask
        if now - self._resent[index] < interval:
            return False
        self._resent[index] = now
        return True

    def get(self, sequence_number: int) -> bytes | None:
        index = sequence_number & self._mask
        if self._seq[index] != sequence_number:
            return None
        return self._packets[index]
