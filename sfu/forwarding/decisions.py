"""What was decided for each recent frame of a stream with a dependency descriptor.

A frame is forwarded or not as a whole; its later packets, its late ones (the publisher's
retransmissions of what was lost upstream) and the chain checks of a spatial switch ("was
every frame of that chain forwarded?") ask what was decided, by frame number.
"""

from __future__ import annotations

#: frames remembered (a power of two: several seconds of pictures at every layer)
RING = 512
_MASK = RING - 1


class FrameDecisions:
    __slots__ = ("_decided", "_forwarded")

    def __init__(self) -> None:
        self._decided = [-1] * RING  # the frame number each slot last held
        self._forwarded = [-1] * RING  # ... if that frame was forwarded

    def record(self, frame: int, forward: bool) -> None:
        slot = frame & _MASK
        self._decided[slot] = frame
        self._forwarded[slot] = frame if forward else -1

    def decided(self, frame: int) -> bool:
        return self._decided[frame & _MASK] == frame

    def forwarded(self, frame: int) -> bool:
        """``frame`` was decided on and forwarded (False when forgotten)."""
        return self._forwarded[frame & _MASK] == frame
