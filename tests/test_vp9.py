"""VP9 payload descriptor (RFC 9628 section 4.2): exact-byte parsing and rewriting of what only
VP9 has; the cases VP8 and VP9 share (picture ids, truncation, rewriting, fuzzing) are
test_vp8_vp9.py's."""

from __future__ import annotations

import dataclasses

import pytest
from support.payloads import VP9_FRAME as FRAME
from support.payloads import VP9_L3T3_KEY_START
from support.payloads import VP9_PICTURE_GROUP as PICTURE_GROUP
from support.payloads import VP9_PICTURE_GROUP_PARSED as PICTURE_GROUP_PARSED
from support.payloads import VP9_RESOLUTIONS as RESOLUTIONS

from sfu.codecs.errors import CodecError
from sfu.codecs.vp9 import (
    Vp9Descriptor,
    Vp9ScalabilityStructure,
    parse_vp9_descriptor,
    rewrite_vp9_descriptor,
)


def test_minimal_descriptor() -> None:
    # B=1 E=1 only.
    d = parse_vp9_descriptor(bytes([0x0C]) + FRAME)
    assert d == Vp9Descriptor(
        picture_id=None,
        picture_id_bits=0,
        inter_picture_predicted=False,
        flexible=False,
        start_of_frame=True,
        end_of_frame=True,
        not_reference_for_upper=False,
        tid=0,
        switching_up=False,
        sid=0,
        inter_layer_dependent=False,
        tl0picidx=None,
        reference_diffs=[],
        ss=None,
        size=1,
        layer_indices=False,
    )
    assert not d.layer_indices_present
    assert d.keyframe


def test_first_byte_flags() -> None:
    # P=1 E=1 Z=1, no B.
    d = parse_vp9_descriptor(bytes([0x45]) + FRAME)
    assert d.inter_picture_predicted
    assert not d.start_of_frame
    assert d.end_of_frame
    assert d.not_reference_for_upper
    assert not d.flexible
    assert not d.keyframe
    # A descriptor alone (no frame data) still parses.
    assert parse_vp9_descriptor(bytes([0x08])).size == 1


def test_non_flexible_with_layer_indices_and_tl0picidx() -> None:
    # I=1 P=1 L=1 F=0 B=1 E=1; 15-bit picture id 0x0102; TID=2 U=1 SID=1 D=1; TL0PICIDX 0x7E.
    payload = bytes([0xEC, 0x81, 0x02, 0x53, 0x7E]) + FRAME
    d = parse_vp9_descriptor(payload)
    assert d == Vp9Descriptor(
        picture_id=0x0102,
        picture_id_bits=15,
        inter_picture_predicted=True,
        flexible=False,
        start_of_frame=True,
        end_of_frame=True,
        not_reference_for_upper=False,
        tid=2,
        switching_up=True,
        sid=1,
        inter_layer_dependent=True,
        tl0picidx=0x7E,
        reference_diffs=[],
        ss=None,
        size=5,
        layer_indices=True,
    )
    assert d.layer_indices_present
    assert not d.keyframe


def test_layer_indices_maximum_values() -> None:
    # L=1, no picture id; TID=7 U=0 SID=7 D=0; TL0PICIDX 0xFF.
    d = parse_vp9_descriptor(bytes([0x28, 0xEE, 0xFF]))
    assert (d.tid, d.switching_up, d.sid, d.inter_layer_dependent) == (7, False, 7, False)
    assert d.tl0picidx == 0xFF
    assert d.size == 3
    assert not d.keyframe  # sid != 0


@pytest.mark.parametrize(
    ("diff_bytes", "diffs"),
    [
        (bytes([0x02]), [1]),
        (bytes([0x09, 0x04]), [4, 2]),
        (bytes([0x03, 0x05, 0xFE]), [1, 2, 127]),
    ],
)
def test_flexible_mode_reference_diffs(diff_bytes: bytes, diffs: list[int]) -> None:
    # I=1 P=1 L=1 F=1 B=1; 15-bit picture id; TID=1 U=0 SID=0 D=0; P_DIFFs, no TL0PICIDX.
    payload = bytes([0xF8, 0x80, 0x07, 0x20]) + diff_bytes + FRAME
    d = parse_vp9_descriptor(payload)
    assert d.flexible
    assert d.inter_picture_predicted
    assert d.tid == 1
    assert d.tl0picidx is None
    assert d.reference_diffs == diffs
    assert d.size == 4 + len(diff_bytes)
    assert not d.keyframe


def test_flexible_mode_without_p_has_no_diffs() -> None:
    # I=1 L=1 F=1 B=1, P=0 (keyframe); SID=0: no P_DIFF and no TL0PICIDX.
    d = parse_vp9_descriptor(bytes([0xB8, 0x12, 0x00]) + FRAME)
    assert d.reference_diffs == []
    assert d.tl0picidx is None
    assert d.size == 3
    assert d.keyframe
    # SID=1, D=1: an inter-layer predicted keyframe layer is not the keyframe start.
    d = parse_vp9_descriptor(bytes([0xB8, 0x12, 0x03]) + FRAME)
    assert d.sid == 1
    assert d.inter_layer_dependent
    assert not d.keyframe


def test_flexible_mode_without_layer_indices() -> None:
    # I=1 P=1 F=1; P_DIFF 3.
    d = parse_vp9_descriptor(bytes([0xD8, 0x10, 0x06]) + FRAME)
    assert not d.layer_indices_present
    assert (d.tid, d.sid) == (0, 0)
    assert d.reference_diffs == [3]
    assert d.size == 3


def test_ss_with_resolutions_and_picture_group() -> None:
    # I=1 (7 bit) B=1 V=1; SS: N_S=2 Y=1 G=1.
    payload = bytes([0x8A, 0x01, 0x58]) + RESOLUTIONS + PICTURE_GROUP + FRAME
    d = parse_vp9_descriptor(payload)
    assert d.ss == Vp9ScalabilityStructure(
        spatial_layers=3,
        resolutions=[(320, 180), (640, 360), (1280, 720)],
        picture_group=PICTURE_GROUP_PARSED,
    )
    assert d.size == 3 + len(RESOLUTIONS) + len(PICTURE_GROUP)


def test_l1t3_ss_single_layer() -> None:
    # B=1 V=1; SS: N_S=0 Y=1 G=1; 1280x720; 4-picture group.
    payload = bytes([0x0A, 0x18, 0x05, 0x00, 0x02, 0xD0]) + PICTURE_GROUP + FRAME
    d = parse_vp9_descriptor(payload)
    assert d.ss == Vp9ScalabilityStructure(1, [(1280, 720)], PICTURE_GROUP_PARSED)
    assert d.size == 6 + len(PICTURE_GROUP)


def test_ss_without_y() -> None:
    # SS: N_S=1 Y=0 G=1, N_G=2: (TID 0, R=0), (TID 1 U=1, R=2 P_DIFFs 1 and 255).
    ss = bytes([0x28, 0x02, 0x00, 0x38, 0x01, 0xFF])
    d = parse_vp9_descriptor(bytes([0x0A]) + ss + FRAME)
    assert d.ss == Vp9ScalabilityStructure(2, [], [(0, False, []), (1, True, [1, 255])])
    assert d.size == 1 + len(ss)


def test_ss_without_y_or_g() -> None:
    # SS: N_S=7 Y=0 G=0, reserved bits set (ignored): one byte.
    d = parse_vp9_descriptor(bytes([0x0A, 0xE7]) + FRAME)
    assert d.ss == Vp9ScalabilityStructure(8, [], [])
    assert d.size == 2


def test_ss_with_empty_picture_group() -> None:
    # SS: N_S=0 Y=0 G=1 N_G=0.
    d = parse_vp9_descriptor(bytes([0x0A, 0x08, 0x00]) + FRAME)
    assert d.ss == Vp9ScalabilityStructure(1, [], [])
    assert d.size == 3


def test_chromium_l3t3_key_keyframe_start() -> None:
    # First packet of an L3T3_KEY keyframe, SID 0: I=1 P=0 L=1 F=0 B=1 E=0 V=1 Z=0,
    # 15-bit picture id 0x3039, TID=0 U=0 SID=0 D=0, TL0PICIDX 0x05, SS for 3 spatial layers
    # (320x180, 640x360, 1280x720) with the 3-temporal-layer picture group.
    payload = VP9_L3T3_KEY_START + FRAME
    d = parse_vp9_descriptor(payload)
    assert d == Vp9Descriptor(
        picture_id=0x3039,
        picture_id_bits=15,
        inter_picture_predicted=False,
        flexible=False,
        start_of_frame=True,
        end_of_frame=False,
        not_reference_for_upper=False,
        tid=0,
        switching_up=False,
        sid=0,
        inter_layer_dependent=False,
        tl0picidx=0x05,
        reference_diffs=[],
        ss=Vp9ScalabilityStructure(
            spatial_layers=3,
            resolutions=[(320, 180), (640, 360), (1280, 720)],
            picture_group=PICTURE_GROUP_PARSED,
        ),
        size=27,
        layer_indices=True,
    )
    assert d.keyframe
    assert d.layer_indices_present
    assert payload[d.size :] == FRAME
    # The same picture's SID 1 packet (D=1, no SS) is not the keyframe start.
    sid1 = parse_vp9_descriptor(bytes([0xA8, 0xB0, 0x39, 0x03, 0x05]) + FRAME)
    assert sid1.sid == 1
    assert sid1.inter_layer_dependent
    assert not sid1.keyframe


def test_layer_indices_present_for_hand_built_descriptors() -> None:
    base = parse_vp9_descriptor(bytes([0x0C]) + FRAME)
    built = dataclasses.replace(base, layer_indices=None)
    assert not built.layer_indices_present
    assert dataclasses.replace(built, sid=2).layer_indices_present
    assert dataclasses.replace(built, tl0picidx=0).layer_indices_present


def test_rewrite_reference_diffs_keeps_n_bits_and_length() -> None:
    # I, P, L, F, B; 15-bit picture id 20405; TID 0 SID 0; P_DIFFs 4 (N) and 2
    payload = bytes([0xF8, 0x80 | (20405 >> 8), 20405 & 0xFF, 0x00, (4 << 1) | 1, 2 << 1, 0xAB])
    d = parse_vp9_descriptor(payload)
    assert d.reference_diffs == [4, 2]
    out = rewrite_vp9_descriptor(payload, d, picture_id=20402, reference_diffs=[1, 2])
    assert len(out) == len(payload) and out[-1] == 0xAB
    r = parse_vp9_descriptor(out)
    assert (r.picture_id, r.reference_diffs, r.size) == (20402, [1, 2], d.size)
    with pytest.raises(CodecError):
        rewrite_vp9_descriptor(payload, d, reference_diffs=[0, 2])
