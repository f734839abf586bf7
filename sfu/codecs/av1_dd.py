"""The AV1 RTP Dependency Descriptor (DD) header extension: a sans-IO parser and serializer.

The DD tells a forwarder, without looking at the payload, which frame a packet belongs to,
its spatial and temporal layer, how it relates to each decode target (DTI), which frames it
references and where each chain stands.  Most packets carry only three bytes naming a
*template*; the template dependency structure that gives the templates their meaning is sent
now and then (on keyframes), so the caller keeps the latest one per stream and passes it in.

Spec: "RTP Payload Format for AV1", appendix A, "Dependency Descriptor RTP Header Extension",
https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sfu.codecs.errors import CodecError

__all__ = [
    "DecodeTargetIndication",
    "DependencyDescriptor",
    "FrameDependencyTemplate",
    "TemplateStructure",
    "parse_dependency_descriptor",
    "serialize_dependency_descriptor",
]

MAX_TEMPLATE_ID = 63
MAX_SPATIAL_ID = 3
MAX_TEMPORAL_ID = 7
MAX_DECODE_TARGETS = 32  # dtis_cnt_minus_one is 5 bits
_TEMPLATE_IDS = MAX_TEMPLATE_ID + 1
_MANDATORY_BYTES = 3

# next_layer_idc values (spec table A.3)
_SAME_LAYER = 0
_NEXT_TEMPORAL = 1
_NEXT_SPATIAL = 2
_NO_MORE_TEMPLATES = 3


class DecodeTargetIndication(enum.IntEnum):
    """How a frame relates to one decode target (spec table A.2)."""

    NOT_PRESENT = 0
    DISCARDABLE = 1
    SWITCH = 2
    REQUIRED = 3


@dataclass(slots=True)
class FrameDependencyTemplate:
    spatial_id: int
    temporal_id: int
    dtis: list[int]  # one DecodeTargetIndication value per decode target
    fdiffs: list[int]  # frame number differences of the references (1..16 in a template)
    chain_fdiffs: list[int]  # one per chain (0..15 in a template)


@dataclass(slots=True)
class TemplateStructure:
    template_id_offset: int
    decode_target_count: int
    templates: list[FrameDependencyTemplate]
    chain_count: int
    decode_target_protected_by_chain: list[int]  # one per decode target; [] if no chains
    resolutions: list[tuple[int, int]]  # (width, height) per spatial layer, or [] if absent

    @property
    def spatial_layers(self) -> int:
        """Number of spatial layers: the highest spatial id of the templates, plus one."""
        return max((t.spatial_id for t in self.templates), default=-1) + 1

    @property
    def temporal_layers(self) -> int:
        """Number of temporal layers: the highest temporal id of the templates, plus one."""
        return max((t.temporal_id for t in self.templates), default=-1) + 1


@dataclass(slots=True)
class DependencyDescriptor:
    start_of_frame: bool
    end_of_frame: bool
    template_id: int  # frame_dependency_template_id, as on the wire
    frame_number: int
    structure: TemplateStructure | None  # attached in THIS packet, else None
    # Present in this packet, else None.  Bit i (value 1 << i) is decode target i.  When a
    # structure is attached without a bitmask, the spec makes all its decode targets active.
    active_decode_targets_bitmask: int | None
    # The frame's dependencies, resolved through the template (and custom fields):
    spatial_id: int
    temporal_id: int
    dtis: list[int]
    fdiffs: list[int]
    chain_fdiffs: list[int]
    # Raw flags, needed to re-serialize faithfully.
    custom_dtis: bool = False
    custom_fdiffs: bool = False
    custom_chains: bool = False


# --------------------------------------------------------------------------- bit I/O


class _BitReader:
    """MSB-first reader over the whole extension held as one integer."""

    __slots__ = ("_value", "_remaining")

    def __init__(self, data: bytes, skip_bits: int) -> None:
        self._value = int.from_bytes(data, "big")
        self._remaining = len(data) * 8 - skip_bits

    def read(self, n: int) -> int:
        remaining = self._remaining - n
        if remaining < 0:
            raise CodecError("dependency descriptor is truncated")
        self._remaining = remaining
        return (self._value >> remaining) & ((1 << n) - 1)

    def read_ns(self, n: int) -> int:
        """ns(n): a non-symmetric unsigned integer in 0..n-1 (n >= 1)."""
        w = n.bit_length()
        m = (1 << w) - n
        v = self.read(w - 1)
        if v < m:
            return v
        return (v << 1) - m + self.read(1)


class _BitWriter:
    __slots__ = ("_value", "_bits")

    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    def write(self, value: int, n: int) -> None:
        self._value = (self._value << n) | value
        self._bits += n

    def write_ns(self, value: int, n: int) -> None:
        w = n.bit_length()
        m = (1 << w) - n
        if value < m:
            self.write(value, w - 1)
        else:
            self.write(value + m, w)  # (v << 1 | extra_bit) == value + m

    def to_bytes(self) -> bytes:
        pad = -self._bits % 8
        return (self._value << pad).to_bytes((self._bits + pad) // 8, "big")


def _split(value: int, count: int, width: int) -> list[int]:
    """`count` fields of `width` bits packed MSB-first in `value`."""
    mask = (1 << width) - 1
    top = width * (count - 1)
    return [(value >> (top - width * i)) & mask for i in range(count)]


# --------------------------------------------------------------------------- parsing


def parse_dependency_descriptor(
    data: bytes, structure: TemplateStructure | None
) -> DependencyDescriptor:
    """Parse one DD extension value.

    `structure` is the latest structure known for the stream (the caller keeps it).  If the
    packet carries its own structure, that one is used (and returned in `.structure`).
    Raises CodecError (and nothing else, for any input bytes) when malformed, when no
    structure is known, or when the template id is not in the structure.
    """
    size = len(data)
    if size < _MANDATORY_BYTES:
        raise CodecError(f"dependency descriptor too short: {size} bytes")
    first = data[0]
    template_id = first & 0x3F
    frame_number = (data[1] << 8) | data[2]

    attached: TemplateStructure | None = None
    bitmask: int | None = None
    custom_dtis = custom_fdiffs = custom_chains = False
    reader: _BitReader | None = None
    if size > _MANDATORY_BYTES:
        reader = _BitReader(data, 8 * _MANDATORY_BYTES)
        flags = reader.read(5)
        custom_dtis = bool(flags & 0x04)
        custom_fdiffs = bool(flags & 0x02)
        custom_chains = bool(flags & 0x01)
        if flags & 0x10:
            attached = _read_structure(reader)
            structure = attached
        if structure is None:
            raise CodecError("dependency descriptor without a known template structure")
        if flags & 0x08:
            bitmask = reader.read(structure.decode_target_count)
    elif structure is None:
        raise CodecError("dependency descriptor without a known template structure")

    index = (template_id - structure.template_id_offset) % _TEMPLATE_IDS
    if index >= len(structure.templates):
        raise CodecError(f"template id {template_id} is not in the template structure")
    template = structure.templates[index]

    if reader is not None and custom_dtis:
        n = structure.decode_target_count
        dtis = _split(reader.read(2 * n), n, 2)
    else:
        dtis = list(template.dtis)
    if reader is not None and custom_fdiffs:
        fdiffs: list[int] = []
        fdiff_size = reader.read(2)
        while fdiff_size:
            # fdiff_minus_one (4 * size bits) followed by the next size (2 bits)
            x = reader.read(4 * fdiff_size + 2)
            fdiffs.append((x >> 2) + 1)
            fdiff_size = x & 3
    else:
        fdiffs = list(template.fdiffs)
    if reader is not None and custom_chains:
        n = structure.chain_count
        chain_fdiffs = _split(reader.read(8 * n), n, 8) if n else []
    else:
        chain_fdiffs = list(template.chain_fdiffs)
    # Whatever is left is zero_padding, which receivers ignore.

    return DependencyDescriptor(
        start_of_frame=bool(first & 0x80),
        end_of_frame=bool(first & 0x40),
        template_id=template_id,
        frame_number=frame_number,
        structure=attached,
        active_decode_targets_bitmask=bitmask,
        spatial_id=template.spatial_id,
        temporal_id=template.temporal_id,
        dtis=dtis,
        fdiffs=fdiffs,
        chain_fdiffs=chain_fdiffs,
        custom_dtis=custom_dtis,
        custom_fdiffs=custom_fdiffs,
        custom_chains=custom_chains,
    )


def _read_structure(reader: _BitReader) -> TemplateStructure:
    """template_dependency_structure()"""
    template_id_offset = reader.read(6)
    dt_count = reader.read(5) + 1

    # template_layers()
    layers: list[tuple[int, int]] = []
    spatial_id = temporal_id = 0
    while True:
        if len(layers) == _TEMPLATE_IDS:
            raise CodecError("more than 64 templates in the template structure")
        layers.append((spatial_id, temporal_id))
        next_layer_idc = reader.read(2)
        if next_layer_idc == _NO_MORE_TEMPLATES:
            break
        if next_layer_idc == _NEXT_TEMPORAL:
            temporal_id += 1
            if temporal_id > MAX_TEMPORAL_ID:
                raise CodecError("template temporal id above 7")
        elif next_layer_idc == _NEXT_SPATIAL:
            temporal_id = 0
            spatial_id += 1
            if spatial_id > MAX_SPATIAL_ID:
                raise CodecError("template spatial id above 3")

    # template_dtis()
    template_dtis = [_split(reader.read(2 * dt_count), dt_count, 2) for _ in layers]

    # template_fdiffs()
    template_fdiffs: list[list[int]] = []
    for _ in layers:
        fdiffs: list[int] = []
        follows = reader.read(1)
        while follows:
            x = reader.read(5)  # fdiff_minus_one (4 bits), then fdiff_follows_flag
            fdiffs.append((x >> 1) + 1)
            follows = x & 1
        template_fdiffs.append(fdiffs)

    # template_chains()
    chain_count = reader.read_ns(dt_count + 1)
    protected_by: list[int] = []
    if chain_count:
        protected_by = [reader.read_ns(chain_count) for _ in range(dt_count)]
        template_chains = [_split(reader.read(4 * chain_count), chain_count, 4) for _ in layers]
    else:
        template_chains = [[] for _ in layers]

    # render_resolutions()
    resolutions: list[tuple[int, int]] = []
    if reader.read(1):
        for _ in range(layers[-1][0] + 1):
            x = reader.read(32)
            resolutions.append(((x >> 16) + 1, (x & 0xFFFF) + 1))

    templates = [
        FrameDependencyTemplate(s, t, dtis, fdiffs, chains)
        for (s, t), dtis, fdiffs, chains in zip(
            layers, template_dtis, template_fdiffs, template_chains, strict=True
        )
    ]
    return TemplateStructure(
        template_id_offset=template_id_offset,
        decode_target_count=dt_count,
        templates=templates,
        chain_count=chain_count,
        decode_target_protected_by_chain=protected_by,
        resolutions=resolutions,
    )


# --------------------------------------------------------------------------- serializing


def serialize_dependency_descriptor(
    dd: DependencyDescriptor,
    structure: TemplateStructure,
    *,
    attach_structure: bool = False,
    active_decode_targets_bitmask: int | None = None,
) -> bytes:
    """Write one DD extension value.

    `dd.template_id` selects the template in `structure` (dd.structure and
    dd.active_decode_targets_bitmask are ignored: the keyword arguments decide).
    `attach_structure` writes `structure` into the packet; `active_decode_targets_bitmask`
    (if not None) writes that bitmask.  DTIs, fdiffs and chain fdiffs are written through the
    template when they match it and the dd's custom flag is not set, else as custom fields
    (custom fdiffs with the smallest size that holds each).  The output is zero-padded to a
    byte boundary and minimal: only the 3 mandatory bytes when nothing extended is needed.
    Raises CodecError when the descriptor or structure cannot be represented.
    """
    if not 0 <= dd.template_id <= MAX_TEMPLATE_ID:
        raise CodecError(f"template id {dd.template_id} out of range")
    if not 0 <= dd.frame_number <= 0xFFFF:
        raise CodecError(f"frame number {dd.frame_number} out of range")
    index = (dd.template_id - structure.template_id_offset) % _TEMPLATE_IDS
    if index >= len(structure.templates):
        raise CodecError(f"template id {dd.template_id} is not in the template structure")
    template = structure.templates[index]
    if (dd.spatial_id, dd.temporal_id) != (template.spatial_id, template.temporal_id):
        raise CodecError("spatial/temporal id differ from those of the template")
    dt_count = structure.decode_target_count
    if attach_structure:
        _check_structure(structure)

    custom_dtis = dd.custom_dtis or dd.dtis != template.dtis
    if custom_dtis and (len(dd.dtis) != dt_count or not all(0 <= v <= 3 for v in dd.dtis)):
        raise CodecError("custom DTIs must be one value 0..3 per decode target")
    custom_fdiffs = dd.custom_fdiffs or dd.fdiffs != template.fdiffs
    if custom_fdiffs and not all(1 <= v <= 1 << 12 for v in dd.fdiffs):
        raise CodecError("custom fdiffs must be in 1..4096")
    custom_chains = dd.custom_chains or dd.chain_fdiffs != template.chain_fdiffs
    if custom_chains and (
        len(dd.chain_fdiffs) != structure.chain_count
        or not all(0 <= v <= 0xFF for v in dd.chain_fdiffs)
    ):
        raise CodecError("custom chain fdiffs must be one value 0..255 per chain")
    if active_decode_targets_bitmask is not None and not (
        0 <= active_decode_targets_bitmask < 1 << dt_count
    ):
        raise CodecError("active decode targets bitmask wider than the decode targets")

    writer = _BitWriter()
    writer.write((int(dd.start_of_frame) << 7) | (int(dd.end_of_frame) << 6) | dd.template_id, 8)
    writer.write(dd.frame_number, 16)
    if not (
        attach_structure
        or active_decode_targets_bitmask is not None
        or custom_dtis
        or custom_fdiffs
        or custom_chains
    ):
        return writer.to_bytes()

    writer.write(
        (int(attach_structure) << 4)
        | (int(active_decode_targets_bitmask is not None) << 3)
        | (int(custom_dtis) << 2)
        | (int(custom_fdiffs) << 1)
        | int(custom_chains),
        5,
    )
    if attach_structure:
        _write_structure(writer, structure)
    if active_decode_targets_bitmask is not None:
        writer.write(active_decode_targets_bitmask, dt_count)
    if custom_dtis:
        for dti in dd.dtis:
            writer.write(dti, 2)
    if custom_fdiffs:
        for fdiff in dd.fdiffs:
            minus_one = fdiff - 1
            fdiff_size = 1 if minus_one < 1 << 4 else 2 if minus_one < 1 << 8 else 3
            writer.write((fdiff_size << (4 * fdiff_size)) | minus_one, 2 + 4 * fdiff_size)
        writer.write(0, 2)
    if custom_chains:
        for chain_fdiff in dd.chain_fdiffs:
            writer.write(chain_fdiff, 8)
    return writer.to_bytes()


def _check_structure(structure: TemplateStructure) -> None:
    """Raise CodecError unless `structure` can be written as it would be read back."""
    if not 0 <= structure.template_id_offset <= MAX_TEMPLATE_ID:
        raise CodecError("template id offset out of range")
    dt_count = structure.decode_target_count
    if not 1 <= dt_count <= MAX_DECODE_TARGETS:
        raise CodecError("decode target count must be in 1..32")
    templates = structure.templates
    if not 1 <= len(templates) <= _TEMPLATE_IDS:
        raise CodecError("a template structure has 1..64 templates")
    if (templates[0].spatial_id, templates[0].temporal_id) != (0, 0):
        raise CodecError("the first template must be spatial 0, temporal 0")
    for previous, current in zip(templates, templates[1:], strict=False):
        _next_layer_idc(previous, current)
    if templates[-1].spatial_id > MAX_SPATIAL_ID:
        raise CodecError("template spatial id above 3")
    if max(t.temporal_id for t in templates) > MAX_TEMPORAL_ID:
        raise CodecError("template temporal id above 7")
    chain_count = structure.chain_count
    if not 0 <= chain_count <= dt_count:
        raise CodecError("chain count must be in 0..decode target count")
    protected_by = structure.decode_target_protected_by_chain
    if chain_count and (
        len(protected_by) != dt_count or not all(0 <= c < chain_count for c in protected_by)
    ):
        raise CodecError("each decode target must be protected by one existing chain")
    if not chain_count and protected_by:
        raise CodecError("decode targets protected by chains, but there are no chains")
    for t in templates:
        if len(t.dtis) != dt_count or not all(0 <= v <= 3 for v in t.dtis):
            raise CodecError("template DTIs must be one value 0..3 per decode target")
        if not all(1 <= v <= 16 for v in t.fdiffs):
            raise CodecError("template fdiffs must be in 1..16")
        if len(t.chain_fdiffs) != chain_count or not all(0 <= v <= 15 for v in t.chain_fdiffs):
            raise CodecError("template chain fdiffs must be one value 0..15 per chain")
    if structure.resolutions and (
        len(structure.resolutions) != templates[-1].spatial_id + 1
        or not all(1 <= w <= 1 << 16 and 1 <= h <= 1 << 16 for w, h in structure.resolutions)
    ):
        raise CodecError("resolutions must be one (1..65536, 1..65536) per spatial layer")


def _next_layer_idc(previous: FrameDependencyTemplate, current: FrameDependencyTemplate) -> int:
    if current.spatial_id == previous.spatial_id:
        if current.temporal_id == previous.temporal_id:
            return _SAME_LAYER
        if current.temporal_id == previous.temporal_id + 1:
            return _NEXT_TEMPORAL
    elif current.spatial_id == previous.spatial_id + 1 and current.temporal_id == 0:
        return _NEXT_SPATIAL
    raise CodecError(
        "templates must be ordered by layer, each step keeping the layer, adding one "
        "temporal layer, or starting the next spatial layer at temporal id 0"
    )


def _write_structure(writer: _BitWriter, structure: TemplateStructure) -> None:
    """template_dependency_structure(); `structure` already checked."""
    dt_count = structure.decode_target_count
    templates = structure.templates
    writer.write(structure.template_id_offset, 6)
    writer.write(dt_count - 1, 5)
    for previous, current in zip(templates, templates[1:], strict=False):
        writer.write(_next_layer_idc(previous, current), 2)
    writer.write(_NO_MORE_TEMPLATES, 2)
    for t in templates:
        for dti in t.dtis:
            writer.write(dti, 2)
    for t in templates:
        for fdiff in t.fdiffs:
            writer.write(0x10 | (fdiff - 1), 5)  # fdiff_follows_flag, fdiff_minus_one
        writer.write(0, 1)
    writer.write_ns(structure.chain_count, dt_count + 1)
    if structure.chain_count:
        for chain in structure.decode_target_protected_by_chain:
            writer.write_ns(chain, structure.chain_count)
        for t in templates:
            for chain_fdiff in t.chain_fdiffs:
                writer.write(chain_fdiff, 4)
    writer.write(1 if structure.resolutions else 0, 1)
    for width, height in structure.resolutions:
        writer.write(((width - 1) << 16) | (height - 1), 32)
