"""The recording's manifest (``manifest.json``): tracks, their layers and levels, the
segments and their files (docs/recording.md, "Manifest").

Live-window fields follow HLS (RFC 8216) and DASH: ``media_sequence`` is the sequence number
of the first segment listed (``EXT-X-MEDIA-SEQUENCE``), ``discontinuity_sequence`` the
discontinuities before it (``EXT-X-DISCONTINUITY-SEQUENCE``), a segment's ``discontinuity``
is ``EXT-X-DISCONTINUITY`` before it, ``endlist`` is ``EXT-X-ENDLIST`` (the recording ended:
the manifest no longer changes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Layer",
    "Level",
    "Manifest",
    "SegmentEntry",
    "SegmentFileEntry",
    "Track",
    "codec_string",
]

InterLayer = Literal["none", "keyframe", "all"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentFileEntry(_Model):
    name: str  # relative to the manifest
    bytes: int
    #: bytes of the file's header and of the records of the segment's first picture: what a
    #: level whose upper layers reference this one only there needs (a range request)
    key_bytes: int
    records: int
    width: int | None = None
    height: int | None = None
    #: frames of this layer in the segment that were not written (lost, or a frame they
    #: reference was): the pictures missing from this file are rendered from the layers below
    dropped: int = 0
    #: the frames of this file reference a lower spatial layer: never, in the segment's first
    #: picture only, or later too
    inter_layer: InterLayer = "none"


class SegmentEntry(_Model):
    sequence: int
    start: float  # seconds since the recording began (the track's media timeline)
    duration: float  # seconds
    pts: int  # start in timescale ticks (the first record's presentation time)
    pictures: int
    #: the stream restarted before this segment (a publisher's reconnect): decoders reset
    discontinuity: bool = False
    #: longer than the target duration: no keyframe came in time
    over_target: bool = False
    #: the recorder's clock at the segment's first packet (wall clock when so fed)
    arrival: float = 0.0
    files: dict[str, SegmentFileEntry]  # by layer id


class Layer(_Model):
    id: str  # "s0", "s1", ... ("s0t0", "s0t1", ... with temporal layers split; audio: "s0")
    spatial: int
    temporal: int | None = None  # None: the file holds every temporal layer
    width: int | None = None  # of the latest segment
    height: int | None = None
    bitrate: float  # bits per second: its files over the track's recorded duration
    depends_on: list[str]  # the layers a decoder needs besides this one
    inter_layer: InterLayer = "none"  # the most any segment needed (see SegmentFileEntry)


class Level(_Model):
    """What a player fetches and decodes for one (spatial, temporal) operating point."""

    spatial: int
    temporal: int
    layers: list[str]  # the files to fetch, lowest first
    #: of those, the layers needed only up to ``key_bytes`` in segments where the upper layers
    #: reference them in the first picture only (K-SVC, ``L3T3_KEY``)
    sparse_layers: list[str] = Field(default_factory=list)
    width: int | None = None
    height: int | None = None
    frame_rate: float  # pictures per second at this level
    bitrate: float  # bits per second, fetching every file of ``layers`` whole
    sparse_bitrate: float | None = None  # fetching ``sparse_layers`` up to key_bytes


class Track(_Model):
    name: str
    kind: Literal["video", "audio"]
    codec: str  # "VP9", "AV1", "VP8", "opus"
    codec_string: str  # WebCodecs codec string: "vp09.00.31.08", "av01.0.05M.08", ...
    timescale: int
    channels: int | None = None  # audio
    sample_rate: int | None = None
    split_temporal: bool = False
    layers: list[Layer]
    levels: list[Level]
    target_duration: float  # seconds, the configured one
    max_segment_duration: float  # the longest segment recorded
    #: segments listed at most (a live window); None: all of them
    window: int | None = None
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    segments: list[SegmentEntry]


class Manifest(_Model):
    version: Literal[1] = 1
    recording: str
    target_duration: float  # seconds, the longest of the tracks'
    endlist: bool = False
    tracks: list[Track]


#: VP9 level by the largest picture's luma samples (VP9 bitstream, Annex A)
_VP9_LEVELS = (
    (36864, "10"),
    (73728, "11"),
    (122880, "20"),
    (245760, "21"),
    (552960, "30"),
    (983040, "31"),
    (2228224, "40"),
    (8912896, "50"),
    (35651584, "60"),
)


def codec_string(
    codec: str, parameters: dict[str, str] | None = None, size: tuple[int, int] | None = None
) -> str:
    """The WebCodecs codec string for a track: VP9 ``vp09.PP.LL.08`` (profile from the
    ``profile-id`` parameter, level from the largest resolution), AV1 ``av01.P.LLT.08``
    (from ``profile``, ``level-idx``, ``tier``), ``vp8``, ``opus``."""
    parameters = parameters or {}
    codec = codec.upper()
    if codec == "VP9":
        profile = int(parameters.get("profile-id", 0))
        samples = size[0] * size[1] if size else 0
        level = next((name for limit, name in _VP9_LEVELS if samples <= limit), "62")
        return f"vp09.{profile:02d}.{level}.08"
    if codec == "AV1":
        av1_profile = int(parameters.get("profile", 0))
        level_idx = int(parameters.get("level-idx", 5))
        tier = "H" if int(parameters.get("tier", 0)) else "M"
        return f"av01.{av1_profile}.{level_idx:02d}{tier}.08"
    if codec == "VP8":
        return "vp8"
    return codec.lower()
