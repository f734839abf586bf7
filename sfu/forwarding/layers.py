"""What the selector needs to know about each incoming video packet, whatever the codec.

A :class:`LayerParser` per published track reads the codec's own payload descriptor (VP8,
VP9) and, when negotiated, the dependency descriptor header extension (AV1, and Chromium's
VP8/VP9 too), and fills one reused :class:`LayerInfo`.  With a dependency descriptor, that
is the layer source (Chromium's VP8 then carries no temporal id); without one, the codec's
descriptor is.
"""

from __future__ import annotations

from ..codecs.av1_dd import (
    DecodeTargetIndication,
    DependencyDescriptor,
    TemplateStructure,
    parse_dependency_descriptor,
)
from ..codecs.errors import CodecError
from ..codecs.keyframe import av1_is_keyframe, h264_is_keyframe
from ..codecs.vp8 import Vp8Descriptor, parse_vp8_descriptor
from ..codecs.vp9 import Vp9Descriptor, parse_vp9_descriptor

SWITCH = int(DecodeTargetIndication.SWITCH)
NOT_PRESENT = int(DecodeTargetIndication.NOT_PRESENT)
#: entries kept in each of the parser's memos before it starts over
_MEMO_SIZE = 256


class LayerInfo:
    """The layer facts of one packet (one object per source, overwritten per packet)."""

    __slots__ = (
        "sid",
        "tid",
        "start_of_frame",
        "end_of_frame",
        "keyframe",
        "switch_mask",
        "switch_masks",
        "present_mask",
        "picture_id",
        "picture_id_bits",
        "tl0picidx",
        "vp8",
        "vp9",
        "dd",
        "dd_bytes",
        "valid",
        "rewritten_key",
        "rewritten_payload",
    )

    def __init__(self) -> None:
        self.sid = 0
        self.tid = 0
        self.start_of_frame = False
        self.end_of_frame = False
        #: first packet of a picture that decodes on its own (all layers switchable)
        self.keyframe = False
        #: bit t set: a subscriber of this spatial layer can switch up to temporal layer t
        #: at this frame (VP9 U bit, VP8 Y bit, DD switch indication)
        self.switch_mask = 0
        #: with a dependency descriptor: the switch mask for each spatial layer's targets
        self.switch_masks: list[int] | None = None
        #: with a dependency descriptor: bit d set when decode target d needs this frame
        self.present_mask = -1
        self.picture_id: int | None = None
        self.picture_id_bits = 0
        self.tl0picidx: int | None = None
        self.vp8: Vp8Descriptor | None = None
        self.vp9: Vp9Descriptor | None = None
        self.dd: DependencyDescriptor | None = None
        self.dd_bytes: bytes | None = None
        #: False when the packet's descriptors did not parse (it is dropped)
        self.valid = True
        #: the payload with another picture id (and VP9 P_DIFFs), as the last down track
        #: rewrote it for this packet, and the key of that rewrite (the outgoing picture id,
        #: then each P_DIFF in 7 bits; -1: none yet): subscribers whose picture ids and
        #: references map alike share it
        self.rewritten_key = -1
        self.rewritten_payload = b""


class LayerParser:
    def __init__(self, codec: str, dd_extension_id: int | None) -> None:
        self.codec = codec.upper()
        self.dd_extension_id = dd_extension_id
        self.info = LayerInfo()
        self.structure: TemplateStructure | None = None
        #: (width, height) per spatial layer, from the VP9 SS, the DD structure or VP8 keyframes
        self.resolutions: list[tuple[int, int]] = []
        self.spatial_layers = 1
        self.temporal_layers = 1
        #: decode target index by (spatial, temporal) layer, from the DD structure
        self.decode_targets: dict[tuple[int, int], int] = {}
        #: decode targets the publisher currently sends (DD active decode targets)
        self.active_mask = -1
        self._targets_by_spatial: dict[int, list[tuple[int, int]]] = {}
        #: spatial layer s -> the decode target of (s - 1, T0), for the layers whose decode
        #: targets leave out frames of the layer below (K-SVC after a keyframe): forwarding
        #: that target's frames too keeps a down-switch free of keyframes
        self.lower_chain_targets: dict[int, int] = {}
        self.malformed = 0
        #: for the current structure: active_decode_targets by (spatial, temporal),
        #: best_active by (spatial, temporal, active mask), _dti_masks by template id
        self._active_masks: dict[tuple[int, int], int] = {}
        self._best_active: dict[tuple[int, int, int], tuple[int, int]] = {}
        self._template_masks: dict[int, tuple[int, int, list[int]]] = {}

    def parse(self, payload: bytes, extensions: dict[int, bytes], marker: bool) -> LayerInfo:
        info = self.info
        info.valid = True
        info.vp8 = info.vp9 = info.dd = None
        info.switch_masks = None
        info.present_mask = -1
        info.dd_bytes = None
        info.picture_id = info.tl0picidx = None
        info.picture_id_bits = 0
        info.rewritten_key = -1
        try:
            if self.codec == "VP9":
                self._vp9(info, payload)
            elif self.codec == "VP8":
                self._vp8(info, payload, marker)
            else:
                info.sid = info.tid = 0
                info.start_of_frame = True
                info.end_of_frame = marker
                info.switch_mask = 0
                if self.codec == "AV1":
                    info.keyframe = av1_is_keyframe(payload)
                elif self.codec == "H264":
                    info.keyframe = h264_is_keyframe(payload)
                else:
                    info.keyframe = False
            if self.dd_extension_id is not None:
                raw = extensions.get(self.dd_extension_id)
                if raw is not None:
                    self._dd(info, raw)
        except CodecError:
            self.malformed += 1
            info.valid = False
        return info

    # -- codec descriptors ---------------------------------------------------------------
    def _vp9(self, info: LayerInfo, payload: bytes) -> None:
        d = parse_vp9_descriptor(payload)
        info.vp9 = d
        info.sid = d.sid
        info.tid = d.tid
        info.start_of_frame = d.start_of_frame
        info.end_of_frame = d.end_of_frame
        info.keyframe = d.keyframe
        info.switch_mask = (1 << d.tid) if d.switching_up else 0
        info.picture_id = d.picture_id
        info.picture_id_bits = d.picture_id_bits
        info.tl0picidx = d.tl0picidx
        if d.ss is not None:
            self.spatial_layers = d.ss.spatial_layers
            if d.ss.resolutions:
                self.resolutions = list(d.ss.resolutions)
            if d.ss.picture_group:
                self.temporal_layers = max(t for t, _, _ in d.ss.picture_group) + 1
        if d.tid + 1 > self.temporal_layers:
            self.temporal_layers = d.tid + 1
        if d.sid + 1 > self.spatial_layers:
            self.spatial_layers = d.sid + 1

    def _vp8(self, info: LayerInfo, payload: bytes, marker: bool) -> None:
        d = parse_vp8_descriptor(payload)
        info.vp8 = d
        info.sid = 0
        info.tid = d.tid or 0
        info.start_of_frame = d.start_of_frame
        info.end_of_frame = marker
        info.keyframe = d.keyframe
        info.switch_mask = (1 << info.tid) if d.layer_sync else 0
        info.picture_id = d.picture_id
        info.picture_id_bits = d.picture_id_bits
        info.tl0picidx = d.tl0picidx
        if d.tid is not None and d.tid + 1 > self.temporal_layers:
            self.temporal_layers = d.tid + 1
        if d.keyframe:
            header = payload[d.size : d.size + 10]
            # VP8 keyframe header: 3-byte frame tag, start code 9d 01 2a, 14-bit width/height
            if len(header) == 10 and header[3:6] == b"\x9d\x01\x2a":
                width = int.from_bytes(header[6:8], "little") & 0x3FFF
                height = int.from_bytes(header[8:10], "little") & 0x3FFF
                self.resolutions = [(width, height)]

    def _dd(self, info: LayerInfo, raw: bytes) -> None:
        dd = parse_dependency_descriptor(raw, self.structure)
        info.dd = dd
        info.dd_bytes = raw
        if dd.structure is not None and dd.structure is not self.structure:
            self._learn_structure(dd.structure)
            self.active_mask = -1
        if dd.active_decode_targets_bitmask is not None:
            self.active_mask = dd.active_decode_targets_bitmask
        info.sid = dd.spatial_id
        info.tid = dd.temporal_id
        info.start_of_frame = dd.start_of_frame
        info.end_of_frame = dd.end_of_frame
        # a keyframe starts a new structure and references nothing
        info.keyframe = (
            dd.start_of_frame and dd.structure is not None and not dd.fdiffs and dd.spatial_id == 0
        )
        # what the frame's indications mean for each decode target and spatial layer: one
        # template's are the same on every packet (unless the packet overrides them)
        cached = None if dd.custom_dtis else self._template_masks.get(dd.template_id)
        if cached is None or cached[0] != self.spatial_layers:
            cached = self._dti_masks(dd.dtis)
            if not dd.custom_dtis:
                self._template_masks[dd.template_id] = cached
        _, info.present_mask, masks = cached
        info.switch_masks = masks
        info.switch_mask = masks[dd.spatial_id] if dd.spatial_id < len(masks) else 0

    def _dti_masks(self, dtis: list[int]) -> tuple[int, int, list[int]]:
        """(spatial layers, the decode targets present, the switch mask per spatial layer)
        for a frame's decode target indications."""
        present = 0
        for dt, indication in enumerate(dtis):
            if indication != NOT_PRESENT:
                present |= 1 << dt
        masks = [0] * self.spatial_layers
        for s, targets in self._targets_by_spatial.items():
            if s < len(masks):
                for t, dt in targets:
                    if dt < len(dtis) and dtis[dt] == SWITCH:
                        masks[s] |= 1 << t
        return self.spatial_layers, present, masks

    def _learn_structure(self, structure: TemplateStructure) -> None:
        self.structure = structure
        self.spatial_layers = structure.spatial_layers
        self.temporal_layers = structure.temporal_layers
        if structure.resolutions:
            self.resolutions = list(structure.resolutions)
        targets: dict[tuple[int, int], int] = {}
        for dt in range(structure.decode_target_count):
            present = [t for t in structure.templates if t.dtis[dt] != NOT_PRESENT]
            if present:
                key = (max(t.spatial_id for t in present), max(t.temporal_id for t in present))
                targets.setdefault(key, dt)
        self.decode_targets = targets
        self._active_masks = {}
        self._best_active = {}
        self._template_masks = {}
        by_spatial: dict[int, list[tuple[int, int]]] = {}
        for (s, t), dt in targets.items():
            by_spatial.setdefault(s, []).append((t, dt))
        self._targets_by_spatial = by_spatial
        lower: dict[int, int] = {}
        for (s, _t), dt in targets.items():
            below = targets.get((s - 1, 0))
            if below is None:
                continue
            if any(
                tpl.spatial_id == s - 1
                and tpl.dtis[below] != NOT_PRESENT
                and tpl.dtis[dt] == NOT_PRESENT
                for tpl in structure.templates
            ):
                lower[s] = below
        self.lower_chain_targets = lower

    def best_active(self, spatial: int, temporal: int) -> tuple[int, int]:
        """The highest layers <= (spatial, temporal) whose decode target the publisher sends
        (asked at every picture start by every subscriber: remembered)."""
        key = (spatial, temporal, self.active_mask)
        best = self._best_active.get(key)
        if best is None:
            best = (0, 0)
            active = self.active_mask
            for (s, t), dt in self.decode_targets.items():
                if s <= spatial and t <= temporal and active & (1 << dt) and (s, t) > best:
                    best = (s, t)
            if len(self._best_active) >= _MEMO_SIZE:
                self._best_active.clear()
            self._best_active[key] = best
        return best

    def active_decode_targets(self, spatial: int, temporal: int) -> int:
        """The bitmask of decode targets a subscriber receiving up to (spatial, temporal) can
        decode (asked for every forwarded packet with a dependency descriptor: remembered)."""
        key = (spatial, temporal)
        mask = self._active_masks.get(key)
        if mask is None:
            mask = 0
            for (s, t), dt in self.decode_targets.items():
                if s <= spatial and t <= temporal:
                    mask |= 1 << dt
            if len(self._active_masks) >= _MEMO_SIZE:
                self._active_masks.clear()
            self._active_masks[key] = mask
        return mask
