"""Retransmission history: the packets sent to one subscriber, by outgoing sequence number."""

from __future__ import annotations


class RetransmissionBuffer:
    """A ring of the last ``size`` packets sent, for answering NACKs (RFC 4585)."""

    __slots__ = ("_mask", "_seq", "_packets")

    def __init__(self, size: int = 1024) -> None:
        if size & (size - 1):
            raise ValueError("size must be a power of two")
        self._mask = size - 1
        self._seq = [-1] * size
        self._packets: list[bytes | None] = [None] * size

    def store(self, sequence_number: int, packet: bytes) -> None:
        index = sequence_number & self._mask
        self._seq[index] = sequence_number
        self._packets[index] = packet

    def get(self, sequence_number: int) -> bytes | None:
        index = sequence_number & self._mask
        if self._seq[index] != sequence_number:
            return None
        return self._packets[index]
