"""Pictures cut into segments at keyframes, one layer file per layer per segment (sans-IO).

A segment starts at a keyframe picture (an S0 keyframe restarts every layer: the spatial
layers of a ``_KEY`` mode reference each other on keyframes only, and nothing after a
keyframe references anything before it), and ends at the first keyframe at or after the
target duration: with keyframes rarer than that, the segment is longer (``over_target``)
and the recorder asks for one as soon as the segment is due (:attr:`Segmenter.due`).  A
keyframe that changes the resolutions or the layer count cuts at once, so that each
segment's layers have one resolution each.

Each written frame becomes a record of its layer's file (:mod:`.layerfile`): per spatial
layer, or per spatial and temporal layer (``split_temporal``, VP8's default: its temporal
layers are its only enhancement).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .frames import LayerFrame, Picture
from .layerfile import (
    FLAG_INTER_LAYER,
    FLAG_KEYFRAME,
    HEADER_SIZE,
    encode_header,
    encode_record,
)
from .manifest import InterLayer

__all__ = ["Segment", "SegmentFile", "Segmenter", "layer_id"]

#: a segment longer than the target by more than this (seconds) is over target
LATE_KEYFRAME = 0.5


def layer_id(spatial: int, temporal: int | None) -> str:
    """The name of a layer's files: ``s1``, or ``s0t2`` when temporal layers are split."""
    return f"s{spatial}" if temporal is None else f"s{spatial}t{temporal}"


@dataclass(slots=True)
class SegmentFile:
    layer: str
    name: str
    spatial: int
    temporal: int | None  # None: every temporal layer of the spatial one
    data: bytes
    records: int
    #: bytes of the header and of the records of the segment's first (keyframe) picture
    key_bytes: int
    #: frames of this layer in the segment that were not written (lost, or unreferenced)
    dropped: int
    #: "none": no frame references a lower spatial layer; "keyframe": only in the first
    #: picture; "all": later pictures too
    inter_layer: InterLayer
    resolution: tuple[int, int] | None


@dataclass(slots=True)
class Segment:
    track: str
    sequence: int
    pts: int  # start, in timescale ticks since the recording began
    duration: int  # ticks
    timescale: int
    pictures: int
    discontinuity: bool  # the stream restarted before this segment (a new publisher)
    over_target: bool  # longer than the target duration: no keyframe came in time
    arrival: float  # the caller's clock at the segment's first packet
    files: list[SegmentFile]
    #: pictures with a frame at each (spatial, temporal) level
    level_pictures: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(f.data) for f in self.files)


class _LayerBuilder:
    __slots__ = ("spatial", "temporal", "body", "records", "key_bytes", "dropped", "inter")

    def __init__(self, spatial: int, temporal: int | None) -> None:
        self.spatial = spatial
        self.temporal = temporal
        self.body = bytearray()
        self.records = 0
        self.key_bytes: int | None = None  # of the body, once a later picture came
        self.dropped = 0
        self.inter: InterLayer = "none"


class Segmenter:
    def __init__(
        self,
        track: str,
        codec: str,
        timescale: int,
        *,
        target_duration: float = 2.0,
        split_temporal: bool = False,
        first_sequence: int = 0,
    ) -> None:
        self.track = track
        self.codec = codec.upper()
        self.timescale = timescale
        self.target = round(target_duration * timescale)
        self.split_temporal = split_temporal
        #: the sequence number of the next segment
        self.sequence = first_sequence
        #: the next segment follows a restart of the stream
        self.discontinuity = False
        self._open = False
        self._start = 0
        self._first_picture = 0
        self._arrival = 0.0
        self._pictures = 0
        self._resolutions: list[tuple[int, int]] = []
        self._layers: dict[str, _LayerBuilder] = {}
        #: the (spatial, temporal) layers of the written frames of each picture
        self._present: list[list[tuple[int, int]]] = []
        self._last_pts: int | None = None
        self._interval = 0  # ticks between the last two pictures

    @property
    def open(self) -> bool:
        """A segment is open (else the next keyframe starts one)."""
        return self._open

    @property
    def due(self) -> bool:
        """The open segment has reached its target duration: the next keyframe ends it."""
        return (
            self._open
            and self._last_pts is not None
            and self._last_pts - self._start >= (self.target)
        )

    @property
    def end_pts(self) -> int | None:
        """Where the open segment would end now: after its last picture, by one interval."""
        if self._last_pts is None:
            return None
        return self._last_pts + max(self._interval, 1)

    def add(self, picture: Picture, index: int, pts: int) -> Segment | None:
        """Take a picture (its index and presentation time on the recording's timeline);
        return the segment it ended, if any.  Pictures before the first keyframe are not
        recorded (say so with :attr:`open`)."""
        done: Segment | None = None
        if picture.keyframe and self._open:
            changed = picture.resolutions != self._resolutions
            if pts - self._start >= self.target or changed:
                done = self.end(pts)
        if not self._open:
            if not picture.keyframe:
                return done
            self._begin(picture, index, pts)
        if self._last_pts is not None and pts > self._last_pts:
            self._interval = pts - self._last_pts
        self._last_pts = pts
        self._pictures += 1
        present = []
        for frame in picture.frames:
            self._frame(frame, index, pts)
            if frame.written:
                present.append((frame.spatial, frame.temporal))
        if present:
            self._present.append(present)
        return done

    def end(self, end_pts: int | None = None) -> Segment | None:
        """Close the open segment, ending at ``end_pts`` (the next segment's start; None:
        one picture interval after its last picture)."""
        if not self._open:
            return None
        if end_pts is None:
            end_pts = self.end_pts
        assert end_pts is not None
        duration = max(end_pts - self._start, 1)
        files = []
        for layer, b in sorted(self._layers.items(), key=lambda i: (i[1].spatial, i[0])):
            if not b.records:
                continue
            header = encode_header(
                self.codec, self.timescale, self.sequence, b.records, b.spatial, b.temporal
            )
            res = self._resolutions[b.spatial] if b.spatial < len(self._resolutions) else None
            files.append(
                SegmentFile(
                    layer,
                    f"{self.track}-{self.sequence:06d}-{layer}.sls",
                    b.spatial,
                    b.temporal,
                    header + b.body,
                    b.records,
                    HEADER_SIZE + (len(b.body) if b.key_bytes is None else b.key_bytes),
                    b.dropped,
                    b.inter,
                    res,
                )
            )
        segment = Segment(
            self.track,
            self.sequence,
            self._start,
            duration,
            self.timescale,
            self._pictures,
            self.discontinuity,
            duration > self.target + LATE_KEYFRAME * self.timescale,
            self._arrival,
            files,
            self._count_levels(),
        )
        self.sequence += 1
        self.discontinuity = False
        self._open = False
        self._layers = {}
        self._last_pts = None
        return segment

    def _begin(self, picture: Picture, index: int, pts: int) -> None:
        self._open = True
        self._start = pts
        self._first_picture = index
        self._arrival = picture.arrival
        self._pictures = 0
        self._resolutions = list(picture.resolutions)
        self._layers = {}
        self._present = []

    def _frame(self, frame: LayerFrame, index: int, pts: int) -> None:
        temporal = frame.temporal if self.split_temporal else None
        layer = layer_id(frame.spatial, temporal)
        b = self._layers.get(layer)
        if b is None:
            b = self._layers[layer] = _LayerBuilder(frame.spatial, temporal)
        first = index == self._first_picture
        if not first and b.key_bytes is None:
            b.key_bytes = len(b.body)
        if not frame.written:
            b.dropped += 1
            return
        flags = (FLAG_KEYFRAME if frame.keyframe else 0) | (
            FLAG_INTER_LAYER if frame.inter_layer else 0
        )
        if frame.inter_layer:
            if not first:
                b.inter = "all"
            elif b.inter == "none":
                b.inter = "keyframe"
        b.body += encode_record(index, pts, frame.spatial, frame.temporal, flags, frame.data)
        b.records += 1

    def _count_levels(self) -> dict[tuple[int, int], int]:
        """The pictures that have a frame at each (spatial, temporal) level."""
        if not self._present:
            return {}
        spatial = max(s for present in self._present for s, _ in present)
        temporal = max(t for present in self._present for _, t in present)
        return {
            (s, t): sum(
                1 for present in self._present if any(ps <= s and pt <= t for ps, pt in present)
            )
            for s in range(spatial + 1)
            for t in range(temporal + 1)
        }
