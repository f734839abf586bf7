"""RTP packets (RFC 3550) with header extensions (RFC 8285) and retransmission (RFC 4588).

Plain functions over ``bytes``: nothing here knows about sockets or asyncio.  Parsing never
raises anything but :class:`RtpError`, whatever the input.
"""

from __future__ import annotations

import struct

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000

_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_PROFILE_LENGTH = struct.Struct("!HH")
_PADDING = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")


class RtpError(ValueError):
    """A packet that is not valid RTP."""


def is_rtcp(data: bytes) -> bool:
    """RTP/RTCP demultiplexing on one port (RFC 5761 section 4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class RtpHeader:
    """The fields of one parsed RTP packet; the payload stays in the original buffer."""

    __slots__ = (
        "marker",
        "payload_type",
        "sequence_number",
        "timestamp",
        "ssrc",
        "extensions",
        "payload_offset",
        "payload_end",
    )

    def __init__(self) -> None:
        self.marker = False
        self.payload_type = 0
        self.sequence_number = 0
        self.timestamp = 0
        self.ssrc = 0
        #: header extension elements by local identifier
        self.extensions: dict[int, bytes] = {}
        self.payload_offset = RTP_HEADER_LENGTH
        self.payload_end = RTP_HEADER_LENGTH

    @property
    def payload_size(self) -> int:
        return self.payload_end - self.payload_offset


def parse_rtp(data: bytes) -> RtpHeader:
    """Parse the header of an RTP packet; raises :class:`RtpError` if malformed."""
    size = len(data)
    if size < RTP_HEADER_LENGTH:
        raise RtpError(f"RTP packet length is less than {RTP_HEADER_LENGTH} bytes")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data, 0)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP packet has invalid version {first >> 6}")
    header = RtpHeader()
    header.marker = bool(second & 0x80)
    header.payload_type = second & 0x7F
    header.sequence_number = seq
    header.timestamp = timestamp
    header.ssrc = ssrc

    pos = RTP_HEADER_LENGTH + (first & 0x0F) * 4
    if pos > size:
        raise RtpError("RTP packet has truncated CSRC list")
    if first & 0x10:
        if pos + 4 > size:
            raise RtpError("RTP packet has truncated extension header")
        profile, length = struct.unpack_from("!HH", data, pos)
        pos += 4
        end = pos + length * 4
        if end > size:
            raise RtpError("RTP packet has truncated extension")
        header.extensions = _parse_extensions(data, profile, pos, end)
        pos = end
    payload_end = size
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or pos + padding > size:
            raise RtpError("RTP packet has invalid padding")
        payload_end -= padding
    header.payload_offset = pos
    header.payload_end = payload_end
    return header


def _parse_extensions(data: bytes, profile: int, pos: int, end: int) -> dict[int, bytes]:
    extensions: dict[int, bytes] = {}
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            ext_id = byte >> 4
            if ext_id == 0:  # padding; id 0 is never an element (RFC 8285 section 4.2)
                pos += 1
                continue
            length = (byte & 0x0F) + 1
            if ext_id == 15:  # reserved: stop parsing (RFC 8285 section 4.2)
                break
            pos += 1
            if pos + length > end:
                raise RtpError("RTP one-byte header extension is truncated")
            extensions[ext_id] = data[pos : pos + length]
            pos += length
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise RtpError("RTP two-byte header extension is truncated")
            length = data[pos + 1]
            pos += 2
            if pos + length > end:
                raise RtpError("RTP two-byte header extension is truncated")
            extensions[ext_id] = data[pos : pos + length]
            pos += length
    return extensions


def parse_extension_block(block: bytes) -> dict[int, bytes]:
    """The elements of an extension block as :func:`serialize_extensions` writes it (the
    profile and length words first), by id in their order; ``{}`` for another profile."""
    if len(block) < 4:
        return {}
    return _parse_extensions(block, (block[0] << 8) | block[1], 4, len(block))


def serialize_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """Serialize header extension elements, with the extension header itself.

    The one-byte form is used when every element fits it (id 1-14, 1-16 bytes), else the
    two-byte form (which needs ``a=extmap-allow-mixed``).  Returns ``b""`` for no elements.
    (Called for every media packet received: written for speed.)
    """
    if not elements:
        return b""
    body = bytearray()
    for ext_id, value in elements:
        size = len(value)
        if not (1 <= ext_id <= 14 and 1 <= size <= 16):
            return _serialize_two_byte(elements)
        body.append((ext_id << 4) | (size - 1))
        body += value
    length = len(body)
    pad = -length % 4
    return _PROFILE_LENGTH.pack(ONE_BYTE_PROFILE, (length + pad) >> 2) + body + _PADDING[pad]


def _serialize_two_byte(elements: list[tuple[int, bytes]]) -> bytes:
    body = bytearray()
    for ext_id, value in elements:
        body.append(ext_id)
        body.append(len(value))
        body += value
    body += b"\x00" * (-len(body) % 4)
    return _PROFILE_LENGTH.pack(TWO_BYTE_PROFILE, len(body) // 4) + bytes(body)


def build_rtp(
    *,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
    extensions: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """Build a whole RTP packet (used by tests, tools and RTX)."""
    ext = serialize_extensions(extensions or [])
    first = (RTP_VERSION << 6) | (0x10 if ext else 0)
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    return _HEADER.pack(first, second, sequence_number, timestamp, ssrc) + ext + payload


def unwrap_rtx(data: bytes, header: RtpHeader, payload_type: int, ssrc: int) -> bytes:
    """Turn an RTX packet (RFC 4588) back into the original packet, bytes for bytes."""
    if header.payload_size < 2:
        raise RtpError("RTX packet has no original sequence number")
    (osn,) = _U16.unpack_from(data, header.payload_offset)
    out = bytearray(data[: header.payload_offset])
    out[0] &= 0xDF  # padding of the RTX packet is not part of the original
    out[1] = (out[1] & 0x80) | (payload_type & 0x7F)
    _U16.pack_into(out, 2, osn)
    struct.pack_into("!I", out, 8, ssrc)
    out += data[header.payload_offset + 2 : header.payload_end]
    return bytes(out)


def wrap_rtx(packet: bytes, payload_type: int, sequence_number: int, ssrc: int) -> bytes:
    """Wrap an RTP packet for retransmission on an RTX stream (RFC 4588 section 4)."""
    header = parse_rtp(packet)
    out = bytearray(packet[: header.payload_offset])
    out[0] &= 0xDF
    out[1] = (out[1] & 0x80) | (payload_type & 0x7F)
    _U16.pack_into(out, 2, sequence_number)
    struct.pack_into("!I", out, 8, ssrc)
    out += _U16.pack(header.sequence_number)
    out += packet[header.payload_offset : header.payload_end]
    return bytes(out)


def first_extension_offset(packet: bytes | bytearray, ext_id: int) -> int | None:
    """Offset of the 2-byte value of the first header extension element if its id is
    ``ext_id`` (the SFU writes the transport-wide sequence number first, to patch it per
    subscriber); None unless that element is there, 2 bytes long, within the extension."""
    if len(packet) < RTP_HEADER_LENGTH or not packet[0] & 0x10:
        return None
    pos = RTP_HEADER_LENGTH + (packet[0] & 0x0F) * 4
    if pos + 8 > len(packet) or packet[pos + 2] == packet[pos + 3] == 0:
        return None  # no room for an element, or an empty extension block
    if packet[pos] == 0xBE and packet[pos + 1] == 0xDE:
        return pos + 5 if packet[pos + 4] == (ext_id << 4) | 1 else None
    if packet[pos] == 0x10 and packet[pos + 1] & 0xF0 == 0:
        return pos + 6 if packet[pos + 4] == ext_id and packet[pos + 5] == 2 else None
    return None
