"""VP8 (RFC 7741) and VP9 (RFC 9628) payload descriptors: the cases both codecs share, as one
table per case: picture ids of 7 and 15 bits, truncated input, exact-byte rewrites of the
picture id and TL0PICIDX, and the fuzzers.  What only one codec has is in test_vp8.py and
test_vp9.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.payloads import (
    VP8_DELTA_HEADER,
    VP8_KEY_HEADER,
    VP9_FRAME,
    VP9_L3T3_KEY_START,
)

from sfu.codecs.errors import CodecError
from sfu.codecs.vp8 import parse_vp8_descriptor, rewrite_vp8_descriptor
from sfu.codecs.vp9 import parse_vp9_descriptor, rewrite_vp9_descriptor

PARSE: dict[str, Callable[[bytes], Any]] = {
    "VP8": parse_vp8_descriptor,
    "VP9": parse_vp9_descriptor,
}
REWRITE: dict[str, Callable[..., bytes]] = {
    "VP8": rewrite_vp8_descriptor,
    "VP9": rewrite_vp9_descriptor,
}
KEY, DELTA, FRAME = VP8_KEY_HEADER, VP8_DELTA_HEADER, VP9_FRAME
#: VP8 with every optional field: X=1 S=1; I L T K; 15-bit picture id 0x0102; TL0PICIDX 0xAB;
#: TID=2 Y=1 KEYIDX=0x11
VP8_ALL = bytes([0x90, 0xF0, 0x81, 0x02, 0xAB, 0xB1]) + DELTA


@pytest.mark.parametrize(
    ("codec", "payload", "picture_id", "bits", "size"),
    [
        ("VP8", bytes([0x90, 0x80, 0x55]) + DELTA, 0x55, 7, 3),  # X=1 S=1; I=1; M=0
        ("VP8", bytes([0x90, 0x80, 0x92, 0x34]) + KEY, 0x1234, 15, 4),  # M=1
        ("VP8", bytes([0x90, 0x80, 0xFF, 0xFF, 0x01]), 0x7FFF, 15, 4),  # the largest
        ("VP9", bytes([0x88, 0x55]) + FRAME, 0x55, 7, 2),  # I=1 B=1; M=0
        ("VP9", bytes([0x88, 0x92, 0x34]) + FRAME, 0x1234, 15, 3),  # M=1
        ("VP9", bytes([0x88, 0xFF, 0xFF]), 0x7FFF, 15, 3),  # the largest
    ],
)
def test_seven_and_fifteen_bit_picture_ids(
    codec: str, payload: bytes, picture_id: int, bits: int, size: int
) -> None:
    d = PARSE[codec](payload)
    assert (d.picture_id, d.picture_id_bits, d.size) == (picture_id, bits, size)


def test_vp8_picture_id_width_does_not_hide_the_payload_header() -> None:
    assert not parse_vp8_descriptor(bytes([0x90, 0x80, 0x55]) + DELTA).keyframe
    assert parse_vp8_descriptor(bytes([0x90, 0x80, 0x92, 0x34]) + KEY).keyframe


@pytest.mark.parametrize(
    ("codec", "payload"),
    [
        ("VP8", b""),
        ("VP8", bytes([0x10])),  # no VP8 payload after the descriptor
        ("VP8", bytes([0x90])),  # X=1, extension byte missing
        ("VP8", bytes([0x90, 0x00])),  # extension byte, then nothing
        ("VP8", bytes([0x90, 0x80])),  # I=1, picture id missing
        ("VP8", bytes([0x90, 0x80, 0x80])),  # M=1, second picture id byte missing
        ("VP8", bytes([0x90, 0x80, 0x92, 0x34])),  # complete descriptor, no payload
        ("VP8", bytes([0x90, 0x40])),  # L=1, TL0PICIDX missing
        ("VP8", bytes([0x90, 0x20])),  # T=1, TID byte missing
        ("VP8", bytes([0x90, 0x10])),  # K=1, KEYIDX byte missing
        ("VP8", bytes([0x90, 0xF0, 0x81, 0x02, 0xAB])),  # all fields, TID/KEYIDX byte missing
        ("VP8", bytes([0x90, 0xF0, 0x81, 0x02, 0xAB, 0xB1])),  # all fields, no payload
        ("VP9", b""),
        ("VP9", bytes([0x80])),  # I=1, picture id missing
        ("VP9", bytes([0x80, 0x80])),  # M=1, second byte missing
        ("VP9", bytes([0x20])),  # L=1, layer indices missing
        ("VP9", bytes([0x20, 0x00])),  # L=1 F=0, TL0PICIDX missing
        ("VP9", bytes([0xA0, 0x81, 0x02, 0x00])),  # picture id and layer byte, no TL0PICIDX
        ("VP9", bytes([0x50])),  # P=1 F=1, P_DIFF missing
        ("VP9", bytes([0x50, 0x03])),  # N=1, second P_DIFF missing
        ("VP9", bytes([0x50, 0x03, 0x03, 0x03, 0x02])),  # four P_DIFFs
        ("VP9", bytes([0x02])),  # V=1, SS missing
        ("VP9", bytes([0x02, 0x10, 0x01, 0x40, 0x00])),  # Y=1, height truncated
        ("VP9", bytes([0x02, 0x50, 0x01, 0x40, 0x00, 0xB4])),  # N_S=2 Y=1, one of three sizes
        ("VP9", bytes([0x02, 0x08])),  # G=1, N_G missing
        ("VP9", bytes([0x02, 0x08, 0x02, 0x00])),  # N_G=2, second picture missing
        ("VP9", bytes([0x02, 0x08, 0x01, 0x08, 0x01])),  # R=2, second P_DIFF missing
        ("VP9", VP9_L3T3_KEY_START[:-1]),  # the picture group's last byte missing
    ],
)
def test_truncated_or_malformed_input_raises_codec_error(codec: str, payload: bytes) -> None:
    with pytest.raises(CodecError):
        PARSE[codec](payload)


# fmt: off
@pytest.mark.parametrize(
    ("codec", "payload", "fields", "expected"),
    [
        # 15-bit picture id and TL0PICIDX, together and alone; both wrap
        ("VP8", VP8_ALL, {"picture_id": 0x7ABC, "tl0picidx": 0x12},
         bytes([0x90, 0xF0, 0xFA, 0xBC, 0x12, 0xB1]) + DELTA),
        ("VP8", VP8_ALL, {"picture_id": 5}, bytes([0x90, 0xF0, 0x80, 0x05, 0xAB, 0xB1]) + DELTA),
        ("VP8", VP8_ALL, {"tl0picidx": 0}, bytes([0x90, 0xF0, 0x81, 0x02, 0x00, 0xB1]) + DELTA),
        ("VP8", bytes([0x90, 0x80, 0x81, 0x02]) + KEY, {"picture_id": 0x8000 + 3},
         bytes([0x90, 0x80, 0x80, 0x03]) + KEY),
        ("VP9", VP9_L3T3_KEY_START + FRAME, {"picture_id": 0x7001, "tl0picidx": 0xC8},
         bytes([0xAA, 0xF0, 0x01, 0x00, 0xC8]) + VP9_L3T3_KEY_START[5:] + FRAME),
        ("VP9", VP9_L3T3_KEY_START + FRAME, {"picture_id": 0x8000 + 2},
         bytes([0xAA, 0x80, 0x02]) + VP9_L3T3_KEY_START[3:] + FRAME),
        ("VP9", VP9_L3T3_KEY_START + FRAME, {"tl0picidx": 0x100 + 6},
         bytes([0xAA, 0xB0, 0x39, 0x00, 0x06]) + VP9_L3T3_KEY_START[5:] + FRAME),
        # a 7-bit picture id keeps its width and wraps
        ("VP8", bytes([0x90, 0xC0, 0x55, 0x09]) + KEY, {"picture_id": 0x1FF, "tl0picidx": 0x1FE},
         bytes([0x90, 0xC0, 0x7F, 0xFE]) + KEY),
        ("VP8", bytes([0x90, 0xC0, 0x55, 0x09]) + KEY, {"picture_id": 0x80},
         bytes([0x90, 0xC0, 0x00, 0x09]) + KEY),
        ("VP9", bytes([0xEC, 0x55, 0x53, 0x7E]) + FRAME, {"picture_id": 0x1FF, "tl0picidx": 0x11},
         bytes([0xEC, 0x7F, 0x53, 0x11]) + FRAME),
        ("VP9", bytes([0xEC, 0x55, 0x53, 0x7E]) + FRAME, {"picture_id": 0x80},
         bytes([0xEC, 0x00, 0x53, 0x7E]) + FRAME),
        # absent fields stay absent
        ("VP8", bytes([0x10]) + KEY, {"picture_id": 9, "tl0picidx": 9}, bytes([0x10]) + KEY),
        # picture id present, TL0PICIDX absent: only the picture id changes
        ("VP8", bytes([0x90, 0xA0, 0x11, 0x40]) + DELTA, {"picture_id": 0x22, "tl0picidx": 9},
         bytes([0x90, 0xA0, 0x22, 0x40]) + DELTA),
        # TL0PICIDX present, picture id absent: TL0PICIDX right after the extension byte
        ("VP8", bytes([0x90, 0x60, 0x07, 0x80]) + KEY, {"picture_id": 0x22, "tl0picidx": 0x08},
         bytes([0x90, 0x60, 0x08, 0x80]) + KEY),
        # flexible mode: no TL0PICIDX to write; P_DIFFs untouched
        ("VP9", bytes([0xF8, 0x80, 0x07, 0x20, 0x03, 0x05, 0xFE]) + FRAME,
         {"picture_id": 0x0101, "tl0picidx": 9},
         bytes([0xF8, 0x81, 0x01, 0x20, 0x03, 0x05, 0xFE]) + FRAME),
        # no picture id: TL0PICIDX right after the layer byte
        ("VP9", bytes([0x28, 0xEE, 0xFF]) + FRAME, {"picture_id": 1, "tl0picidx": 0x10},
         bytes([0x28, 0xEE, 0x10]) + FRAME),
        ("VP9", bytes([0x0C]) + FRAME, {"picture_id": 1, "tl0picidx": 1}, bytes([0x0C]) + FRAME),
        # nothing asked: the payload comes back unchanged
        ("VP8", bytes([0x90, 0x60, 0x07, 0x80]) + KEY, {}, bytes([0x90, 0x60, 0x07, 0x80]) + KEY),
        ("VP9", VP9_L3T3_KEY_START + FRAME, {}, VP9_L3T3_KEY_START + FRAME),
    ],
)
# fmt: on
def test_rewrite_exact_bytes(
    codec: str, payload: bytes, fields: dict[str, int], expected: bytes
) -> None:
    d = PARSE[codec](payload)
    out = REWRITE[codec](payload, d, **fields)
    assert out == expected
    again = PARSE[codec](out)
    assert (again.picture_id_bits, again.size) == (d.picture_id_bits, d.size)
    if d.picture_id is not None and "picture_id" in fields:
        assert again.picture_id == fields["picture_id"] & ((1 << d.picture_id_bits) - 1)
    if d.tl0picidx is not None and "tl0picidx" in fields:
        assert again.tl0picidx == fields["tl0picidx"] & 0xFF


@pytest.mark.parametrize(
    ("codec", "payload", "keep", "fields"),
    [
        ("VP8", VP8_ALL, 4, {"picture_id": 1}),
        ("VP9", bytes([0xEC, 0x81, 0x02, 0x53, 0x7E]), 3, {"tl0picidx": 1}),
    ],
)
def test_rewrite_rejects_a_payload_shorter_than_its_descriptor(
    codec: str, payload: bytes, keep: int, fields: dict[str, int]
) -> None:
    d = PARSE[codec](payload)
    with pytest.raises(CodecError):
        REWRITE[codec](payload[:keep], d, **fields)


def _vp8_invariants(d: Any, payload: bytes) -> None:
    assert d.size < len(payload)  # a VP8 payload header follows
    assert 0 <= d.partition_index <= 7


def _vp9_invariants(d: Any, payload: bytes) -> None:
    assert len(d.reference_diffs) <= 3
    assert 0 <= d.tid <= 7 and 0 <= d.sid <= 7


INVARIANTS = {"VP8": _vp8_invariants, "VP9": _vp9_invariants}


@pytest.mark.parametrize("codec", ["VP8", "VP9"])
@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=48))
def test_fuzz_parser_only_raises_codec_error(codec: str, payload: bytes) -> None:
    try:
        d = PARSE[codec](payload)
    except CodecError:
        return
    assert 1 <= d.size <= len(payload)
    assert d.picture_id_bits in (0, 7, 15)
    assert (d.picture_id is None) == (d.picture_id_bits == 0)
    INVARIANTS[codec](d, payload)


@pytest.mark.parametrize("codec", ["VP8", "VP9"])
@settings(max_examples=500, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=48),
    picture_id=st.integers(min_value=0, max_value=0xFFFF),
    tl0picidx=st.integers(min_value=0, max_value=0xFF),
)
def test_fuzz_rewrite_changes_only_the_rewritten_fields(
    codec: str, payload: bytes, picture_id: int, tl0picidx: int
) -> None:
    try:
        d = PARSE[codec](payload)
    except CodecError:
        return
    out = REWRITE[codec](payload, d, picture_id=picture_id, tl0picidx=tl0picidx)
    assert len(out) == len(payload)
    assert out[0] == payload[0]
    assert out[d.size :] == payload[d.size :]
    mask = (1 << d.picture_id_bits) - 1
    expected = dataclasses.replace(
        d,
        picture_id=None if d.picture_id is None else picture_id & mask,
        tl0picidx=None if d.tl0picidx is None else tl0picidx,
    )
    assert PARSE[codec](out) == expected
