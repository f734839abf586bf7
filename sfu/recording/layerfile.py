"""The layer file: one segment's frames of one layer (docs/recording.md, "File format").

All integers little-endian.  A 24-byte header::

    offset size
    0      4    magic "SLS1"
    4      4    codec, four ASCII bytes: "VP90", "AV01", "VP80", "Opus"
    8      4    timescale (ticks per second: 90000 for video, 48000 for Opus)
    12     4    segment sequence number
    16     4    number of records
    20     1    spatial id of the layer
    21     1    temporal id of the layer, 0xFF: every temporal layer
    22     2    header length in bytes (24): a reader skips what it does not know

then the records, in picture order, each a 20-byte header and the frame::

    0      4    frame length in bytes
    4      4    picture index (counted from the recording's first picture; a picture's
                frames carry the same index in every layer file)
    8      8    presentation time in timescale ticks since the recording began
    16     1    spatial id
    17     1    temporal id
    18     1    flags: bit 0 keyframe picture (decoding starts here), bit 1 the frame
                references a lower spatial layer
    19     1    reserved, 0
    20     ...  the frame: VP8/VP9 frame, AV1 OBUs (sized, no temporal delimiter), Opus packet
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FLAG_INTER_LAYER",
    "FLAG_KEYFRAME",
    "FOURCC",
    "HEADER_SIZE",
    "RECORD_HEADER_SIZE",
    "LayerFile",
    "Record",
    "encode_header",
    "encode_record",
    "read_layer_file",
]

MAGIC = b"SLS1"
HEADER_SIZE = 24
RECORD_HEADER_SIZE = 20
ALL_TEMPORAL = 0xFF
FLAG_KEYFRAME = 0x01
FLAG_INTER_LAYER = 0x02
#: the codec field by codec name
FOURCC = {"VP9": b"VP90", "AV1": b"AV01", "VP8": b"VP80", "OPUS": b"Opus"}
_CODECS = {v: k for k, v in FOURCC.items()}
_HEADER = struct.Struct("<4s4sIIIBBH")
_RECORD = struct.Struct("<IIQBBBx")


@dataclass(slots=True)
class Record:
    picture: int
    pts: int
    spatial: int
    temporal: int
    flags: int
    data: bytes

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)


@dataclass(slots=True)
class LayerFile:
    codec: str  # "VP9", "AV1", "VP8", "OPUS"
    timescale: int
    sequence: int
    count: int  # records the file says it holds
    spatial: int
    temporal: int | None  # None: every temporal layer
    records: list[Record]

    @property
    def complete(self) -> bool:
        """Every record is there (False for a prefix read with a range request)."""
        return len(self.records) == self.count


def encode_header(
    codec: str, timescale: int, sequence: int, count: int, spatial: int, temporal: int | None
) -> bytes:
    return _HEADER.pack(
        MAGIC,
        FOURCC[codec.upper()],
        timescale,
        sequence & 0xFFFFFFFF,
        count,
        spatial,
        ALL_TEMPORAL if temporal is None else temporal,
        HEADER_SIZE,
    )


def encode_record(
    picture: int, pts: int, spatial: int, temporal: int, flags: int, data: bytes
) -> bytes:
    return _RECORD.pack(len(data), picture & 0xFFFFFFFF, pts, spatial, temporal, flags) + data


def read_layer_file(data: bytes) -> LayerFile:
    """Parse a layer file, or a prefix of one (as many whole records as it holds); raises
    ValueError if it is not a layer file or a record header is inconsistent."""
    if len(data) < HEADER_SIZE:
        raise ValueError("layer file shorter than its header")
    magic, fourcc, timescale, sequence, count, spatial, temporal, size = _HEADER.unpack_from(
        data, 0
    )
    if magic != MAGIC or fourcc not in _CODECS or size < HEADER_SIZE:
        raise ValueError("not a layer file")
    records: list[Record] = []
    pos = size
    while pos + RECORD_HEADER_SIZE <= len(data) and len(records) < count:
        length, picture, pts, s, t, flags = _RECORD.unpack_from(data, pos)
        start = pos + RECORD_HEADER_SIZE
        if start + length > len(data):
            break  # a prefix ending inside this record
        records.append(Record(picture, pts, s, t, flags, data[start : start + length]))
        pos = start + length
    return LayerFile(
        _CODECS[fourcc],
        timescale,
        sequence,
        count,
        spatial,
        None if temporal == ALL_TEMPORAL else temporal,
        records,
    )
