"""A track's segments so far, as the manifest describes them (sans-IO).

:class:`TrackHistory` takes each finished :class:`~.segmenter.Segment` and keeps what the
manifest says of the track: the segments in the live window (all of them without one),
and over every segment recorded the bytes per layer and per level, the pictures per level
and the duration, from which bitrates and frame rates are measured.
"""

from __future__ import annotations

from typing import Literal

from .manifest import (
    InterLayer,
    Layer,
    Level,
    SegmentEntry,
    SegmentFileEntry,
    Track,
    codec_string,
)
from .segmenter import Segment, SegmentFile

__all__ = ["TrackHistory"]

MAX_SPATIAL = 4
MAX_TEMPORAL = 8
_WORSE = {"none": 0, "keyframe": 1, "all": 2}


class _LayerTotals:
    __slots__ = ("spatial", "temporal", "bytes", "resolution", "inter_layer")

    def __init__(self, spatial: int, temporal: int | None) -> None:
        self.spatial = spatial
        self.temporal = temporal
        self.bytes = 0
        self.resolution: tuple[int, int] | None = None
        self.inter_layer: InterLayer = "none"


def _in_level(f: SegmentFile, spatial: int, temporal: int) -> bool:
    return f.spatial <= spatial and (f.temporal is None or f.temporal <= temporal)


def sparse_allowed(files: list[SegmentFile], spatial: int) -> bool:
    """A segment's lower layers may be read up to their key bytes at a level whose top
    spatial layer is ``spatial``: its files reference them in the first picture only, and
    lost nothing (else the pictures they miss are rendered from the lower layers)."""
    top = [f for f in files if f.spatial == spatial]
    return spatial > 0 and bool(top) and all(f.inter_layer != "all" and not f.dropped for f in top)


class TrackHistory:
    def __init__(
        self,
        name: str,
        kind: Literal["video", "audio"],
        codec: str,
        timescale: int,
        *,
        target_duration: float,
        split_temporal: bool = False,
        parameters: dict[str, str] | None = None,
        channels: int | None = None,
        window: int | None = None,
    ) -> None:
        self.name = name
        self.kind: Literal["video", "audio"] = kind
        self.codec = codec
        self.timescale = timescale
        self.target_duration = target_duration
        self.split_temporal = split_temporal
        self.parameters = dict(parameters or {})
        self.channels = channels
        self.window = window
        self.entries: list[SegmentEntry] = []
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.duration = 0  # ticks, every segment recorded
        self.max_duration = 0
        self.segments = 0
        self._layers: dict[str, _LayerTotals] = {}
        self._spatial = 0  # spatial and temporal layers seen: the levels
        self._temporal = 0
        #: per level (spatial, temporal): bytes fetched whole, bytes fetched sparse, pictures
        self._level_bytes: dict[tuple[int, int], list[int]] = {}
        self._sparse_seen: set[tuple[int, int]] = set()

    def add(self, segment: Segment) -> list[str]:
        """Take a finished segment; return the names of the files of the segments that left
        the live window (the caller removes them, a while later: HLS keeps them available
        for a playlist's duration)."""
        self.segments += 1
        self.duration += segment.duration
        self.max_duration = max(self.max_duration, segment.duration)
        files: dict[str, SegmentFileEntry] = {}
        for f in segment.files:
            totals = self._layers.get(f.layer)
            if totals is None:
                totals = self._layers[f.layer] = _LayerTotals(f.spatial, f.temporal)
            totals.bytes += len(f.data)
            totals.resolution = f.resolution or totals.resolution
            if _WORSE[f.inter_layer] > _WORSE[totals.inter_layer]:
                totals.inter_layer = f.inter_layer
            self._spatial = max(self._spatial, f.spatial + 1)
            self._temporal = max(self._temporal, (f.temporal or 0) + 1)
            files[f.layer] = SegmentFileEntry(
                name=f.name,
                bytes=len(f.data),
                key_bytes=f.key_bytes,
                records=f.records,
                width=f.resolution[0] if f.resolution else None,
                height=f.resolution[1] if f.resolution else None,
                dropped=f.dropped,
                inter_layer=f.inter_layer,
            )
        for s, t in segment.level_pictures:
            self._spatial = max(self._spatial, s + 1)
            self._temporal = max(self._temporal, t + 1)
        self._count_levels(segment)
        scale = self.timescale
        self.entries.append(
            SegmentEntry(
                sequence=segment.sequence,
                start=round(segment.pts / scale, 6),
                duration=round(segment.duration / scale, 6),
                pts=segment.pts,
                pictures=segment.pictures,
                discontinuity=segment.discontinuity,
                over_target=segment.over_target,
                arrival=segment.arrival,
                files=files,
            )
        )
        gone: list[str] = []
        while self.window is not None and len(self.entries) > self.window:
            old = self.entries.pop(0)
            gone += [f.name for f in old.files.values()]
            if old.discontinuity:
                self.discontinuity_sequence += 1
        self.media_sequence = self.entries[0].sequence
        return gone

    def _count_levels(self, segment: Segment) -> None:
        pictures = segment.level_pictures
        top_s = max((s for s, _ in pictures), default=0)
        top_t = max((t for _, t in pictures), default=0)
        for s in range(MAX_SPATIAL):
            for t in range(MAX_TEMPORAL):
                level = [f for f in segment.files if _in_level(f, s, t)]
                whole = sum(len(f.data) for f in level)
                sparse = whole
                if sparse_allowed(level, s):
                    self._sparse_seen.add((s, t))
                    sparse = sum(len(f.data) if f.spatial == s else f.key_bytes for f in level)
                count = pictures.get((min(s, top_s), min(t, top_t)), 0)
                totals = self._level_bytes.setdefault((s, t), [0, 0, 0])
                totals[0] += whole
                totals[1] += sparse
                totals[2] += count

    def track(self) -> Track:
        seconds = self.duration / self.timescale if self.duration else 0.0

        def rate(value: int) -> float:
            return round(value / seconds, 2) if seconds else 0.0

        layers = []
        by_id = sorted(self._layers.items(), key=lambda i: (i[1].spatial, i[1].temporal or 0))
        for layer, totals in by_id:
            depends = [
                other
                for other, o in by_id
                if other != layer
                and o.spatial <= totals.spatial
                and (o.temporal is None or totals.temporal is None or o.temporal <= totals.temporal)
            ]
            res = totals.resolution
            layers.append(
                Layer(
                    id=layer,
                    spatial=totals.spatial,
                    temporal=totals.temporal,
                    width=res[0] if res else None,
                    height=res[1] if res else None,
                    bitrate=rate(8 * totals.bytes),
                    depends_on=depends,
                    inter_layer=totals.inter_layer,
                )
            )
        levels = []
        for s in range(self._spatial):
            for t in range(self._temporal):
                names = [
                    layer
                    for layer, o in by_id
                    if o.spatial <= s and (o.temporal is None or o.temporal <= t)
                ]
                if not names:
                    continue
                whole, sparse, count = self._level_bytes.get((s, t), [0, 0, 0])
                res = next((o.resolution for o in self._layers.values() if o.spatial == s), None)
                has_sparse = (s, t) in self._sparse_seen
                levels.append(
                    Level(
                        spatial=s,
                        temporal=t,
                        layers=names,
                        sparse_layers=(
                            [n for n in names if self._layers[n].spatial < s] if has_sparse else []
                        ),
                        width=res[0] if res else None,
                        height=res[1] if res else None,
                        frame_rate=rate(count),
                        bitrate=rate(8 * whole),
                        sparse_bitrate=rate(8 * sparse) if has_sparse else None,
                    )
                )
        largest = max(
            (o.resolution for o in self._layers.values() if o.resolution),
            key=lambda r: r[0] * r[1],
            default=None,
        )
        return Track(
            name=self.name,
            kind=self.kind,
            codec=self.codec,
            codec_string=codec_string(self.codec, self.parameters, largest),
            timescale=self.timescale,
            channels=self.channels,
            sample_rate=self.timescale if self.kind == "audio" else None,
            split_temporal=self.split_temporal,
            layers=layers,
            levels=levels,
            target_duration=self.target_duration,
            max_segment_duration=round(self.max_duration / self.timescale, 6),
            window=self.window,
            media_sequence=self.media_sequence,
            discontinuity_sequence=self.discontinuity_sequence,
            segments=list(self.entries),
        )
