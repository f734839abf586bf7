"""The lower layer's chain kept beside the top spatial layer (K-SVC, dependency descriptor).

At the top spatial layer a subscriber can also be sent the frames of the decode target one
layer down at T0 where its own target leaves them out: that costs the lower layer's base rate
and buys a spatial down-switch without waiting for a keyframe, since the frames the lower
target needs were all forwarded.  A chain frame references the one before it, so the chain
can only start at a keyframe and is useful only while whole: a frame of it not forwarded (or
one that came too late to be decoded, see :meth:`LowerChain.late`) ends it until the next
keyframe.
"""

from __future__ import annotations

RING = 512
_MASK = RING - 1


class LowerChain:
    __slots__ = ("keep", "intact", "_frames", "picture_end")

    def __init__(self) -> None:
        #: keep the chain (set when the subscriber's bandwidth is estimated)
        self.keep = False
        #: every frame of the chain since the last keyframe was forwarded
        self.intact = False
        self._frames = [-1] * RING  # by frame number: frames forwarded as the chain
        #: the frame that ended the last picture forwarded (its packet carried the marker)
        self.picture_end = -1

    def take(self, frame: int) -> bool:
        """A frame of the chain that the current target leaves out: forwarded (True) while
        the chain is kept and whole, else the chain ends."""
        if self.keep and self.intact:
            self._frames[frame & _MASK] = frame
            return True
        self.intact = False
        return False

    def late(self, frame: int) -> bool:
        """A late packet of a forwarded ``frame``, arriving after its picture was complete:
        if it is a chain frame, a receiver may have decoded that picture from its top frame
        alone and would drop this one, leaving the chain frames after it without their
        reference -- and every picture carrying one undecodable until a keyframe.  The chain
        ends here instead (True: do not forward it)."""
        end = self.picture_end
        if self._frames[frame & _MASK] == frame and end >= 0 and (end - frame) & 0xFFFF < 0x8000:
            self.intact = False
            return True
        return False
