"""Replaying a capture, looped: sequence numbers, timestamps, picture ids (VP8/VP9) and
dependency-descriptor frame numbers continue across the loop, so the replayed stream looks
like one long stream that restarts at the capture's keyframe."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from sfu.codecs.errors import CodecError
from sfu.codecs.vp8 import parse_vp8_descriptor, rewrite_vp8_descriptor
from sfu.codecs.vp9 import parse_vp9_descriptor, rewrite_vp9_descriptor
from sfu.rtp import extensions as ext
from sfu.rtp.packet import parse_rtp, serialize_extensions

from .capturefile import Capture

_HEADER = struct.Struct("!BBHII")


def _span(values: list[int], modulo: int) -> int:
    return ((values[-1] - values[0]) % modulo) + 1 if values else 0


def replay(
    capture: Capture,
    loops: int = 1,
    *,
    ssrc: int | None = None,
    payload_type: int | None = None,
    first_sequence_number: int = 0,
    first_timestamp: int = 0,
) -> Iterator[tuple[float, bytes]]:
    """(send time, packet) pairs for ``loops`` passes over the capture."""
    packets = capture.packets
    if not packets:
        return
    codec = capture.info.mime_type.split("/")[-1].upper()
    dd_id = capture.info.extensions.get(ext.DEPENDENCY_DESCRIPTOR)
    headers = [parse_rtp(p) for _, p in packets]
    first, last = headers[0], headers[-1]
    duration = packets[-1][0] + 1 / 30
    frame = capture.info.clock_rate // 30
    span = (last.timestamp - first.timestamp) & 0xFFFFFFFF

    # per-loop advances of picture ids and DD frame numbers
    pids: list[int] = []
    pid_bits = 15
    frames: list[int] = []
    for (_, data), h in zip(packets, headers, strict=True):
        payload = data[h.payload_offset : h.payload_end]
        try:
            if codec == "VP9":
                d9 = parse_vp9_descriptor(payload)
                if d9.picture_id is not None:
                    pids.append(d9.picture_id)
                    pid_bits = d9.picture_id_bits
            elif codec == "VP8":
                d8 = parse_vp8_descriptor(payload)
                if d8.picture_id is not None:
                    pids.append(d8.picture_id)
                    pid_bits = d8.picture_id_bits
        except CodecError:
            pass
        if dd_id is not None and dd_id in h.extensions and len(h.extensions[dd_id]) >= 3:
            frames.append(int.from_bytes(h.extensions[dd_id][1:3], "big"))
    pid_step = _span(pids, 1 << pid_bits)
    frame_step = _span(frames, 1 << 16)

    seq = first_sequence_number
    for loop in range(loops):
        ts_base = (first_timestamp + loop * (span + frame)) & 0xFFFFFFFF
        for (at, data), h in zip(packets, headers, strict=True):
            payload = data[h.payload_offset : h.payload_end]
            if loop and pid_step:
                try:
                    if codec == "VP9":
                        d9 = parse_vp9_descriptor(payload)
                        if d9.picture_id is not None:
                            payload = rewrite_vp9_descriptor(
                                payload, d9, picture_id=d9.picture_id + loop * pid_step
                            )
                    elif codec == "VP8":
                        d8 = parse_vp8_descriptor(payload)
                        if d8.picture_id is not None:
                            payload = rewrite_vp8_descriptor(
                                payload, d8, picture_id=d8.picture_id + loop * pid_step
                            )
                except CodecError:
                    pass
            elements = list(h.extensions.items())
            if loop and frame_step and dd_id is not None:
                elements = [
                    (
                        i,
                        v[:1]
                        + ((int.from_bytes(v[1:3], "big") + loop * frame_step) & 0xFFFF).to_bytes(
                            2, "big"
                        )
                        + v[3:],
                    )
                    if i == dd_id and len(v) >= 3
                    else (i, v)
                    for i, v in elements
                ]
            block = serialize_extensions(elements)
            ts = (ts_base + h.timestamp - first.timestamp) & 0xFFFFFFFF
            out = _HEADER.pack(
                0x90 if block else 0x80,
                (0x80 if h.marker else 0)
                | (h.payload_type if payload_type is None else payload_type),
                seq,
                ts,
                h.ssrc if ssrc is None else ssrc,
            )
            seq = (seq + 1) & 0xFFFF
            yield loop * duration + at, out + block + payload
