"""Reassembling forwarded RTP into decodable frames, for the decode tests (VP8, VP9, AV1)."""

from __future__ import annotations

from collections.abc import Iterator

from sfu.codecs.vp8 import parse_vp8_descriptor
from sfu.codecs.vp9 import parse_vp9_descriptor
from sfu.recording.depacketize import leb128 as _leb128_encode
from sfu.recording.depacketize import read_leb128 as _leb128
from sfu.rtp.packet import RtpHeader, parse_rtp


def pictures(packets: list[bytes]) -> Iterator[tuple[int, list[tuple[RtpHeader, bytes]]]]:
    """Group consecutive packets by timestamp: (timestamp, [(header, packet)])."""
    current: list[tuple[RtpHeader, bytes]] = []
    ts: int | None = None
    for data in packets:
        h = parse_rtp(data)
        if ts is not None and h.timestamp != ts:
            yield ts, current
            current = []
        ts = h.timestamp
        current.append((h, data))
    if current and ts is not None:
        yield ts, current


def vp9_frames(picture: list[tuple[RtpHeader, bytes]]) -> list[tuple[int, bytes]]:
    """The layer frames of one VP9 picture: [(spatial id, frame bytes)] (B..E per layer)."""
    frames: list[tuple[int, bytes]] = []
    buf = b""
    sid = 0
    for h, data in picture:
        payload = data[h.payload_offset : h.payload_end]
        d = parse_vp9_descriptor(payload)
        if d.start_of_frame:
            buf = b""
            sid = d.sid
        buf += payload[d.size :]
        if d.end_of_frame:
            frames.append((sid, buf))
    return frames


def vp8_frame(picture: list[tuple[RtpHeader, bytes]]) -> bytes:
    out = b""
    for h, data in picture:
        payload = data[h.payload_offset : h.payload_end]
        d = parse_vp8_descriptor(payload)
        out += payload[d.size :]
    return out


def av1_temporal_unit(picture: list[tuple[RtpHeader, bytes]]) -> bytes:
    """AV1 RTP (aggregation header + OBU elements) to a low-overhead OBU stream with a
    temporal delimiter, as decoders take it."""
    obus: list[bytes] = []
    partial = b""
    for h, data in picture:
        payload = data[h.payload_offset : h.payload_end]
        agg = payload[0]
        z, y, w = agg >> 7, (agg >> 6) & 1, (agg >> 4) & 3
        pos = 1
        elements = []
        count = 0
        while pos < len(payload):
            count += 1
            if w and count == w:
                size = len(payload) - pos
            else:
                size, pos = _leb128(payload, pos)
            elements.append(payload[pos : pos + size])
            pos += size
        for i, element in enumerate(elements):
            if i == 0 and z:
                element = partial + element
                partial = b""
            if i == len(elements) - 1 and y:
                partial = element
                continue
            obus.append(element)
    out = b"\x12\x00"  # temporal delimiter
    for obu in obus:
        header = obu[0]
        obu_type = (header >> 3) & 0x0F
        if obu_type in (2, 8):  # temporal delimiter, tile list: dropped
            continue
        ext = 1 if header & 0x04 else 0
        hdr = obu[: 1 + ext]
        body = obu[1 + ext :]
        if header & 0x02:  # already has a size field
            out += obu
        else:
            out += bytes([hdr[0] | 0x02]) + hdr[1:] + _leb128_encode(len(body)) + body
    return out
