"""One video track's RTP, in sequence order, made into pictures of layer frames (sans-IO).

:class:`FrameAssembler` is fed the packets as :class:`~.reorder.ReorderBuffer` gives them out
(with how many were lost just before each) and returns each finished :class:`Picture`: its
RTP timestamp and its layer frames (spatial id, temporal id, the bytes a decoder takes).

A frame is **written** only when it can be decoded from the frames written before it: every
one of its packets came (from its first to its last, none lost between), and every frame it
references was written.  References are known exactly

* from the dependency descriptor (any codec): the frame numbers ``frame_number - fdiff``;
* from a VP9 flexible-mode descriptor: ``(picture id - P_DIFF)`` in the same spatial layer,
  and the lower spatial layer of the same picture when D (inter-layer dependency) is set;

and otherwise (VP8 without the descriptor, VP9 non-flexible) conservatively: the latest frame
of every temporal layer up to the frame's (only the base one at a VP8 layer sync frame), and
the layer below in the same picture for VP9's D; there a loss breaks every layer.  So a lost
packet drops its frame, and the frames that depend on it (the rest of that layer's chain and
the layers above it that predict from it) are not written until the next keyframe, which
resets the references: no frame after a keyframe references one before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..forwarding.layers import LayerInfo, LayerParser
from ..rtp.packet import RtpHeader
from .depacketize import Av1FrameObus

__all__ = ["FrameAssembler", "LayerFrame", "Picture"]

VIDEO_CODECS = ("VP8", "VP9", "AV1")
#: frames remembered for reference checks before the oldest half is forgotten
_MEMORY = 8192


@dataclass(slots=True)
class LayerFrame:
    spatial: int
    temporal: int
    data: bytes
    #: complete, and every frame it references was written
    written: bool
    #: the independent base frame of a keyframe picture, or a frame of such a picture
    keyframe: bool
    #: references a frame of a lower spatial layer
    inter_layer: bool


@dataclass(slots=True)
class Picture:
    timestamp: int  # RTP timestamp
    arrival: float  # arrival time of its first packet
    frames: list[LayerFrame] = field(default_factory=list)
    #: decoding can start here: its base frame is a keyframe, and was written
    keyframe: bool = False
    #: (width, height) per spatial layer as the stream had told by this picture
    resolutions: list[tuple[int, int]] = field(default_factory=list)


class _Frame:
    """A layer frame being assembled."""

    __slots__ = (
        "timestamp",
        "spatial",
        "temporal",
        "key",
        "refs",
        "keyframe",
        "inter_layer",
        "sync",
        "parts",
        "av1",
        "ok",
    )

    def __init__(self, timestamp: int, info: LayerInfo, av1: bool) -> None:
        self.timestamp = timestamp
        self.spatial = info.sid
        self.temporal = info.tid
        self.key: int | None = None
        self.refs: list[int] | None = None  # None: unknown (the conservative rule applies)
        self.keyframe = info.keyframe
        self.inter_layer = False
        self.sync = False
        self.parts = bytearray()
        self.av1 = Av1FrameObus() if av1 else None
        self.ok = True


class FrameAssembler:
    def __init__(self, codec: str, dd_extension_id: int | None) -> None:
        self.codec = codec.upper()
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"no recording for {codec}: VP8, VP9 and AV1 only")
        self.parser = LayerParser(self.codec, dd_extension_id)
        self._frame: _Frame | None = None
        self._picture: Picture | None = None
        self._last_timestamp: int | None = None
        self._last_marker = True
        #: written or not, by frame key (DD frame number, or VP9 picture id and spatial id)
        self._known: dict[int, tuple[bool, int]] = {}
        #: the conservative rule: the latest frame of each (spatial, temporal) layer written?
        self._latest: dict[tuple[int, int], bool] = {}
        self._lost_since_keyframe = True  # until the first keyframe, nothing is known
        self._frame_number: int | None = None  # extended DD frame number
        self._picture_id: int | None = None  # extended VP9 picture id
        self._ended: int | None = None  # the timestamp of the last picture given out
        #: counts: frames not written because incomplete / a reference was not written;
        #: packets of a picture after its marker bit (dropped)
        self.incomplete = 0
        self.unreferenced = 0
        self.after_marker = 0

    # -- packets ------------------------------------------------------------------------
    def packet(
        self, header: RtpHeader, data: bytes, lost_before: int, arrival: float
    ) -> Picture | None:
        """Take the next packet in sequence order; return the picture it finished, if any
        (the one before it when it starts a new picture, or its own at the marker bit)."""
        if lost_before:
            if self._frame is not None:
                self._frame.ok = False
            self._blind()
        if header.payload_end <= header.payload_offset:
            return None  # padding only: no media (its sequence number kept the order)
        payload = data[header.payload_offset : header.payload_end]
        info = self.parser.parse(payload, header.extensions, header.marker)
        done: Picture | None = None
        ts = header.timestamp
        if self._picture is not None and self._picture.timestamp != ts:
            done = self._end_picture()
        if self._picture is None:
            if ts == self._ended:  # after its picture's marker bit: that picture is gone
                self.after_marker += 1
                self._blind()
                self._remember(header)
                return done
            self._picture = Picture(ts, arrival)
        if not info.valid:
            if self._frame is not None:
                self._frame.ok = False
            self._blind()
            self._remember(header)
            return done
        start, end = info.start_of_frame, info.end_of_frame
        if self.codec == "AV1" and info.dd is None:  # one frame per temporal unit
            start = self._last_marker or ts != self._last_timestamp
            end = header.marker
        frame = self._frame
        if start or frame is None or not self._same_frame(frame, info, ts):
            if frame is not None:  # its end never came
                frame.ok = False
                self._end_frame(frame)
            frame = self._frame = self._begin(ts, info)
            frame.ok = start
        if frame.av1 is not None:
            frame.av1.add(payload)
        elif info.vp9 is not None:
            frame.parts += payload[info.vp9.size :]
        elif info.vp8 is not None:
            frame.parts += payload[info.vp8.size :]
        if end:
            self._end_frame(frame)
            self._frame = None
        self._remember(header)
        if header.marker and done is None:
            done = self._end_picture()
        return done

    def flush(self) -> Picture | None:
        """The picture in progress, its unfinished frame dropped (the stream ended)."""
        return self._end_picture()

    def _blind(self) -> None:
        """Packets lost or unreadable: for frames without exact references, every layer's
        chain is broken, those not seen since the keyframe too."""
        self._latest = dict.fromkeys(self._latest, False)
        self._lost_since_keyframe = True

    def _remember(self, header: RtpHeader) -> None:
        self._last_timestamp = header.timestamp
        self._last_marker = header.marker

    # -- frames -------------------------------------------------------------------------
    def _begin(self, ts: int, info: LayerInfo) -> _Frame:
        frame = _Frame(ts, info, self.codec == "AV1")
        dd = info.dd
        vp9 = info.vp9
        if dd is not None:
            fn = self._extend_frame_number(dd.frame_number)
            frame.key = fn
            frame.refs = [fn - d for d in dd.fdiffs]
        elif vp9 is not None and vp9.flexible and vp9.picture_id is not None:
            pid = self._extend_picture_id(vp9.picture_id, vp9.picture_id_bits)
            frame.key = pid * 8 + info.sid
            refs = [(pid - d) * 8 + info.sid for d in vp9.reference_diffs]
            if vp9.inter_layer_dependent and info.sid:
                refs.append(pid * 8 + info.sid - 1)
            frame.refs = refs
        else:
            frame.inter_layer = vp9 is not None and vp9.inter_layer_dependent and info.sid > 0
            frame.sync = info.vp8 is not None and info.vp8.layer_sync
        return frame

    def _same_frame(self, frame: _Frame, info: LayerInfo, ts: int) -> bool:
        """A packet that does not start a frame continues ``frame``."""
        if frame.timestamp != ts or frame.spatial != info.sid:
            return False
        if info.dd is not None and frame.key is not None:
            return (frame.key & 0xFFFF) == info.dd.frame_number
        return True

    def _end_frame(self, frame: _Frame) -> None:
        picture = self._picture
        assert picture is not None
        if frame.av1 is not None:
            obus = frame.av1.result()
            data = obus if obus is not None else b""
            complete = frame.ok and obus is not None
        else:
            data = bytes(frame.parts)
            complete = frame.ok
        complete = complete and bool(data)
        if frame.keyframe and complete:  # nothing after it references anything before it
            self._known.clear()
            self._latest.clear()
            self._lost_since_keyframe = False
        written = complete and self._references_written(frame, picture)
        if not complete:
            self.incomplete += 1
        elif not written:
            self.unreferenced += 1
        if frame.key is not None:
            if len(self._known) >= _MEMORY:
                for old in list(self._known)[: _MEMORY // 2]:
                    del self._known[old]
            self._known[frame.key] = (written, frame.spatial)
        else:
            self._latest[(frame.spatial, frame.temporal)] = written
        keyframe = (frame.keyframe and written) or (picture.keyframe and frame.spatial > 0)
        if frame.keyframe and written and not picture.frames:
            picture.keyframe = True
            picture.resolutions = list(self.parser.resolutions)
        picture.frames.append(
            LayerFrame(frame.spatial, frame.temporal, data, written, keyframe, frame.inter_layer)
        )

    def _references_written(self, frame: _Frame, picture: Picture) -> bool:
        if frame.keyframe:
            return True
        if frame.refs is not None:
            known = self._known
            for ref in frame.refs:
                entry = known.get(ref)
                if entry is None or not entry[0]:
                    return False
                if entry[1] < frame.spatial:
                    frame.inter_layer = True
            return True
        # the conservative rule: the latest frame of every layer it may reference
        latest = self._latest
        temporal = (0,) if frame.sync else range(frame.temporal + 1)
        for t in temporal:
            # a layer without a frame since the keyframe has nothing to reference, unless
            # that frame may have been lost
            if not latest.get((frame.spatial, t), not self._lost_since_keyframe):
                return False
        if frame.inter_layer:
            below = [f for f in picture.frames if f.spatial == frame.spatial - 1]
            return bool(below) and below[-1].written
        return True

    def _end_picture(self) -> Picture | None:
        picture = self._picture
        frame = self._frame
        if frame is not None and picture is not None and frame.timestamp == picture.timestamp:
            frame.ok = False  # its end never came
            self._end_frame(frame)
            self._frame = None
        self._picture = None
        if picture is not None:
            self._ended = picture.timestamp
            if not picture.resolutions:
                picture.resolutions = list(self.parser.resolutions)
        return picture

    # -- extended numbers ---------------------------------------------------------------
    def _extend_frame_number(self, number: int) -> int:
        last = self._frame_number
        ext = number if last is None else last + ((number - last + 0x8000) & 0xFFFF) - 0x8000
        if last is None or ext > last:
            self._frame_number = ext
        return ext

    def _extend_picture_id(self, number: int, bits: int) -> int:
        last = self._picture_id
        size = 1 << bits
        half = size >> 1
        ext = number if last is None else last + ((number - last + half) % size) - half
        if last is None or ext > last:
            self._picture_id = ext
        return ext
