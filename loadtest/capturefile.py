"""Capture files: the decrypted RTP of one published track, with arrival times.

Layout: the line ``SFUCAP1``, one line of JSON metadata (codec, clock rate, payload type,
SSRC, header extension ids by URI, fmtp), then one record per packet: arrival time in
microseconds since the first packet (u64), packet length (u16), the packet.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sfu.forwarding.track import StreamParameters

MAGIC = b"SFUCAP1\n"
_RECORD = struct.Struct("!QH")


@dataclass
class CaptureInfo:
    kind: str
    mime_type: str
    clock_rate: int
    payload_type: int
    ssrc: int
    extensions: dict[str, int] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    scalability_mode: str | None = None
    note: str = ""


def stream_parameters(info: CaptureInfo) -> StreamParameters:
    """The parameters a MediaSource takes for the captured track (no RTX: a capture holds
    media packets, retransmissions unwrapped)."""
    return StreamParameters(
        kind=info.kind,
        mime_type=info.mime_type,
        clock_rate=info.clock_rate,
        payload_type=info.payload_type,
        ssrc=info.ssrc,
        extensions=dict(info.extensions),
    )


@dataclass
class Capture:
    info: CaptureInfo
    #: (arrival time in seconds since the first packet, packet)
    packets: list[tuple[float, bytes]]


class CaptureWriter:
    def __init__(self, path: str | Path, info: CaptureInfo) -> None:
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115
        self._file.write(MAGIC)
        self._file.write(json.dumps(asdict(info)).encode() + b"\n")
        self._start: float | None = None
        self.count = 0

    def write(self, packet: bytes, arrival: float) -> None:
        if self._start is None:
            self._start = arrival
        micros = max(0, int((arrival - self._start) * 1e6))
        self._file.write(_RECORD.pack(micros, len(packet)) + packet)
        self.count += 1

    def close(self) -> None:
        self._file.close()


def read_capture(path: str | Path) -> Capture:
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a capture file")
    end = data.index(b"\n", len(MAGIC))
    info = CaptureInfo(**json.loads(data[len(MAGIC) : end]))
    pos = end + 1
    packets = []
    while pos < len(data):
        micros, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        packets.append((micros / 1e6, data[pos : pos + length]))
        pos += length
    return Capture(info, packets)
