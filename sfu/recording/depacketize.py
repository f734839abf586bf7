"""Codec payloads of RTP packets turned back into what a decoder takes (sans-IO).

* VP8 (RFC 7741) and VP9 (RFC 9628): the payload after the payload descriptor; a frame is the
  concatenation of its packets' payloads.
* AV1 ("RTP Payload Format for AV1", section 4): an aggregation header ``Z Y W W N - - -``
  then OBU elements, each but the last W-th preceded by its LEB128 length; an element may be
  an OBU fragment continued in the next packet (Y on this one, Z on the next).  A frame's
  OBUs are given in the low-overhead bitstream format (AV1 section 5.2): each with
  ``obu_has_size_field`` set and its size, temporal delimiters, tile lists and padding left
  out (the merge adds one temporal delimiter per temporal unit).
* Opus (RFC 7587): the payload is the packet; :func:`opus_samples` reads its duration from
  the TOC byte (RFC 6716 section 3.1).
"""

from __future__ import annotations

from ..codecs.errors import CodecError

__all__ = [
    "OBU_TEMPORAL_DELIMITER",
    "Av1FrameObus",
    "av1_elements",
    "leb128",
    "obu_with_size",
    "opus_samples",
    "read_leb128",
]

#: a temporal delimiter OBU with its (zero) size: type 2, obu_has_size_field
OBU_TEMPORAL_DELIMITER = b"\x12\x00"
_DROPPED_OBU_TYPES = (2, 8, 15)  # temporal delimiter, tile list, padding


def read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    """The LEB128 value at ``pos`` and the position after it; CodecError if truncated."""
    value = 0
    for i in range(8):
        if pos + i >= len(data):
            raise CodecError("LEB128 value truncated")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise CodecError("LEB128 value longer than 8 bytes")


def leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def av1_elements(payload: bytes) -> tuple[bool, bool, list[bytes]]:
    """(Z: the first element continues an OBU, Y: the last one continues in the next packet,
    the OBU elements) of one AV1 RTP payload; CodecError if malformed."""
    if not payload:
        raise CodecError("empty AV1 payload")
    head = payload[0]
    z, y, w = bool(head & 0x80), bool(head & 0x40), (head >> 4) & 3
    pos = 1
    elements: list[bytes] = []
    end = len(payload)
    while pos < end:
        if w and len(elements) == w - 1:
            size = end - pos
        else:
            size, pos = read_leb128(payload, pos)
            if pos + size > end:
                raise CodecError("AV1 OBU element runs past the payload")
        elements.append(payload[pos : pos + size])
        pos += size
    if w and len(elements) != w:
        raise CodecError("AV1 aggregation header counts another number of elements")
    return z, y, elements


def obu_with_size(obu: bytes) -> bytes | None:
    """``obu`` with ``obu_has_size_field`` set and its size written, or None for an OBU the
    stored stream leaves out (temporal delimiter, tile list, padding); CodecError if empty."""
    if not obu:
        raise CodecError("empty OBU")
    header = obu[0]
    if (header >> 3) & 0x0F in _DROPPED_OBU_TYPES:
        return None
    if header & 0x02:  # already sized (then it is the whole element)
        return obu
    head = 2 if header & 0x04 else 1  # the extension byte after the header
    if len(obu) < head:
        raise CodecError("OBU truncated in its extension header")
    return bytes([header | 0x02]) + obu[1:head] + leb128(len(obu) - head) + obu[head:]


class Av1FrameObus:
    """The OBUs of one frame, from the AV1 payloads of its packets in order."""

    __slots__ = ("_out", "_partial", "ok")

    def __init__(self) -> None:
        self._out = bytearray()
        self._partial: bytes | None = None
        #: False once a packet did not fit (a continuation without a start, or malformed)
        self.ok = True

    def add(self, payload: bytes) -> None:
        try:
            z, y, elements = av1_elements(payload)
        except CodecError:
            self.ok = False
            return
        if z != (self._partial is not None):
            self.ok = False
            return
        for i, element in enumerate(elements):
            if i == 0 and self._partial is not None:
                element = self._partial + element
                self._partial = None
            if i == len(elements) - 1 and y:
                self._partial = element
                continue
            try:
                sized = obu_with_size(element)
            except CodecError:
                self.ok = False
                return
            if sized is not None:
                self._out += sized
        if y and not elements:
            self.ok = False

    def result(self) -> bytes | None:
        """The frame's OBUs, or None if a packet did not fit or an OBU is unfinished."""
        if not self.ok or self._partial is not None:
            return None
        return bytes(self._out)


#: samples per Opus frame at 48 kHz by TOC configuration (RFC 6716 table 2)
_OPUS_FRAME_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK NB, MB, WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # hybrid SWB, FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
)


def opus_samples(packet: bytes) -> int:
    """The duration of an Opus packet in 48 kHz samples (RFC 6716 section 3.1); 0 if it
    cannot be read."""
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        return per_frame
    if code in (1, 2):
        return 2 * per_frame
    if len(packet) < 2:
        return 0
    return (packet[1] & 0x3F) * per_frame
