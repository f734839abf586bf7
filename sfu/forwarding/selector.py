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
* a *late* packet (older than one already received: a retransmission the SFU asked the
  publisher for, or reordering) gets the decision its frame got, or one from the current
  layers if none of its frame came before, and changes none of the selector's state; a frame
  whose first packets were lost is judged by its layers rather than dropped, so that the
  retransmitted start completes it.

It says whether a keyframe is wanted; the caller asks the publisher (coalesced per source),
and why it dropped a packet (:attr:`LayerSelector.drop_reason`).  What was decided per frame
is :class:`~sfu.forwarding.decisions.FrameDecisions`'; the lower layer's chain kept beside
the top layer, :class:`~sfu.forwarding.chain.LowerChain`'s.
"""

from __future__ import annotations

from ..codecs.av1_dd import DependencyDescriptor
from .chain import LowerChain
from .decisions import FrameDecisions
from .drops import DropReason
from .layers import NOT_PRESENT, LayerInfo, LayerParser

DROP = -1
MARKER = 0x80
# the drop reasons as plain ints (read on every packet dropped)
_PAUSED = int(DropReason.PAUSED)
_INVALID = int(DropReason.INVALID)
_WAITING = int(DropReason.WAITING_FOR_KEYFRAME)
_LAYER = int(DropReason.LAYER)
_LATE_CHAIN = int(DropReason.LATE_CHAIN)


class LayerSelector:
    __slots__ = (
        "target_spatial",
        "target_temporal",
        "current_spatial",
        "current_temporal",
        "paused",
        "chain",
        "keyframe_wanted",
        "switches",
        "drop_reason",
        "_parser",
        "_multi_spatial",
        "_frame",
        "_frame_forwarded",
        "_decisions",
    )

    def __init__(self, parser: LayerParser | None = None, multi_spatial: bool = True) -> None:
        self.target_spatial = 2
        self.target_temporal = 2
        #: -1: nothing forwarded yet (waiting for a keyframe)
        self.current_spatial = -1
        self.current_temporal = -1
        self.paused = False
        self.chain = LowerChain()
        self.keyframe_wanted = True
        self.switches = 0
        #: why the last packet dropped was, a :class:`DropReason` (valid when :meth:`select`
        #: returned DROP)
        self.drop_reason = _WAITING
        self._parser = parser
        self._multi_spatial = multi_spatial
        self._frame = -1
        self._frame_forwarded = False
        self._decisions = FrameDecisions()

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

    def restart(self) -> None:
        """The receiver lost a frame that what it would get next depends on (a lower-chain
        frame in a picture left incomplete): forward nothing until the next keyframe, which
        starts the target layers.  What is dropped meanwhile could not be decoded and would
        only delay the keyframe on a narrow link (sequence numbers stay continuous)."""
        self.current_spatial = self.current_temporal = -1
        self.keyframe_wanted = True
        self.chain.intact = False

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

    def select(self, info: LayerInfo, marker: bool, late: bool = False) -> int:
        """``DROP``, or the marker bit (0 or ``MARKER``) for the forwarded packet; ``late``:
        the packet is older than one the source already received."""
        if self.paused:
            self.drop_reason = _PAUSED
            return DROP
        if not info.valid:
            self.drop_reason = _INVALID
            return DROP
        parser = self._parser
        dd = info.dd
        if dd is not None and parser is not None and parser.structure is not None:
            if late or dd.start_of_frame or dd.frame_number != self._frame:
                return self._select_dd(info, dd, parser, marker, late)
            # the rest of the frame in hand, the usual packet: its first packet's decision
            # (_select_dd's last branch, inlined)
            if not self._frame_forwarded:
                self.drop_reason = _LAYER if self.current_spatial >= 0 else _WAITING
                return DROP
            if marker or (
                self._multi_spatial and info.end_of_frame and info.sid == self.current_spatial
            ):
                self.chain.picture_end = dd.frame_number
                return MARKER
            return 0
        if not late and info.start_of_frame and info.sid == 0:
            self._at_picture_start(info, None, None)
        if self.current_spatial < 0:  # not started
            self.drop_reason = _WAITING
            return DROP
        if info.sid > self.current_spatial or info.tid > self.current_temporal:
            self.drop_reason = _LAYER
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
            self.chain.intact = True
            self.switches += 1
            return
        spatial, temporal = self.current_spatial, self.current_temporal
        if info.keyframe:
            spatial, temporal = target_s, target_t
            self.keyframe_wanted = False
            self.chain.intact = True
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
        self,
        info: LayerInfo,
        dd: DependencyDescriptor,
        parser: LayerParser,
        marker: bool,
        late: bool,
    ) -> int:
        frame = dd.frame_number
        if late:
            forward = self._decision(frame, info, dd, parser)
            if forward and self.chain.late(frame):
                self.drop_reason = _LATE_CHAIN
                return DROP
        elif dd.start_of_frame:
            if info.sid == 0:
                self._at_picture_start(info, dd, parser)
            self._frame = frame
            forward = self._frame_forwarded = self._decide(info, dd, parser)
            self._decisions.record(frame, forward)
        elif frame != self._frame:
            # the start of this frame was lost upstream: judge the frame by its layers (its
            # retransmitted start, late, gets the same decision)
            self._frame = frame
            forward = self._frame_forwarded = self._decision(frame, info, dd, parser)
        else:
            forward = self._frame_forwarded
        if not forward:
            self.drop_reason = _LAYER if self.current_spatial >= 0 else _WAITING
            return DROP
        # (_marker, inlined: every forwarded packet)
        if marker or (
            self._multi_spatial and info.end_of_frame and info.sid == self.current_spatial
        ):
            if not late:
                self.chain.picture_end = frame
            return MARKER
        return 0

    def _decide(self, info: LayerInfo, dd: DependencyDescriptor, parser: LayerParser) -> bool:
        """Whether a frame belongs to what this subscriber receives now."""
        if self.current_spatial < 0:  # not started
            return False
        target = parser.decode_targets.get((self.current_spatial, self.current_temporal))
        if target is not None and target < len(dd.dtis):
            forward = dd.dtis[target] != NOT_PRESENT
            if not forward and self.current_spatial == parser.spatial_layers - 1:
                below = parser.lower_chain_targets.get(self.current_spatial)
                if below is not None and below < len(dd.dtis) and dd.dtis[below] != NOT_PRESENT:
                    # a frame of the lower layer's chain: forwarded only while the chain
                    # is whole since a keyframe, or the receiver gets frames it cannot decode
                    forward = self.chain.take(dd.frame_number)
            return bool(forward)
        return info.sid <= self.current_spatial and info.tid <= self.current_temporal

    def _decision(
        self, frame: int, info: LayerInfo, dd: DependencyDescriptor, parser: LayerParser
    ) -> bool:
        """The decision already taken for ``frame`` (a late packet, or one whose frame's
        start was lost upstream), else a new one, recorded."""
        decisions = self._decisions
        if decisions.decided(frame):
            return decisions.forwarded(frame)
        forward = self._decide(info, dd, parser)
        decisions.record(frame, forward)
        return forward

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
        return self._decisions.forwarded((dd.frame_number - fdiff) & 0xFFFF)
