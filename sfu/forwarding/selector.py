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
* VP8/VP9 picture ids stay continuous over pictures dropped whole;
* a *late* packet (older than one already received: a retransmission the SFU asked the
  publisher for, or reordering) gets the decision its frame got, or one from the current
  layers if none of its frame came before, and changes none of the selector's state; a frame
  whose first packets were lost is judged by its layers rather than dropped, so that the
  retransmitted start completes it.

It says whether a keyframe is wanted; the caller asks the publisher (coalesced per source).
"""

from __future__ import annotations

from ..codecs.av1_dd import DependencyDescriptor
from .layers import NOT_PRESENT, LayerInfo, LayerParser

DROP = -1
MARKER = 0x80
_FRAME_RING = 512
_FRAME_MASK = _FRAME_RING - 1
_PID_RING = 256
_PID_MASK = _PID_RING - 1


class LayerSelector:
    __slots__ = (
        "target_spatial",
        "target_temporal",
        "current_spatial",
        "current_temporal",
        "paused",
        "keep_lower_chain",
        "_lower_chain_intact",
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
        "_decided_frames",
        "_chain_frames",
        "_picture_end_frame",
        "_pid_seen",
        "_pid_offsets",
        "_pid_closed",
        "renumbered_from",
        "_last_pid_gap",
        "_last_pid_likely",
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
        #: every frame of the lower chain since the last keyframe was forwarded (it can only
        #: start at a keyframe: a chain frame references the one before it)
        self._lower_chain_intact = False
        self.keyframe_wanted = True
        self.switches = 0
        self._parser = parser
        self._multi_spatial = multi_spatial
        self._pid_offset = 0
        self._last_pid_in: int | None = None
        self._last_pid_forwarded = True
        self._frame = -1
        self._frame_forwarded = False
        #: by frame number (DD): the frames forwarded, and all the frames decided on
        self._forwarded_frames = [-1] * _FRAME_RING
        self._decided_frames = [-1] * _FRAME_RING
        #: ... and those forwarded only as the lower layer's chain beside the top layer
        self._chain_frames = [-1] * _FRAME_RING
        #: the frame that ended the last picture forwarded (its packet carried the marker)
        self._picture_end_frame = -1
        #: by picture id: the picture-id offset each recent picture was forwarded with
        self._pid_seen = [-1] * _PID_RING
        self._pid_offsets = [0] * _PID_RING
        #: by picture id: the pictures dropped whole, whose id the next picture took
        self._pid_closed = [-1] * _PID_RING
        #: the first incoming picture id mapped with the current picture-id offset (None:
        #: never changed): P_DIFFs reaching back past it need rewriting
        self.renumbered_from: int | None = None
        #: the current picture may have lost packets / its missing packets would be forwarded
        self._last_pid_gap = False
        self._last_pid_likely = False

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
        self._lower_chain_intact = False

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
        if self.paused or not info.valid:
            return DROP
        parser = self._parser
        if info.dd is not None and parser is not None and parser.structure is not None:
            return self._select_dd(info, info.dd, parser, marker, late)
        if not late and info.start_of_frame and info.sid == 0:
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
            self._lower_chain_intact = True
            self.switches += 1
            return
        spatial, temporal = self.current_spatial, self.current_temporal
        if info.keyframe:
            spatial, temporal = target_s, target_t
            self.keyframe_wanted = False
            self._lower_chain_intact = True
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
            end = self._picture_end_frame
            if (
                forward
                and self._chain_frames[frame & _FRAME_MASK] == frame
                and end >= 0
                and (end - frame) & 0xFFFF < 0x8000
            ):
                # part of a lower-layer chain frame kept beside the top layer, arriving after
                # its picture was complete without it (lost upstream, retransmitted): the
                # receiver may have decoded that picture from its top frame alone, and would
                # drop this frame, leaving the chain frames after it without their reference
                # -- and every picture carrying one undecodable until a keyframe.  The chain
                # ends here instead.
                self._lower_chain_intact = False
                return DROP
        elif dd.start_of_frame:
            if info.sid == 0:
                self._at_picture_start(info, dd, parser)
            self._frame = frame
            forward = self._frame_forwarded = self._decide(info, dd, parser)
            self._record(frame, forward)
        elif frame != self._frame:
            # the start of this frame was lost upstream: judge the frame by its layers (its
            # retransmitted start, late, gets the same decision)
            self._frame = frame
            forward = self._frame_forwarded = self._decision(frame, info, dd, parser)
        else:
            forward = self._frame_forwarded
        if not forward:
            return DROP
        bit = self._marker(info, marker)
        if bit and not late:
            self._picture_end_frame = frame
        return bit

    def _decide(self, info: LayerInfo, dd: DependencyDescriptor, parser: LayerParser) -> bool:
        """Whether a frame belongs to what this subscriber receives now."""
        if not self.started:
            return False
        target = parser.decode_targets.get((self.current_spatial, self.current_temporal))
        if target is not None and target < len(dd.dtis):
            forward = dd.dtis[target] != NOT_PRESENT
            if not forward and self.current_spatial == parser.spatial_layers - 1:
                below = parser.lower_chain_targets.get(self.current_spatial)
                if below is not None and below < len(dd.dtis) and dd.dtis[below] != NOT_PRESENT:
                    # a frame of the lower layer's chain: forwarded only while the chain
                    # is whole since a keyframe, or the receiver gets frames it cannot decode
                    if self.keep_lower_chain and self._lower_chain_intact:
                        forward = True
                        slot = dd.frame_number & _FRAME_MASK
                        self._chain_frames[slot] = dd.frame_number
                    else:
                        self._lower_chain_intact = False
            return bool(forward)
        return info.sid <= self.current_spatial and info.tid <= self.current_temporal

    def _decision(
        self, frame: int, info: LayerInfo, dd: DependencyDescriptor, parser: LayerParser
    ) -> bool:
        """The decision already taken for ``frame`` (a late packet, or one whose frame's
        start was lost upstream), else a new one, recorded."""
        slot = frame & _FRAME_MASK
        if self._decided_frames[slot] == frame:
            return self._forwarded_frames[slot] == frame
        forward = self._decide(info, dd, parser)
        self._record(frame, forward)
        return forward

    def _record(self, frame: int, forward: bool) -> None:
        slot = frame & _FRAME_MASK
        self._decided_frames[slot] = frame
        self._forwarded_frames[slot] = frame if forward else -1

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

    def picture_id(
        self,
        picture_id: int,
        bits: int,
        forwarded: bool,
        late: bool = False,
        gap: bool = False,
        likely: bool = False,
    ) -> int:
        """The outgoing picture id: continuous over pictures this subscriber got none of
        (gaps from upstream loss stay gaps).  Called for every packet carrying a picture id,
        forwarded or not, in arrival order; a late packet gets its picture's id as it was
        forwarded (or the mapping of the pictures around it, for a picture not seen before).

        ``gap``: packets are missing just before this one (lost upstream, maybe to arrive
        late); ``likely``: such a missing packet of this picture would be forwarded (its
        temporal layer is forwarded).  A picture none of whose packets was forwarded counts
        as dropped whole, unless packets are missing that would have been."""
        mask = (1 << bits) - 1
        slot = picture_id & _PID_MASK
        if late:
            if self._pid_seen[slot] == picture_id:
                return (picture_id - self._pid_offsets[slot]) & mask
            return (picture_id - self._pid_offset) & mask
        last = self._last_pid_in
        if picture_id != last:
            if last is not None and not self._last_pid_forwarded:
                # the missing packets just before this picture may be the previous one's
                uncertain = self._last_pid_gap or gap
                if not (uncertain and self._last_pid_likely):
                    self._pid_offset += 1
                    self._pid_closed[last & _PID_MASK] = last
                    self.renumbered_from = picture_id
            self._last_pid_in = picture_id
            self._last_pid_forwarded = forwarded
            self._last_pid_gap = gap
            self._last_pid_likely = likely
            offset = self._pid_offset
            if last is not None:
                # pictures skipped (lost upstream so far) take this picture's mapping
                skipped = (picture_id - last) & mask
                if skipped < _PID_RING:
                    for k in range(1, skipped):
                        missing = (last + k) & mask
                        self._pid_seen[missing & _PID_MASK] = missing
                        self._pid_offsets[missing & _PID_MASK] = offset
                        self._pid_closed[missing & _PID_MASK] = -1
            self._pid_seen[slot] = picture_id
            self._pid_offsets[slot] = offset
            self._pid_closed[slot] = -1
        else:
            if forwarded:
                self._last_pid_forwarded = True
            if gap:
                self._last_pid_gap = True
            if likely:
                self._last_pid_likely = True
        return (picture_id - self._pid_offset) & mask

    def reference_diffs(self, picture_id: int, bits: int, diffs: list[int]) -> list[int] | None:
        """A forwarded VP9 flexible-mode picture's P_DIFFs for the outgoing picture ids (see
        :meth:`picture_id`, called first for this packet): each names the picture the
        publisher's did, as it was renumbered.  ``None`` when one names a picture dropped
        whole (its id went to the next picture): no outgoing id is that picture's.  With
        consistent layer selection that does not happen (a forwarded frame references only
        frames of its layers or below, forwarded too).  A reference to a picture this
        selector never saw (lost upstream beyond its memory) is left as it is."""
        mask = (1 << bits) - 1
        since = self.renumbered_from
        if since is None or 128 <= ((picture_id - since) & mask) <= (mask >> 1):
            # the offset has not changed over the last 127 pictures (as far as any P_DIFF
            # reaches back): every reference keeps its distance (the common case, cheap)
            return diffs
        slot = picture_id & _PID_MASK
        seen = self._pid_seen
        offsets = self._pid_offsets
        offset = offsets[slot] if seen[slot] == picture_id else self._pid_offset
        out = []
        for diff in diffs:
            ref = (picture_id - diff) & mask
            at = ref & _PID_MASK
            if seen[at] != ref:
                out.append(diff)
            elif self._pid_closed[at] == ref:
                return None
            else:
                diff -= offset - offsets[at]
                if diff <= 0:
                    return None
                out.append(diff)
        return out
