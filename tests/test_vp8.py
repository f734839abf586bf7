"""VP8 payload descriptor (RFC 7741 section 4.2): exact-byte parsing and rewriting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.codecs.errors import CodecError
from sfu.codecs.vp8 import Vp8Descriptor, parse_vp8_descriptor, rewrite_vp8_descriptor

# VP8 payload headers (RFC 7741 section 4.3): bit 0 is P, 0 for a key frame.
KEY_HEADER = bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A])  # P=0, then the key frame start code
DELTA_HEADER = bytes([0x31, 0x01, 0x00])  # P=1


def test_minimal_descriptor_without_x() -> None:
    # X=0 R=0 N=0 S=1 R=0 PID=0, then a key frame payload header.
    d = parse_vp8_descriptor(bytes([0x10]) + KEY_HEADER)
    assert d == Vp8Descriptor(
        non_reference=False,
        start_of_partition=True,
        partition_index=0,
        picture_id=None,
        picture_id_bits=0,
        tl0picidx=None,
        tid=None,
        layer_sync=False,
        key_idx=None,
        size=1,
        keyframe=True,
    )
    assert d.start_of_frame


def test_without_x_delta_frame_and_flags() -> None:
    # N=1 S=1 PID=0, payload header P=1.
    d = parse_vp8_descriptor(bytes([0x30]) + DELTA_HEADER)
    assert d.non_reference
    assert d.start_of_frame
    assert not d.keyframe
    assert d.size == 1


def test_continuation_and_later_partitions_are_not_keyframes() -> None:
    # S=0 PID=0: the byte after the descriptor is partition data, not a payload header.
    d = parse_vp8_descriptor(bytes([0x00, 0x00, 0x00]))
    assert not d.start_of_partition
    assert not d.start_of_frame
    assert not d.keyframe
    # S=1 PID=3: start of partition 3, not of the frame.
    d = parse_vp8_descriptor(bytes([0x13, 0x00]))
    assert d.start_of_partition
    assert d.partition_index == 3
    assert not d.start_of_frame
    assert not d.keyframe
    # PID=7, the widest value; reserved bits (0x40, 0x08) are ignored.
    d = parse_vp8_descriptor(bytes([0x5F, 0x00]))
    assert d.partition_index == 7
    assert d.start_of_partition
    assert not d.non_reference


def test_x_with_no_optional_fields() -> None:
    d = parse_vp8_descriptor(bytes([0x90, 0x00]) + KEY_HEADER)
    assert d.size == 2
    assert d.picture_id is None
    assert d.picture_id_bits == 0
    assert d.tl0picidx is None
    assert d.tid is None
    assert d.key_idx is None
    assert d.keyframe


def test_seven_bit_picture_id() -> None:
    # X=1 S=1; I=1; M=0 picture id 0x55.
    d = parse_vp8_descriptor(bytes([0x90, 0x80, 0x55]) + DELTA_HEADER)
    assert d.picture_id == 0x55
    assert d.picture_id_bits == 7
    assert d.size == 3
    assert not d.keyframe


def test_fifteen_bit_picture_id() -> None:
    # I=1; M=1 picture id 0x1234.
    d = parse_vp8_descriptor(bytes([0x90, 0x80, 0x92, 0x34]) + KEY_HEADER)
    assert d.picture_id == 0x1234
    assert d.picture_id_bits == 15
    assert d.size == 4
    assert d.keyframe
    # The largest 15-bit value.
    d = parse_vp8_descriptor(bytes([0x90, 0x80, 0xFF, 0xFF, 0x01]))
    assert d.picture_id == 0x7FFF


def test_chromium_temporal_layers_all_fields() -> None:
    # X=1 S=1; I L T K; 15-bit picture id 0x0102; TL0PICIDX 0xAB; TID=2 Y=1 KEYIDX=0x11.
    payload = bytes([0x90, 0xF0, 0x81, 0x02, 0xAB, 0xB1]) + DELTA_HEADER
    d = parse_vp8_descriptor(payload)
    assert d == Vp8Descriptor(
        non_reference=False,
        start_of_partition=True,
        partition_index=0,
        picture_id=0x0102,
        picture_id_bits=15,
        tl0picidx=0xAB,
        tid=2,
        layer_sync=True,
        key_idx=0x11,
        size=6,
        keyframe=False,
    )


@pytest.mark.parametrize(
    ("ext", "tk_byte", "tid", "layer_sync", "key_idx"),
    [
        (0x20, 0x40, 1, False, None),  # T only: TID=1 Y=0
        (0x20, 0xE5, 3, True, None),  # T only: KEYIDX bits ignored
        (0x10, 0xFF, None, False, 0x1F),  # K only: TID/Y ignored
        (0x10, 0x03, None, False, 0x03),
        (0x30, 0x00, 0, False, 0),  # T and K, all zero
        (0x30, 0x7F, 1, True, 0x1F),
    ],
)
def test_t_and_k_combinations(
    ext: int, tk_byte: int, tid: int | None, layer_sync: bool, key_idx: int | None
) -> None:
    d = parse_vp8_descriptor(bytes([0x90, ext, tk_byte]) + KEY_HEADER)
    assert d.tid == tid
    assert d.layer_sync is layer_sync
    assert d.key_idx == key_idx
    assert d.size == 3
    assert d.keyframe


def test_tl0picidx_without_picture_id() -> None:
    d = parse_vp8_descriptor(bytes([0x90, 0x60, 0x07, 0x80]) + KEY_HEADER)
    assert d.picture_id is None
    assert d.tl0picidx == 0x07
    assert d.tid == 2
    assert d.size == 4


def test_keyframe_bit_is_read_after_the_whole_descriptor() -> None:
    # The TID byte 0x40 has bit 0 clear; the payload header's P bit (1) decides.
    assert not parse_vp8_descriptor(bytes([0x90, 0xA0, 0x80, 0x01, 0x40, 0x11])).keyframe
    assert parse_vp8_descriptor(bytes([0x90, 0xA0, 0x80, 0x01, 0x40, 0x10])).keyframe


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes([0x10]),  # no VP8 payload after the descriptor
        bytes([0x90]),  # X=1, extension byte missing
        bytes([0x90, 0x00]),  # extension byte, then nothing
        bytes([0x90, 0x80]),  # I=1, picture id missing
        bytes([0x90, 0x80, 0x80]),  # M=1, second picture id byte missing
        bytes([0x90, 0x80, 0x92, 0x34]),  # complete descriptor, no payload
        bytes([0x90, 0x40]),  # L=1, TL0PICIDX missing
        bytes([0x90, 0x20]),  # T=1, TID byte missing
        bytes([0x90, 0x10]),  # K=1, KEYIDX byte missing
        bytes([0x90, 0xF0, 0x81, 0x02, 0xAB]),  # all fields, TID/KEYIDX byte missing
        bytes([0x90, 0xF0, 0x81, 0x02, 0xAB, 0xB1]),  # all fields, no payload
    ],
)
def test_truncated_input_raises_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        parse_vp8_descriptor(payload)


def test_rewrite_fifteen_bit_picture_id_and_tl0picidx() -> None:
    payload = bytes([0x90, 0xF0, 0x81, 0x02, 0xAB, 0xB1]) + DELTA_HEADER
    d = parse_vp8_descriptor(payload)
    out = rewrite_vp8_descriptor(payload, d, picture_id=0x7ABC, tl0picidx=0x12)
    assert out == bytes([0x90, 0xF0, 0xFA, 0xBC, 0x12, 0xB1]) + DELTA_HEADER
    # Picture id alone, TL0PICIDX alone.
    assert rewrite_vp8_descriptor(payload, d, picture_id=5) == (
        bytes([0x90, 0xF0, 0x80, 0x05, 0xAB, 0xB1]) + DELTA_HEADER
    )
    assert rewrite_vp8_descriptor(payload, d, tl0picidx=0) == (
        bytes([0x90, 0xF0, 0x81, 0x02, 0x00, 0xB1]) + DELTA_HEADER
    )


def test_rewrite_fifteen_bit_wraps() -> None:
    payload = bytes([0x90, 0x80, 0x81, 0x02]) + KEY_HEADER
    d = parse_vp8_descriptor(payload)
    out = rewrite_vp8_descriptor(payload, d, picture_id=0x8000 + 3)
    assert out == bytes([0x90, 0x80, 0x80, 0x03]) + KEY_HEADER
    assert parse_vp8_descriptor(out).picture_id == 3


def test_rewrite_seven_bit_picture_id_keeps_width_and_wraps() -> None:
    payload = bytes([0x90, 0xC0, 0x55, 0x09]) + KEY_HEADER
    d = parse_vp8_descriptor(payload)
    out = rewrite_vp8_descriptor(payload, d, picture_id=0x1FF, tl0picidx=0x1FE)
    assert out == bytes([0x90, 0xC0, 0x7F, 0xFE]) + KEY_HEADER
    assert len(out) == len(payload)
    again = parse_vp8_descriptor(out)
    assert again.picture_id == 0x7F
    assert again.picture_id_bits == 7
    assert again.tl0picidx == 0xFE
    assert rewrite_vp8_descriptor(payload, d, picture_id=0x80) == (
        bytes([0x90, 0xC0, 0x00, 0x09]) + KEY_HEADER
    )


def test_rewrite_leaves_absent_fields_absent() -> None:
    no_x = bytes([0x10]) + KEY_HEADER
    d = parse_vp8_descriptor(no_x)
    assert rewrite_vp8_descriptor(no_x, d, picture_id=9, tl0picidx=9) == no_x
    # Picture id present, TL0PICIDX absent: only the picture id changes.
    payload = bytes([0x90, 0xA0, 0x11, 0x40]) + DELTA_HEADER
    d = parse_vp8_descriptor(payload)
    assert rewrite_vp8_descriptor(payload, d, picture_id=0x22, tl0picidx=9) == (
        bytes([0x90, 0xA0, 0x22, 0x40]) + DELTA_HEADER
    )
    # TL0PICIDX present, picture id absent: TL0PICIDX sits right after the extension byte.
    payload = bytes([0x90, 0x60, 0x07, 0x80]) + KEY_HEADER
    d = parse_vp8_descriptor(payload)
    assert rewrite_vp8_descriptor(payload, d, picture_id=0x22, tl0picidx=0x08) == (
        bytes([0x90, 0x60, 0x08, 0x80]) + KEY_HEADER
    )
    # Nothing asked: the payload comes back unchanged.
    assert rewrite_vp8_descriptor(payload, d) == payload


def test_rewrite_rejects_a_payload_shorter_than_its_descriptor() -> None:
    payload = bytes([0x90, 0xF0, 0x81, 0x02, 0xAB, 0xB1]) + DELTA_HEADER
    d = parse_vp8_descriptor(payload)
    with pytest.raises(CodecError):
        rewrite_vp8_descriptor(payload[:4], d, picture_id=1)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=24))
def test_fuzz_parser_only_raises_codec_error(payload: bytes) -> None:
    try:
        d = parse_vp8_descriptor(payload)
    except CodecError:
        return
    assert 1 <= d.size < len(payload)
    assert d.picture_id_bits in (0, 7, 15)
    assert (d.picture_id is None) == (d.picture_id_bits == 0)
    assert 0 <= d.partition_index <= 7


@settings(max_examples=500, deadline=None)
@given(
    st.binary(min_size=1, max_size=24),
    st.integers(min_value=0, max_value=0xFFFF),
    st.integers(min_value=0, max_value=0xFF),
)
def test_fuzz_rewrite_changes_only_the_rewritten_fields(
    payload: bytes, picture_id: int, tl0picidx: int
) -> None:
    try:
        d = parse_vp8_descriptor(payload)
    except CodecError:
        return
    out = rewrite_vp8_descriptor(payload, d, picture_id=picture_id, tl0picidx=tl0picidx)
    assert len(out) == len(payload)
    assert out[d.size :] == payload[d.size :]
    again = parse_vp8_descriptor(out)
    mask = (1 << d.picture_id_bits) - 1
    expected_pid = None if d.picture_id is None else picture_id & mask
    expected_tl0 = None if d.tl0picidx is None else tl0picidx
    assert again == Vp8Descriptor(
        non_reference=d.non_reference,
        start_of_partition=d.start_of_partition,
        partition_index=d.partition_index,
        picture_id=expected_pid,
        picture_id_bits=d.picture_id_bits,
        tl0picidx=expected_tl0,
        tid=d.tid,
        layer_sync=d.layer_sync,
        key_idx=d.key_idx,
        size=d.size,
        keyframe=d.keyframe,
    )
