import pytest
from aiortc.rtp import RtcpPacket as AiortcRtcp

from sfu.rtp import rtcp


def test_sender_report_roundtrip_and_aiortc_agrees() -> None:
    block = rtcp.ReportBlock(
        ssrc=5,
        fraction_lost=12,
        packets_lost=-3,
        highest_sequence=70000,
        jitter=9,
        lsr=0x12345678,
        dlsr=65536,
    )
    sr = rtcp.SenderReport(
        ssrc=1,
        ntp_timestamp=(3 << 32) | 7,
        rtp_timestamp=90000,
        packet_count=10,
        octet_count=1000,
        reports=[block],
    )
    data = rtcp.build_sr(sr)
    assert rtcp.parse_rtcp(data) == [sr]
    theirs = AiortcRtcp.parse(data)[0]
    assert theirs.sender_info.ntp_timestamp == (3 << 32) | 7
    assert theirs.reports[0].packets_lost == -3


def test_receiver_report_roundtrip() -> None:
    rr = rtcp.ReceiverReport(
        ssrc=9,
        reports=[
            rtcp.ReportBlock(
                ssrc=5, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0, dlsr=0
            )
        ],
    )
    assert rtcp.parse_rtcp(rtcp.build_rr(rr)) == [rr]


def test_nack_packs_pid_and_bitmask() -> None:
    data = rtcp.build_nack(1, 2, [100, 101, 116, 117, 65535, 0])
    (nack,) = rtcp.parse_rtcp(data)
    assert isinstance(nack, rtcp.Nack)
    assert sorted(nack.lost) == sorted([100, 101, 116, 117, 65535, 0])
    theirs = AiortcRtcp.parse(data)[0]
    assert sorted(x & 0xFFFF for x in theirs.lost) == sorted(nack.lost)  # aiortc does not wrap


def test_nack_items_beyond_the_cap_are_counted_not_listed() -> None:
    """The cap holds for the whole compound packet: the first items are listed, in order
    (PID, then its bitmask's bits from the lowest), the rest counted, pairs not expanded."""
    first = rtcp.build_nack(1, 2, [100, 101, 116, 200])  # pairs (100, bits 0 and 15), (200)
    second = rtcp.build_nack(1, 3, list(range(300, 334)))  # (300, all 16), (317, all 16)
    third = rtcp.build_nack(1, 4, [7])
    a, b, c = rtcp.parse_rtcp(first + second + third, max_nack_items=6)
    assert isinstance(a, rtcp.Nack) and isinstance(b, rtcp.Nack) and isinstance(c, rtcp.Nack)
    assert (a.lost, a.omitted) == ([100, 101, 116, 200], 0)
    assert (b.lost, b.omitted) == ([300, 301], 32)  # 15 of the first pair, 17 of the second
    assert (c.lost, c.omitted) == ([], 1)
    # no cap: everything listed (a whole history of 1024, as an attacker asks for it)
    (full,) = rtcp.parse_rtcp(rtcp.build_nack(1, 2, [(65000 + i) & 0xFFFF for i in range(1024)]))
    assert isinstance(full, rtcp.Nack) and len(full.lost) == 1024 and full.omitted == 0
    assert full.lost == [(65000 + i) & 0xFFFF for i in range(1024)]
    (none,) = rtcp.parse_rtcp(rtcp.build_nack(1, 2, list(range(1024))), max_nack_items=0)
    assert isinstance(none, rtcp.Nack) and (none.lost, none.omitted) == ([], 1024)


def test_pli_fir_remb_bye_sdes() -> None:
    data = (
        rtcp.build_pli(1, 2)
        + rtcp.build_fir(1, 3, 7)
        + rtcp.build_remb(1, 2_500_000, [2, 3])
        + rtcp.build_sdes_cname(1, "cname")
        + rtcp.build_bye([1])
    )
    packets = rtcp.parse_rtcp(data)
    assert packets[0] == rtcp.Pli(1, 2)
    assert packets[1] == rtcp.Fir(1, [(3, 7)])
    remb = packets[2]
    assert isinstance(remb, rtcp.Remb) and remb.ssrcs == [2, 3]
    assert abs(remb.bitrate - 2_500_000) < 2_500_000 / 1000
    assert packets[3] == rtcp.Bye([1])  # SDES is skipped


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",
        bytes([0x40, 200, 0, 0]),
        bytes([0x81, 200, 0, 6]) + bytes(8),  # claims more than there is
        bytes([0x80, 200, 0, 1]) + bytes(4),  # SR too short
        bytes([0x81, 201, 0, 1]) + bytes(4),  # RR with a missing block
        bytes([0x8F, 206, 0, 4]) + bytes(8) + b"REMB" + bytes([5, 0, 0, 0]),  # ssrcs missing
    ],
)
def test_malformed_rtcp_raises_rtcp_error_only(data: bytes) -> None:
    with pytest.raises(rtcp.RtcpError):
        rtcp.parse_rtcp(data)
