"""VP8 payload descriptor (RFC 7741 section 4.2): exact-byte parsing of what only VP8 has;
the cases VP8 and VP9 share (picture ids, truncation, rewriting, fuzzing) are test_vp8_vp9.py's."""

from __future__ import annotations

import pytest
from support.payloads import VP8_DELTA_HEADER as DELTA_HEADER
from support.payloads import VP8_KEY_HEADER as KEY_HEADER

from sfu.codecs.vp8 import Vp8Descriptor, parse_vp8_descriptor


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
