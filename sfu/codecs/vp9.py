"""VP9 RTP payload descriptor: a sans-IO parser and an in-place rewriter.

The layout is RFC 9628 ("RTP Payload Format for VP9 Video"), section 4.2.  Flexible mode
(F=1)::

         0 1 2 3 4 5 6 7
        +-+-+-+-+-+-+-+-+
        |I|P|L|F|B|E|V|Z| (REQUIRED)
        +-+-+-+-+-+-+-+-+
   I:   |M| PICTURE ID  | (REQUIRED)
        +-+-+-+-+-+-+-+-+
   M:   | EXTENDED PID  | (RECOMMENDED)
        +-+-+-+-+-+-+-+-+
   L:   | TID |U| SID |D| (CONDITIONALLY RECOMMENDED)
        +-+-+-+-+-+-+-+-+                             -\\
   P,F: | P_DIFF      |N| (CONDITIONALLY REQUIRED)    - up to 3 times
        +-+-+-+-+-+-+-+-+                             -/
   V:   | SS            |
        | ..            |
        +-+-+-+-+-+-+-+-+

Non-flexible mode (F=0) has, instead of the P_DIFFs, a TL0PICIDX byte after the layer
indices (present when L=1).  The scalability structure (RFC 9628 section 4.2.1)::

        +-+-+-+-+-+-+-+-+
   V:   | N_S |Y|G|-|-|-|
        +-+-+-+-+-+-+-+-+              -\\
   Y:   |     WIDTH     | (16 bits)     .
        |     HEIGHT    | (16 bits)     . N_S + 1 times
        +-+-+-+-+-+-+-+-+              -/
   G:   |      N_G      |
        +-+-+-+-+-+-+-+-+                           -\\
   N_G: | TID |U| R |-|-|                            .
        +-+-+-+-+-+-+-+-+              -\\            . N_G times
        |    P_DIFF     | (8 bits)      . R times    .
        +-+-+-+-+-+-+-+-+              -/           -/

Reserved bits are ignored.  A descriptor that is truncated, or whose P_DIFF list runs past
three entries, raises :class:`~sfu.codecs.errors.CodecError`, the only exception the parser
raises.  Bytes after the descriptor (the VP9 frame data) are not inspected.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.codecs.errors import CodecError
from sfu.codecs.picture_id import rewrite_picture_fields

__all__ = [
    "Vp9Descriptor",
    "Vp9ScalabilityStructure",
    "parse_vp9_descriptor",
    "rewrite_vp9_descriptor",
]

MAX_REFERENCE_DIFFS = 3  # RFC 9628: at most 3 P_DIFFs per picture in flexible mode


@dataclass(slots=True)
class Vp9ScalabilityStructure:
    """The SS data (RFC 9628 section 4.2.1)."""

    spatial_layers: int  # N_S + 1
    resolutions: list[tuple[int, int]]  # (width, height) per spatial layer, [] if Y=0
    picture_group: list[tuple[int, bool, list[int]]]  # (tid, U, p_diffs) per picture, [] if G=0


@dataclass(slots=True)
class Vp9Descriptor:
    """A parsed VP9 payload descriptor (RFC 9628 section 4.2)."""

    picture_id: int | None
    picture_id_bits: int  # 0, 7 or 15
    inter_picture_predicted: bool  # P
    flexible: bool  # F
    start_of_frame: bool  # B
    end_of_frame: bool  # E
    not_reference_for_upper: bool  # Z
    tid: int  # 0 when L=0
    switching_up: bool  # U
    sid: int  # 0 when L=0
    inter_layer_dependent: bool  # D
    tl0picidx: int | None  # non-flexible mode with L=1
    reference_diffs: list[int]  # flexible mode P_DIFFs
    ss: Vp9ScalabilityStructure | None
    size: int  # descriptor length in bytes
    # The L bit as parsed.  None (a hand-built descriptor) derives it from the other fields.
    layer_indices: bool | None = None

    @property
    def layer_indices_present(self) -> bool:
        """L: the TID/U/SID/D byte is present."""
        if self.layer_indices is not None:
            return self.layer_indices
        return (
            self.tl0picidx is not None
            or self.tid != 0
            or self.sid != 0
            or self.switching_up
            or self.inter_layer_dependent
        )

    @property
    def keyframe(self) -> bool:
        """Start of a frame that is not inter-picture predicted, in the base spatial layer."""
        return not self.inter_picture_predicted and self.start_of_frame and self.sid == 0


def _parse_ss(payload: bytes, pos: int) -> tuple[Vp9ScalabilityStructure, int]:
    """Parse the scalability structure at ``pos``; return it and the position after it."""
    length = len(payload)
    if pos >= length:
        raise CodecError("VP9 descriptor truncated in the scalability structure")
    head = payload[pos]
    pos += 1
    spatial_layers = (head >> 5) + 1
    resolutions: list[tuple[int, int]] = []
    if head & 0x10:  # Y: resolutions present
        end = pos + 4 * spatial_layers
        if end > length:
            raise CodecError("VP9 scalability structure truncated in the resolutions")
        for i in range(pos, end, 4):
            resolutions.append(
                ((payload[i] << 8) | payload[i + 1], (payload[i + 2] << 8) | payload[i + 3])
            )
        pos = end
    picture_group: list[tuple[int, bool, list[int]]] = []
    if head & 0x08:  # G: picture group description present
        if pos >= length:
            raise CodecError("VP9 scalability structure truncated in N_G")
        count = payload[pos]
        pos += 1
        for _ in range(count):
            if pos >= length:
                raise CodecError("VP9 scalability structure truncated in the picture group")
            b = payload[pos]
            refs = (b >> 2) & 0x03
            end = pos + 1 + refs
            if end > length:
                raise CodecError("VP9 scalability structure truncated in a P_DIFF")
            picture_group.append((b >> 5, bool(b & 0x10), list(payload[pos + 1 : end])))
            pos = end
    return Vp9ScalabilityStructure(spatial_layers, resolutions, picture_group), pos


def parse_vp9_descriptor(payload: bytes) -> Vp9Descriptor:
    """Parse the VP9 payload descriptor at the start of an RTP payload.

    Raises :class:`CodecError` (and nothing else) when the payload is empty, the descriptor
    is truncated, or a flexible-mode picture lists more than three P_DIFFs.
    """
    length = len(payload)
    if not length:
        raise CodecError("empty VP9 payload")
    first = payload[0]
    predicted = bool(first & 0x40)
    layered = bool(first & 0x20)
    flexible = bool(first & 0x10)
    picture_id: int | None = None
    picture_id_bits = 0
    pos = 1
    if first & 0x80:  # I: picture id
        if pos >= length:
            raise CodecError("VP9 descriptor truncated in the picture id")
        b = payload[pos]
        if b & 0x80:  # M: 15-bit picture id
            if pos + 1 >= length:
                raise CodecError("VP9 descriptor truncated in the 15-bit picture id")
            picture_id = ((b & 0x7F) << 8) | payload[pos + 1]
            picture_id_bits = 15
            pos += 2
        else:
            picture_id = b
            picture_id_bits = 7
            pos += 1
    tid = 0
    switching_up = False
    sid = 0
    inter_layer_dependent = False
    tl0picidx: int | None = None
    if layered:  # L: layer indices
        if pos >= length:
            raise CodecError("VP9 descriptor truncated in the layer indices")
        b = payload[pos]
        tid = b >> 5
        switching_up = bool(b & 0x10)
        sid = (b >> 1) & 0x07
        inter_layer_dependent = bool(b & 0x01)
        pos += 1
        if not flexible:
            if pos >= length:
                raise CodecError("VP9 descriptor truncated in TL0PICIDX")
            tl0picidx = payload[pos]
            pos += 1
    reference_diffs: list[int] = []
    if flexible and predicted:  # P_DIFFs, each with N saying another follows
        while True:
            if pos >= length:
                raise CodecError("VP9 descriptor truncated in the reference indices")
            b = payload[pos]
            pos += 1
            reference_diffs.append(b >> 1)
            if not b & 0x01:
                break
            if len(reference_diffs) == MAX_REFERENCE_DIFFS:
                raise CodecError("VP9 descriptor has more than three reference indices")
    ss: Vp9ScalabilityStructure | None = None
    if first & 0x02:  # V: scalability structure
        ss, pos = _parse_ss(payload, pos)
    return Vp9Descriptor(
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        inter_picture_predicted=predicted,
        flexible=flexible,
        start_of_frame=bool(first & 0x08),
        end_of_frame=bool(first & 0x04),
        not_reference_for_upper=bool(first & 0x01),
        tid=tid,
        switching_up=switching_up,
        sid=sid,
        inter_layer_dependent=inter_layer_dependent,
        tl0picidx=tl0picidx,
        reference_diffs=reference_diffs,
        ss=ss,
        size=pos,
        layer_indices=layered,
    )


def rewrite_vp9_descriptor(
    payload: bytes,
    descriptor: Vp9Descriptor,
    *,
    picture_id: int | None = None,
    tl0picidx: int | None = None,
    reference_diffs: list[int] | None = None,
) -> bytes:
    """Return ``payload`` with its picture id, TL0PICIDX and/or flexible-mode P_DIFFs
    replaced in place.

    ``descriptor`` must be the result of parsing ``payload``; see
    :func:`~sfu.codecs.picture_id.rewrite_picture_fields` for the picture id and TL0PICIDX.
    ``reference_diffs``: as many P_DIFFs as the packet carries, each 1-127 (their N bits
    are kept, so the descriptor's length does not change); ignored when it has none.
    """
    bits = descriptor.picture_id_bits
    out = rewrite_picture_fields(
        payload,
        size=descriptor.size,
        bits=bits,
        has_tl0picidx=descriptor.tl0picidx is not None,
        picture_id_offset=1,
        tl0picidx_offset=2
        + (bits + 1)
        // 8,  # after the first byte, a 0-, 1- or 2-byte picture id and the layer indices byte
        picture_id=picture_id,
        tl0picidx=tl0picidx,
        codec="VP9",
    )
    if reference_diffs is None or not descriptor.reference_diffs:
        return out
    if len(reference_diffs) != len(descriptor.reference_diffs):
        raise CodecError("VP9 P_DIFF rewrite with another number of references")
    if len(payload) < descriptor.size:
        raise CodecError("payload is shorter than its VP9 descriptor")
    # after the first byte, the picture id and the layer indices byte (flexible: no TL0PICIDX)
    at = 1 + (bits + 1) // 8 + (1 if descriptor.layer_indices_present else 0)
    buffer = bytearray(out)
    for i, diff in enumerate(reference_diffs):
        if not 0 < diff < 128:
            raise CodecError(f"VP9 P_DIFF out of range: {diff}")
        buffer[at + i] = (diff << 1) | (buffer[at + i] & 0x01)
    return bytes(buffer)
