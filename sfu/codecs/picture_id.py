"""Rewriting the picture id and TL0PICIDX of a VP8 or VP9 payload descriptor in place."""

from __future__ import annotations

from .errors import CodecError


def rewrite_picture_fields(
    payload: bytes,
    *,
    size: int,
    bits: int,
    has_tl0picidx: bool,
    picture_id_offset: int,
    tl0picidx_offset: int,
    picture_id: int | None,
    tl0picidx: int | None,
    codec: str,
) -> bytes:
    """``payload`` with the picture id (``bits`` wide, 0, 7 or 15, at ``picture_id_offset``)
    and/or TL0PICIDX (at ``tl0picidx_offset``) replaced, keeping the publisher's widths: a
    7-bit id gets ``picture_id & 0x7F``, a 15-bit one ``& 0x7FFF`` with M still set.  Fields
    absent from the packet stay absent; every other byte is unchanged."""
    if len(payload) < size:
        raise CodecError(f"payload is shorter than its {codec} descriptor")
    write_pid = picture_id is not None and bits != 0
    write_tl0 = tl0picidx is not None and has_tl0picidx
    if not (write_pid or write_tl0):
        return payload
    out = bytearray(payload)
    if picture_id is not None and bits == 15:
        value = picture_id & 0x7FFF
        out[picture_id_offset] = 0x80 | (value >> 8)
        out[picture_id_offset + 1] = value & 0xFF
    elif picture_id is not None and bits == 7:
        out[picture_id_offset] = picture_id & 0x7F
    if tl0picidx is not None and has_tl0picidx:
        out[tl0picidx_offset] = tl0picidx & 0xFF
    return bytes(out)
