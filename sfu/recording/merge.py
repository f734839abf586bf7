"""Layer files merged back into what a decoder takes, one access unit per picture (sans-IO).

This is the player's side of the file format (docs/recording.md, "Merging"): read the
layer files of a level, keep the records up to the level's temporal layer, group them by
picture index, and per picture join its frames in spatial order:

* VP9: one frame as it is; several as a superframe (VP9 bitstream, Annex B): the frames,
  then the index ``marker, size_0 .. size_n, marker``, the marker ``0b110mmnnn`` (``mm + 1``
  bytes per size, little-endian; ``nnn + 1`` frames);
* AV1: a temporal unit: the temporal delimiter OBU ``12 00``, then each frame's OBUs;
* VP8 and Opus: the one frame (or packet) of the picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .depacketize import OBU_TEMPORAL_DELIMITER
from .layerfile import FLAG_KEYFRAME, LayerFile, Record

__all__ = ["AccessUnit", "av1_temporal_unit", "merge", "vp9_superframe"]


@dataclass(slots=True)
class AccessUnit:
    picture: int
    pts: int
    keyframe: bool
    spatial: int  # the highest spatial layer in it
    temporal: int
    data: bytes


def vp9_superframe(frames: Sequence[bytes]) -> bytes:
    """The frames of one picture as one VP9 superframe (Annex B); one frame as it is."""
    if len(frames) == 1:
        return frames[0]
    if not 1 < len(frames) <= 8:
        raise ValueError(f"a superframe holds 1 to 8 frames, not {len(frames)}")
    largest = max(len(f) for f in frames)
    width = 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 3 if largest < 1 << 24 else 4
    marker = bytes([0xC0 | ((width - 1) << 3) | (len(frames) - 1)])
    sizes = b"".join(len(f).to_bytes(width, "little") for f in frames)
    return b"".join(frames) + marker + sizes + marker


def av1_temporal_unit(frames: Sequence[bytes]) -> bytes:
    """The OBUs of one picture's frames as a temporal unit (low-overhead bitstream format)."""
    return OBU_TEMPORAL_DELIMITER + b"".join(frames)


def merge(
    codec: str, files: Iterable[LayerFile], max_temporal: int | None = None
) -> list[AccessUnit]:
    """The access units of the pictures in ``files`` (the layer files of one segment, or
    prefixes of them), in picture order, with the records of temporal layers up to
    ``max_temporal`` (None: all)."""
    codec = codec.upper()
    by_picture: dict[int, list[Record]] = {}
    for layer_file in files:
        for record in layer_file.records:
            if max_temporal is None or record.temporal <= max_temporal:
                by_picture.setdefault(record.picture, []).append(record)
    units: list[AccessUnit] = []
    for picture in sorted(by_picture):
        records = sorted(by_picture[picture], key=lambda r: r.spatial)
        frames = [r.data for r in records]
        if codec == "VP9":
            data = vp9_superframe(frames)
        elif codec == "AV1":
            data = av1_temporal_unit(frames)
        elif len(frames) == 1:
            data = frames[0]
        else:
            raise ValueError(f"{codec}: {len(frames)} frames for picture {picture}")
        top = records[-1]
        units.append(
            AccessUnit(
                picture,
                top.pts,
                bool(records[0].flags & FLAG_KEYFRAME),
                top.spatial,
                top.temporal,
                data,
            )
        )
    return units
