"""VP8 RTP payload descriptor: a sans-IO parser and an in-place rewriter.

The layout is RFC 7741 ("RTP Payload Format for VP8 Video"), section 4.2::

         0 1 2 3 4 5 6 7
        +-+-+-+-+-+-+-+-+
        |X|R|N|S|R| PID | (REQUIRED)
        +-+-+-+-+-+-+-+-+
   X:   |I|L|T|K| RSV   | (OPTIONAL)
        +-+-+-+-+-+-+-+-+
   I:   |M| PictureID   | (OPTIONAL)
        +-+-+-+-+-+-+-+-+
   M:   | PictureID     | (OPTIONAL, 15-bit picture id when M=1)
        +-+-+-+-+-+-+-+-+
   L:   |   TL0PICIDX   | (OPTIONAL)
        +-+-+-+-+-+-+-+-+
   T/K: |TID|Y| KEYIDX  | (OPTIONAL)
        +-+-+-+-+-+-+-+-+

The descriptor is followed by the VP8 payload.  At the start of partition 0 (S=1, PID=0)
that payload begins with the VP8 payload header (RFC 7741 section 4.3), whose bit 0 is the
inverse key frame flag P: 0 marks a key frame.

Reserved bits are ignored.  A packet must carry at least one byte of VP8 payload after the
descriptor; anything shorter raises :class:`~sfu.codecs.errors.CodecError`, the only
exception the parser raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.codecs.errors import CodecError
from sfu.codecs.picture_id import rewrite_picture_fields

__all__ = ["Vp8Descriptor", "parse_vp8_descriptor", "rewrite_vp8_descriptor"]


@dataclass(slots=True)
class Vp8Descriptor:
    """A parsed VP8 payload descriptor (RFC 7741 section 4.2)."""

    non_reference: bool  # N
    start_of_partition: bool  # S
    partition_index: int  # PID
    picture_id: int | None
    picture_id_bits: int  # 0, 7 or 15
    tl0picidx: int | None
    tid: int | None  # None unless T=1
    layer_sync: bool  # Y (False unless T=1)
    key_idx: int | None  # None unless K=1
    size: int  # length of the descriptor in bytes; the VP8 payload starts here
    keyframe: bool  # S=1, PID=0 and the VP8 payload header's P bit is 0

    @property
    def start_of_frame(self) -> bool:
        """First packet of a frame: the start of partition 0."""
        return self.start_of_partition and self.partition_index == 0


def parse_vp8_descriptor(payload: bytes) -> Vp8Descriptor:
    """Parse the VP8 payload descriptor at the start of an RTP payload.

    Raises :class:`CodecError` (and nothing else) when the payload is empty, the descriptor
    is truncated, or no VP8 payload follows it.
    """
    length = len(payload)
    if length < 2:  # the first descriptor byte plus at least one byte of VP8 payload
        raise CodecError(f"VP8 payload too short ({length} bytes)")
    first = payload[0]
    start = bool(first & 0x10)
    pid = first & 0x07
    picture_id: int | None = None
    picture_id_bits = 0
    tl0picidx: int | None = None
    tid: int | None = None
    layer_sync = False
    key_idx: int | None = None
    pos = 1
    if first & 0x80:  # X: extension byte present
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id
            if pos >= length:
                raise CodecError("VP8 descriptor truncated in the picture id")
            b = payload[pos]
            if b & 0x80:  # M: 15-bit picture id
                if pos + 1 >= length:
                    raise CodecError("VP8 descriptor truncated in the 15-bit picture id")
                picture_id = ((b & 0x7F) << 8) | payload[pos + 1]
                picture_id_bits = 15
                pos += 2
            else:
                picture_id = b
                picture_id_bits = 7
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX
            if pos >= length:
                raise CodecError("VP8 descriptor truncated in TL0PICIDX")
            tl0picidx = payload[pos]
            pos += 1
        if ext & 0x30:  # T or K: the TID/Y/KEYIDX byte
            if pos >= length:
                raise CodecError("VP8 descriptor truncated in TID/KEYIDX")
            b = payload[pos]
            if ext & 0x20:  # T
                tid = b >> 6
                layer_sync = bool(b & 0x20)
            if ext & 0x10:  # K
                key_idx = b & 0x1F
            pos += 1
    if pos >= length:
        raise CodecError("VP8 packet has no payload after the descriptor")
    keyframe = start and pid == 0 and not (payload[pos] & 0x01)
    return Vp8Descriptor(
        non_reference=bool(first & 0x20),
        start_of_partition=start,
        partition_index=pid,
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        tl0picidx=tl0picidx,
        tid=tid,
        layer_sync=layer_sync,
        key_idx=key_idx,
        size=pos,
        keyframe=keyframe,
    )


def rewrite_vp8_descriptor(
    payload: bytes,
    descriptor: Vp8Descriptor,
    *,
    picture_id: int | None = None,
    tl0picidx: int | None = None,
) -> bytes:
    """Return ``payload`` with its picture id and/or TL0PICIDX replaced in place.

    ``descriptor`` must be the result of parsing ``payload``; see
    :func:`~sfu.codecs.picture_id.rewrite_picture_fields` for the rules.
    """
    bits = descriptor.picture_id_bits
    return rewrite_picture_fields(
        payload,
        size=descriptor.size,
        bits=bits,
        has_tl0picidx=descriptor.tl0picidx is not None,
        picture_id_offset=2,
        tl0picidx_offset=2 + (bits + 1) // 8,  # after a 0-, 1- or 2-byte picture id
        picture_id=picture_id,
        tl0picidx=tl0picidx,
        codec="VP8",
    )
