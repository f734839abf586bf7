import pytest

from sfu.rtp.packet import (
    RtpError,
    build_rtp,
    first_extension_offset,
    is_rtcp,
    parse_rtp,
    serialize_extensions,
    unwrap_rtx,
    wrap_rtx,
)

# A VP8 packet as Chromium sends it: one-byte extensions (abs-send-time id 2, mid id 4)
CHROMIUM_PACKET = bytes.fromhex(
    "90e01234"
    "00bc614e"
    "deadbeef"  # V=2 X=1, M=1 PT=96, seq 0x1234, ts, ssrc
    "bede0002"
    "22123456"
    "40310000"  # profile, length 2 words: id2 len3, id4 len1 "1", pad
    "9080ff"  # payload
)


def test_parse_header_fields() -> None:
    h = parse_rtp(CHROMIUM_PACKET)
    assert h.marker is True
    assert h.payload_type == 96
    assert h.sequence_number == 0x1234
    assert h.timestamp == 0x00BC614E
    assert h.ssrc == 0xDEADBEEF
    assert h.extensions == {2: b"\x12\x34\x56", 4: b"1"}
    assert CHROMIUM_PACKET[h.payload_offset : h.payload_end] == b"\x90\x80\xff"


def test_parse_two_byte_extensions_and_padding() -> None:
    packet = bytes.fromhex("b00000010000000200000003100000020b03aabbcc000000") + (
        b"payload" + b"\x00\x00\x03"
    )
    h = parse_rtp(packet)
    assert h.extensions == {11: b"\xaa\xbb\xcc"}
    assert packet[h.payload_offset : h.payload_end] == b"payload"


def test_one_byte_id_zero_is_padding_whatever_its_length_bits() -> None:
    # found by fuzzing: 0x01 (id 0, "length" 2) was returned as an element with id 0, which
    # the serializer then wrote in the two-byte form, where 0 is padding again
    packet = bytes.fromhex("900000010000000200000003bede00020100211234000000") + b"p"
    h = parse_rtp(packet)
    assert h.extensions == {2: b"\x12\x34"}
    assert packet[h.payload_offset : h.payload_end] == b"p"


def test_first_extension_offset_finds_only_a_whole_two_byte_first_element() -> None:
    def packet(elements: list[tuple[int, bytes]]) -> bytes:
        return build_rtp(
            payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"xyz",
            extensions=elements,
        )  # fmt: skip

    one_byte = packet([(3, b"\x00\x07"), (2, b"abc")])
    at = first_extension_offset(one_byte, 3)
    assert at is not None and one_byte[at : at + 2] == b"\x00\x07"
    two_byte = packet([(3, b"\x00\x07"), (2, bytes(17))])  # 17 bytes: the two-byte form
    at = first_extension_offset(two_byte, 3)
    assert at is not None and two_byte[at : at + 2] == b"\x00\x07"
    assert first_extension_offset(one_byte, 2) is None  # not the first element
    assert first_extension_offset(packet([(3, b"\x00\x07\x09")]), 3) is None  # 3 bytes
    assert first_extension_offset(packet([]), 3) is None
    # found by fuzzing: an empty extension block, then payload bytes that look like an
    # element; the offset returned was the end of the packet
    assert first_extension_offset(bytes.fromhex("902d332b93f04d1a0a6c8359100000000100"), 1) is None


def test_csrc_list_is_skipped() -> None:
    packet = bytes.fromhex("8200000100000002000000030000001000000011") + b"xy"
    h = parse_rtp(packet)
    assert packet[h.payload_offset :] == b"xy"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00",
        bytes.fromhex("40000001000000020000000300"),  # version 1
        bytes.fromhex("8f0000010000000200000003"),  # 15 CSRCs, none present
        bytes.fromhex("900000010000000200000003bede"),  # truncated extension header
        bytes.fromhex("900000010000000200000003bede000500"),  # extension too long
        bytes.fromhex("a0000001000000020000000300"),  # padding of zero
        bytes.fromhex("a000000100000002000000030009"),  # padding longer than packet
        bytes.fromhex("900000010000000200000003bede00013f000000"),  # elem overflows
    ],
)
def test_malformed_packets_raise_rtp_error_only(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_serialize_extensions_picks_form() -> None:
    assert serialize_extensions([]) == b""
    one = serialize_extensions([(3, b"\x01\x02\x03")])
    assert one == bytes.fromhex("bede000132010203")
    two = serialize_extensions([(4, bytes(20))])
    assert two[:4] == bytes.fromhex("10000006")  # 2 + 20 bytes, padded to 24
    assert two[4:6] == bytes([4, 20])


def test_build_and_parse_roundtrip() -> None:
    packet = build_rtp(
        payload_type=100,
        sequence_number=65535,
        timestamp=1 << 31,
        ssrc=7,
        payload=b"abc",
        marker=True,
        extensions=[(1, b"0"), (4, bytes(18))],
    )
    h = parse_rtp(packet)
    assert (h.payload_type, h.sequence_number, h.timestamp, h.ssrc, h.marker) == (
        100,
        65535,
        1 << 31,
        7,
        True,
    )
    assert h.extensions == {1: b"0", 4: bytes(18)}
    assert packet[h.payload_offset : h.payload_end] == b"abc"


def test_rtx_roundtrip_restores_the_original_bytes() -> None:
    original = build_rtp(
        payload_type=96,
        sequence_number=1000,
        timestamp=5,
        ssrc=11,
        payload=b"media",
        marker=True,
        extensions=[(2, b"\x01\x02\x03")],
    )
    rtx = wrap_rtx(original, payload_type=97, sequence_number=42, ssrc=22)
    h = parse_rtp(rtx)
    assert (h.payload_type, h.sequence_number, h.ssrc, h.marker) == (97, 42, 22, True)
    assert rtx[h.payload_offset : h.payload_offset + 2] == (1000).to_bytes(2, "big")
    assert unwrap_rtx(rtx, h, payload_type=96, ssrc=11) == original


def test_unwrap_rtx_without_osn_is_an_error() -> None:
    rtx = build_rtp(payload_type=97, sequence_number=1, timestamp=0, ssrc=1, payload=b"\x00")
    with pytest.raises(RtpError):
        unwrap_rtx(rtx, parse_rtp(rtx), 96, 2)


def test_is_rtcp() -> None:
    assert is_rtcp(bytes([0x80, 200, 0, 0]))
    assert not is_rtcp(CHROMIUM_PACKET)
