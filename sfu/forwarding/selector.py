"""Per-subscriber layer selection: which packets of a scalable stream to forward.

The selector is fed every packet's :class:`~sfu.forwarding.layers.LayerInfo` and moves its
*current* layers towards the *target* only where the receiver can follow:

* forwarding starts at a keyframe;
* spatial up-switch at a keyframe (in K-SVC and in Chromium's full SVC, an upper spatial
  layer predicts from its own earlier frames, which the subscriber never got);
  spatial down-switch at the start of a picture;
* temporal up-switch at a switching point of the new layer (VP9 U bit, VP8 Y bit, DD switch
  indication); temporal down-switch at the start of a picture;
* the marker bit goes on the last packet of the highest forwarded spatial layer of a picture;
* VP8/VP9 picture ids stay continuous over pictures dropped whole.

It says whether a keyframe is wanted; the caller asks the publisher (coalesced per source).
"""

from __future__ import annotations

from .layers import LayerInfo

DROP = -1
MARKER = 0x80


class LayerSelector:
    __slots__ = (
        "target_spatial",
        "target_temporal",
        "current_spatial",
        "current_temporal",
        "paused",
        "keyframe_wanted",
        "switches",
        "_multi_spatial",
        "_pid_offset",
        "_last_pid_in",
        "_last_pid_forwarded",
    )

    def __init__(self, multi_spatial: bool = True) -> None:
        self.target_spatial = 2
        self.target_temporal = 2
        #: -1: nothing forwarded yet (waiting for a keyframe)
        self.current_spatial = -1
        self.current_temporal = -1
        self.paused = False
        self.keyframe_wanted = True
        self.switches = 0
        self._multi_spatial = multi_spatial
        self._pid_offset = 0
        self._last_pid_in: int | None = None
        self._last_pid_forwarded = True

    @property
    def started(self) -> bool:
        return self.current_spatial >= 0

    def set_target(self, spatial: int, temporal: int) -> None:
        self.target_spatial = spatial
        self.target_temporal = temporal
        if self.started and spatial > self.current_spatial:
            self.keyframe_wanted = True

    def pause(self) -> None:
        self.paused = True
        self.current_spatial = self.current_temporal = -1

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.keyframe_wanted = True

    def select(self, info: LayerInfo, marker: bool) -> int:
        """``DROP``, or the marker bit (0 or ``MARKER``) for the forwarded packet."""
        if self.paused or not info.valid:
            return DROP
        picture_start = info.start_of_frame and info.sid == 0
        if not self.started:
            if not (info.keyframe and picture_start):
                self.keyframe_wanted = True
                return DROP
            self.current_spatial = self.target_spatial
            self.current_temporal = self.target_temporal
            self.keyframe_wanted = False
            self.switches += 1
        elif picture_start:
            spatial = self.current_spatial
            if self.target_spatial < spatial:
                spatial = self.target_spatial
            elif self.target_spatial > spatial:
                if info.keyframe:
                    spatial = self.target_spatial
                    self.keyframe_wanted = False
                else:
                    self.keyframe_wanted = True
            temporal = self.current_temporal
            if self.target_temporal < temporal or info.keyframe:
                temporal = self.target_temporal
            if (spatial, temporal) != (self.current_spatial, self.current_temporal):
                self.current_spatial = spatial
                self.current_temporal = temporal
                self.switches += 1
        tid = info.tid
        if (
            info.start_of_frame
            and self.current_temporal < tid <= self.target_temporal
            and info.switch_up
        ):
            self.current_temporal = tid
            self.switches += 1

        if info.sid > self.current_spatial or tid > self.current_temporal:
            return DROP
        if self._multi_spatial:
            return MARKER if (marker or (info.end_of_frame and info.sid == self.current_spatial)) else 0
        return MARKER if marker else 0

    def picture_id(self, picture_id: int, bits: int, forwarded: bool) -> int:
        """The outgoing picture id: continuous over pictures this subscriber got none of
        (gaps from upstream loss stay gaps).  Called for every packet carrying a picture id,
        forwarded or not, in arrival order."""
        if picture_id != self._last_pid_in:
            if self._last_pid_in is not None and not self._last_pid_forwarded:
                self._pid_offset += 1
            self._last_pid_in = picture_id
            self._last_pid_forwarded = forwarded
        elif forwarded:
            self._last_pid_forwarded = True
        return (picture_id - self._pid_offset) & ((1 << bits) - 1)
