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

from ..codecs.av1_dd import DependencyDescriptor
from .layers import NOT_PRESENT, LayerInfo, LayerParser

DROP = -1
MARKER = 0x80
_FRAME_RING = 512
_FRAME_MASK = _FRAME_RING - 1


class LayerSelector:
    __slots__ = (
        "target_spatial",
        "target_temporal",
        "current_spatial",
        "current_temporal",
        "paused",
        "keep_lower_chain",
        "keyframe_wanted",
        "switches",
        "_parser",
        "_multi_spatial",
        "_pid_offset",
        "_last_pid_in",
        "_last_pid_forwarded",
        "_frame",
        "_frame_forwarded",
        "_forwarded_frames",
    )

    def __init__(self, parser: LayerParser | None = None, multi_spatial: bool = True) -> None:
        self.target_spatial = 2
        self.target_temporal = 2
        #: -1: nothing forwarded yet (waiting for a keyframe)
        self.current_spatial = -1
        self.current_temporal = -1
        self.paused = False
        #: with a dependency descriptor, at the top spatial layer, also forward the frames of
        #: the decode target one layer down at T0 where the current target leaves them out
        #: (K-SVC): costs
        #: that layer's base rate, buys a spatial down-switch without waiting for a keyframe
        #: (set when the subscriber's bandwidth is estimated)
        self.keep_lower_chain = False
        self.keyframe_wanted = True
        self.switches = 0
        self._parser = parser
        self._multi_spatial = multi_spatial
        self._pid_offset = 0
        self._last_pid_in: int | None = None
        self._last_pid_forwarded = True
        self._frame = -1
        self._frame_forwarded = False
        self._forwarded_frames = [-1] * _FRAME_RING

    @property
    def started(self) -> bool:
        return self.current_spatial >= 0

    def set_target(self, spatial: int, temporal: int) -> None:
        self.target_spatial = spatial
        self.target_temporal = temporal
        if self.started and spatial != self.current_spatial:
            self.keyframe_wanted = self._parser is None or self._parser.structure is None
            if spatial > self.current_spatial:
                self.keyframe_wanted = True

    def pause(self) -> None:
        self.paused = True
        self.current_spatial = self.current_temporal = -1

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.keyframe_wanted = True

    def _target(self) -> tuple[int, int]:
        """The target, lowered to what the publisher currently sends."""
        parser = self._parser
        if parser is None:
            return self.target_spatial, self.target_temporal
        spatial = min(self.target_spatial, parser.spatial_layers - 1)
        temporal = min(self.target_temporal, parser.temporal_layers - 1)
        if parser.structure is not None:
            return parser.best_active(spatial, temporal)
        return spatial, temporal

    def select(self, info: LayerInfo, marker: bool) -> int:
        """``DROP``, or the marker bit (0 or ``MARKER``) for the forwarded packet."""
        if self.paused or not info.valid:
            return DROP
        parser = self._parser
        if info.dd is not None and parser is not None and parser.structure is not None:
            return self._select_dd(info, info.dd, parser, marker)
        picture_start = info.start_of_frame and info.sid == 0
        if picture_start:
            self._at_picture_start(info, None, None)
        if not self.started:
            return DROP
        if info.sid > self.current_spatial or info.tid > self.current_temporal:
            return DROP
        return self._marker(info, marker)

    def _marker(self, info: LayerInfo, marker: bool) -> int:
        if self._multi_spatial:
            last = marker or (info.end_of_frame and info.sid == self.current_spatial)
            return MARKER if last else 0
        return MARKER if marker else 0

    def _at_picture_start(
        self, info: LayerInfo, dd: DependencyDescriptor | None, parser: LayerParser | None
    ) -> None:
        """Move the current layers towards the target where the receiver can follow."""
        target_s, target_t = self._target()
        if not self.started:
            if not info.keyframe:
                self.keyframe_wanted = True
                return
            self.current_spatial, self.current_temporal = target_s, target_t
            self.keyframe_wanted = False
            self.switches += 1
            return
        spatial, temporal = self.current_spatial, self.current_temporal
        if info.keyframe:
            spatial, temporal = target_s, target_t
            self.keyframe_wanted = False
        else:
            if target_s != spatial:
                if dd is not None and parser is not None:
                    # the frames the new layer needs must all have been forwarded
                    if self._chain_intact(dd, parser, target_s, temporal):
                        spatial = target_s
                        self.keyframe_wanted = False
                    else:
                        self.keyframe_wanted = True
                elif target_s < spatial:  # all lower layers were forwarded
                    spatial = target_s
                else:
                    self.keyframe_wanted = True
            else:
                self.keyframe_wanted = False
            if spatial > target_s:
                # a spatial down-switch is pending: the budget is the lower layer's, so the
                # current layer must not climb in frame rate meanwhile
                target_t = min(target_t, temporal)
            if target_t < temporal:
                temporal = target_t
            elif target_t > temporal:
                # a switching point of the picture's first frame: the later frames of the
                # picture (upper spatial layers) follow its pattern
                for t in range(target_t, temporal, -1):
                    if info.switch_mask & (1 << t):
                        temporal = t
                        break
        if (spatial, temporal) != (self.current_spatial, self.current_temporal):
            self.current_spatial, self.current_temporal = spatial, temporal
            self.switches += 1

    # -- with a dependency descriptor ------------------------------------------------------
    def _select_dd(
        self, info: LayerInfo, dd: DependencyDescriptor, parser: LayerParser, marker: bool
    ) -> int:
        if dd.start_of_frame:
            if info.sid == 0:
                self._at_picture_start(info, dd, parser)
            self._frame = dd.frame_number
            forward = False
            if self.started:
                target = parser.decode_targets.get((self.current_spatial, self.current_temporal))
                if target is not None and target < len(dd.dtis):
                    forward = dd.dtis[target] != NOT_PRESENT
                    if (
                        not forward
                        and self.keep_lower_chain
                        and self.current_spatial == parser.spatial_layers - 1
                    ):
                        below = parser.lower_chain_targets.get(self.current_spatial)
                        if below is not None and below < len(dd.dtis):
                            forward = dd.dtis[below] != NOT_PRESENT
                else:
                    forward = info.sid <= self.current_spatial and info.tid <= self.current_temporal
            self._frame_forwarded = forward
            if forward:
                self._forwarded_frames[dd.frame_number & _FRAME_MASK] = dd.frame_number
        elif dd.frame_number != self._frame:
            return DROP  # the start of this frame was not seen
        if not self._frame_forwarded:
            return DROP
        return self._marker(info, marker)

    def _chain_intact(
        self, dd: DependencyDescriptor, parser: LayerParser, spatial: int, temporal: int
    ) -> bool:
        """Whether every frame of the chain protecting decode target (spatial, temporal) up
        to this one was forwarded, so the receiver can decode that target from here on."""
        structure = parser.structure
        target = parser.decode_targets.get((spatial, temporal))
        if structure is None or target is None:
            return False
        chains = structure.decode_target_protected_by_chain
        if target >= len(chains) or chains[target] >= len(dd.chain_fdiffs):
            return False
        fdiff = dd.chain_fdiffs[chains[target]]
        if fdiff == 0:
            return True
        previous = (dd.frame_number - fdiff) & 0xFFFF
        return self._forwarded_frames[previous & _FRAME_MASK] == previous

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
