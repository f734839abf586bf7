"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-01)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.rtp import rtcp
from sfu.rtp.rtcp import RtcpError
from sfu.rtp.twcc import (
    MAX_PACKET_SIZE,
    TransportFeedbackBuilder,
    TransportFeedbackReport,
    parse_transport_feedback,
)

SENDER = 0x11223344
MEDIA = 0x55667788
#: Quantisation of a receive delta is 250 us, so an arrival is off by at most half of it
#: (plus the microsecond rounding of the input).
TOLERANCE = 0.000126


def _fci(data: bytes) -> bytes:
    packets = rtcp.parse_rtcp(data)
    assert len(packets) == 1
    feedback = packets[0]
    assert isinstance(feedback, rtcp.TransportFeedback)
    return feedback.fci


def _build(builder: TransportFeedbackBuilder) -> list[TransportFeedbackReport]:
    reports = []
    for data in builder.build():
        assert len(data) <= MAX_PACKET_SIZE
        assert len(data) % 4 == 0
        (feedback,) = rtcp.parse_rtcp(data)
        assert isinstance(feedback, rtcp.TransportFeedback)
        assert (feedback.sender_ssrc, feedback.media_ssrc) == (SENDER, MEDIA)
        reports.append(parse_transport_feedback(feedback.fci))
    return reports


def _check_roundtrip(events: list[tuple[int, float]]) -> list[TransportFeedbackReport]:
    """Feed (extended sequence number, arrival) events, build once, check what comes back."""
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    expected: dict[int, float] = {}
    for sequence, arrival in events:
        builder.on_packet(sequence & 0xFFFF, arrival)
        expected.setdefault(sequence & 0xFFFF, arrival)
    reports = _build(builder)
    assert reports
    first = min(sequence for sequence, _ in events)
    last = max(sequence for sequence, _ in events)
    reported = [sequence for report in reports for sequence, _ in report.packets]
    assert reported == [sequence & 0xFFFF for sequence in range(first, last + 1)]
    for report in reports:
        assert report.base_sequence == report.packets[0][0]
        for sequence, arrival in report.packets:
            if sequence in expected:
                assert arrival is not None, sequence
                assert abs(arrival - expected[sequence]) <= TOLERANCE, sequence
            else:
                assert arrival is None, sequence
    counts = [report.feedback_count for report in reports]
    assert counts == list(range(len(reports)))
    assert builder.build() == []
    return reports


def _chunks(fci: bytes) -> list[int]:
    """The raw status chunks of a feedback FCI (decoding only their count)."""
    count = struct.unpack_from("!H", fci, 2)[0]
    chunks: list[int] = []
    covered = 0
    pos = 8
    while covered < count:
        chunk = struct.unpack_from("!H", fci, pos)[0]
        chunks.append(chunk)
        pos += 2
        if not chunk & 0x8000:
            covered += chunk & 0x1FFF
        elif chunk & 0x4000:
            covered += 7
        else:
            covered += 14
    return chunks


# --- parsing packets from known sources -------------------------------------------------


def test_parse_wireshark_capture_run_length() -> None:
    # A Chrome feedback packet as decoded by Wireshark (olivermichel/webrtc-analysis,
    # test/include/data.h, twcc_pkt1): run length chunk of 9 small deltas, 1 byte padding.
    data = bytes.fromhex("afcd000700000001dd586eb6000100095e91100020091c0c2c380004000818" + "01")
    (feedback,) = rtcp.parse_rtcp(data)
    assert isinstance(feedback, rtcp.TransportFeedback)
    assert (feedback.sender_ssrc, feedback.media_ssrc) == (1, 0xDD586EB6)
    report = parse_transport_feedback(feedback.fci)
    assert report.base_sequence == 1
    assert report.feedback_count == 0
    assert report.reference_time == pytest.approx(6197520 * 0.064)
    reference = 6197520 * 0.064
    cumulative_ms = [7, 10, 21, 35, 35, 36, 36, 38, 44]
    assert [sequence for sequence, _ in report.packets] == list(range(1, 10))
    for (_, arrival), ms in zip(report.packets, cumulative_ms, strict=True):
        assert arrival == pytest.approx(reference + ms / 1000, abs=1e-9)


def test_parse_pion_two_bit_vector_large_delta_and_capped_run() -> None:
    # pion/rtcp transport_layer_cc_test.go, TestTransportLayerCC_Unmarshal "example6": a
    # two-bit vector (5 small, 1 lost, 1 large) then a run of 48 lost capped by the count.
    data = bytes.fromhex("afcd00079b74f61f9371dcbc853c000963f916b3d55200309baa6aaa7b010901")
    report = parse_transport_feedback(_fci(data))
    assert report.base_sequence == 34108
    assert report.feedback_count == 179
    reference = 6551830 * 0.064
    assert report.reference_time == pytest.approx(reference)
    deltas_us = [38750, 42500, 26500, 42500, 30750, None, 66250, None, None]
    elapsed = 0
    assert len(report.packets) == 9
    for index, ((sequence, arrival), delta) in enumerate(
        zip(report.packets, deltas_us, strict=True)
    ):
        assert sequence == 34108 + index
        if delta is None:
            assert arrival is None
        else:
            elapsed += delta
            assert arrival == pytest.approx(reference + elapsed / 1e6, abs=1e-9)


def test_parse_pion_two_large_run_length_chunks() -> None:
    # pion "example3": run of 2 large deltas then a run of 4 small deltas, no padding.
    data = bytes.fromhex("afcd0007fa17fa17193dd8bb0174000645b15a40400220041ffe1f9ad000d000")
    report = parse_transport_feedback(_fci(data))
    assert (report.base_sequence, report.feedback_count) == (372, 64)
    reference = 4567386 * 0.064
    elapsed_us = [2047500, 4070000, 4122000, 4122000, 4174000, 4174000]
    assert [sequence for sequence, _ in report.packets] == list(range(372, 378))
    for (_, arrival), elapsed in zip(report.packets, elapsed_us, strict=True):
        assert arrival == pytest.approx(reference + elapsed / 1e6, abs=1e-9)


def test_parse_pion_one_bit_vector() -> None:
    # pion TestTransportLayerCC_Marshal "example5": one-bit vector 1,1,1,0,1 then 9 lost.
    data = bytes.fromhex("afcd0006fa17fa17193dd8bb0001000e10636d00ba00100c0c100002")
    report = parse_transport_feedback(_fci(data))
    assert (report.base_sequence, report.feedback_count) == (1, 0)
    reference = 1074029 * 0.064
    received = {1: 4000, 2: 7000, 3: 10000, 5: 14000}
    assert [sequence for sequence, _ in report.packets] == list(range(1, 15))
    for sequence, arrival in report.packets:
        if sequence in received:
            assert arrival == pytest.approx(reference + received[sequence] / 1e6, abs=1e-9)
        else:
            assert arrival is None


def test_parse_wraps_sequence_numbers_and_negative_reference() -> None:
    # Base 65534, 4 packets (two-bit vector: small, large negative, lost, small), reference
    # time field 0xFFFFFF = -1 (signed), i.e. -64 ms.
    fci = bytes.fromhex("fffe0004ffffff07" + "d840" + "08" + "fff0" + "04")
    report = parse_transport_feedback(fci)
    assert report.reference_time == pytest.approx(-0.064)
    assert report.feedback_count == 7
    assert [sequence for sequence, _ in report.packets] == [65534, 65535, 0, 1]
    arrivals = [arrival for _, arrival in report.packets]
    assert arrivals[0] == pytest.approx(-0.064 + 0.002)
    assert arrivals[1] == pytest.approx(-0.064 + 0.002 - 0.004)
    assert arrivals[2] is None
    assert arrivals[3] == pytest.approx(-0.064 + 0.002 - 0.004 + 0.001)


# --- building exact bytes -----------------------------------------------------------------


def test_build_exact_bytes_by_hand() -> None:
    builder = TransportFeedbackBuilder(1, 2)
    builder.on_packet(10, 1.0)  # reference floor(1.0 / 0.064) = 15 (0.96 s); delta 40 ms
    builder.on_packet(11, 1.0015)  # +1.5 ms = 6 ticks
    builder.on_packet(13, 1.0100)  # 12 lost; +8.5 ms = 34 ticks
    builder.on_packet(14, 1.0050)  # -5 ms = -20 ticks: large delta
    expected = bytes.fromhex(
        "afcd0006"  # V=2 P=1 FMT=15, PT=205, length 6 (28 bytes)
        "00000001"  # sender SSRC
        "00000002"  # media SSRC
        "000a0005"  # base 10, 5 packets
        "00000f00"  # reference time 15, feedback count 0
        "d460"  # two-bit vector: 1 1 0 1 2 (0 0)
        "a00622"  # small deltas 160, 6, 34 ticks
        "ffec"  # large delta -20 ticks
        "01"  # one byte of padding
    )
    assert builder.build() == [expected]
    assert builder.build() == []


def test_build_reproduces_pion_example() -> None:
    # pion TestTransportLayerCC_Marshal "example4": 7 small deltas in a run length chunk,
    # feedback count 1, three bytes of padding.
    builder = TransportFeedbackBuilder(0xFA17FA17, 0x193DD8BB)
    builder.on_packet(3, 68737.9)
    assert len(builder.build()) == 1  # feedback count 0
    arrival = 1074030 * 0.064
    for sequence, delta_ms in zip(range(4, 11), [19, 9, 9, 4, 3, 3, 4], strict=True):
        arrival += delta_ms / 1000
        builder.on_packet(sequence, arrival)
    expected = bytes.fromhex("afcd0007fa17fa17193dd8bb0004000710636e0120074c2424100c0c10000003")
    assert builder.build() == [expected]


def test_feedback_count_increments_and_wraps() -> None:
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    counts = []
    for sequence in range(300):
        builder.on_packet(sequence, sequence * 0.01)
        (data,) = builder.build()
        counts.append(parse_transport_feedback(_fci(data)).feedback_count)
    assert counts == [n % 256 for n in range(300)]


# --- round trips --------------------------------------------------------------------------


def test_roundtrip_consecutive() -> None:
    reports = _check_roundtrip([(100 + n, 5.0 + n * 0.0031) for n in range(50)])
    assert len(reports) == 1


def test_roundtrip_gaps() -> None:
    events = [(n, 2.0 + n * 0.005) for n in range(200) if n % 7 not in (2, 3) and n % 31]
    _check_roundtrip(events)


def test_roundtrip_wraps_around() -> None:
    reports = _check_roundtrip([(65530 + n, 1.0 + n * 0.002) for n in range(12) if n != 7])
    assert reports[0].base_sequence == 65530
    assert [sequence for sequence, _ in reports[0].packets][5:8] == [65535, 0, 1]


def test_roundtrip_large_deltas() -> None:
    arrivals = [0.5, 0.6, 1.5, 9.0, 9.0001, 9.2]  # 100 ms, 900 ms, 7.5 s, ...
    reports = _check_roundtrip(list(enumerate(arrivals)))
    assert len(reports) == 1


def test_roundtrip_negative_deltas_reordering() -> None:
    # Packets sent 0..39 arrive with pairs swapped and some far behind.
    events = []
    for n in range(40):
        arrival = 3.0 + n * 0.004
        if n % 2:
            arrival -= 0.006
        if n % 10 == 9:
            arrival -= 0.5
        events.append((n, arrival))
    random.Random(1).shuffle(events)
    _check_roundtrip(events)


def test_delta_beyond_16_bits_splits_packets() -> None:
    # 10 s forward and 9 s backward do not fit a signed 16-bit count of 250 us.
    events = [(0, 1.0), (1, 11.0), (2, 11.01), (3, 2.0), (4, 2.001)]
    reports = _check_roundtrip(events)
    assert [report.base_sequence for report in reports] == [0, 1, 3]


def test_many_packets_split_under_size_limit() -> None:
    # Alternating small and large (negative) deltas: two bytes most of the time.
    events = [(n, 10.0 + n * 0.001 - (0.0005 if n % 2 else 0.0)) for n in range(3000)]
    events += [(n, 10.0 + n * 0.001 + (n % 5) * 0.07) for n in range(3000, 6000)]
    reports = _check_roundtrip(events)
    assert len(reports) > 3
    bases = [report.base_sequence for report in reports]
    assert bases == sorted(bases)


def test_long_runs_use_run_length_chunks() -> None:
    received = [(n, 1.0 + n * 0.001) for n in range(100)]
    received += [(n, 2.0 + n * 0.001) for n in range(5100, 5120)]
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    for sequence, arrival in received:
        builder.on_packet(sequence, arrival)
    (data,) = builder.build()
    fci = _fci(data)
    # 100 small, 5000 lost, then 1 large delta (~6 s) and 19 small: a two-bit vector
    # (large, small x6) and a run of 13 small.
    assert _chunks(fci) == [0x2000 | 100, 0x0000 | 5000, 0xE555, 0x2000 | 13]
    _check_roundtrip(received)


def test_loss_run_beyond_run_length_limit() -> None:
    # 10000 lost packets need two run length chunks (at most 8191 each).
    events = [(n, 0.25 + n * 0.001) for n in range(10)]
    events += [(10010 + n, 5.0 + n * 0.001) for n in range(10)]
    (report,) = _check_roundtrip(events)
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    for sequence, arrival in events:
        builder.on_packet(sequence, arrival)
    (data,) = builder.build()
    chunks = _chunks(_fci(data))
    # A one-bit vector (10 received, 4 lost), then runs of 8191 and 1805 lost.
    assert chunks[:3] == [0xBFF0, 0x1FFF, 10000 - 4 - 0x1FFF]
    assert len(chunks) == 5  # then a two-bit vector (large, small x6) and a run of 3 small


def test_late_packet_reopens_the_window() -> None:
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    for sequence, arrival in [(1, 1.0), (2, 1.01), (4, 1.03)]:
        builder.on_packet(sequence, arrival)
    (first,) = _build(builder)
    assert first.packets[2] == (3, None)
    builder.on_packet(3, 1.05)
    builder.on_packet(2, 1.5)  # duplicate: ignored
    (second,) = _build(builder)
    assert [sequence for sequence, _ in second.packets] == [3, 4]
    assert second.packets[0][1] == pytest.approx(1.05, abs=TOLERANCE)
    assert second.packets[1][1] == pytest.approx(1.03, abs=TOLERANCE)
    assert second.feedback_count == 1


def test_only_new_packets_are_reported() -> None:
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    assert builder.build() == []
    builder.on_packet(7, 0.1)
    assert len(builder.build()) == 1
    assert builder.build() == []
    builder.on_packet(7, 0.2)  # duplicate of a reported packet
    assert builder.build() == []
    builder.on_packet(9, 0.3)
    (report,) = _build(builder)
    assert report.packets[0] == (8, None)
    assert [sequence for sequence, _ in report.packets] == [8, 9]


def test_packets_too_far_behind_are_ignored() -> None:
    builder = TransportFeedbackBuilder(SENDER, MEDIA)
    builder.on_packet(30000, 1.0)
    builder.build()
    builder.on_packet(10000, 1.1)  # 20000 behind: outside the history
    assert builder.build() == []


@settings(max_examples=150, deadline=None)
@given(
    base=st.integers(0, 0xFFFF),
    offsets=st.lists(st.integers(0, 3000), min_size=1, max_size=300, unique=True),
    arrivals=st.lists(st.floats(0.0, 200.0), min_size=300, max_size=300),
)
def test_roundtrip_property(base: int, offsets: list[int], arrivals: list[float]) -> None:
    _check_roundtrip([(base + offset, arrivals[i]) for i, offset in enumerate(offsets)])


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fci",
    [
        b"",
        bytes.fromhex("0001000900"),  # header truncated
        bytes.fromhex("0001000000000000"),  # no packets
        bytes.fromhex("0001000900000000"),  # status count but no chunks
        bytes.fromhex("000100140000000020"),  # chunk truncated
        bytes.fromhex("0001ffff00000000" + "2009" + "010101010101010101" + "000001"),  # count
        bytes.fromhex("0001000300000000" + "2003" + "0101"),  # deltas truncated
        bytes.fromhex("0001000200000000" + "4002" + "0101" + "01"),  # large delta truncated
        bytes.fromhex("0001000100000000" + "6001" + "0000"),  # reserved symbol, run length
        bytes.fromhex("0001000200000000" + "f000" + "0000"),  # reserved symbol, vector
    ],
)
def test_malformed_raises_rtcp_error(fci: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_transport_feedback(fci)


@pytest.mark.parametrize(
    "data",
    [
        # pion "example8" and "example9": status count beyond the receive deltas.
        "afcd0005fa17fa1743032fa0009900033de8021720039401",
        "afcd0005fa17fa1743032fa0009900023de8021740029401",
    ],
)
def test_pion_truncated_examples(data: str) -> None:
    with pytest.raises(RtcpError):
        parse_transport_feedback(_fci(bytes.fromhex(data)))


def test_reserved_symbol_beyond_count_is_ignored() -> None:
    # The symbols of the last vector chunk beyond the status count are not packets.
    report = parse_transport_feedback(bytes.fromhex("0001000100000000" + "d3ff" + "05" + "000000"))
    assert report.packets == [(1, 5 / 4000)]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=128))
def test_fuzz_arbitrary_bytes_only_raise_rtcp_error(data: bytes) -> None:
    try:
        report = parse_transport_feedback(data)
    except RtcpError:
        return
    assert len(report.packets) == struct.unpack_from("!H", data, 2)[0]


@settings(max_examples=500, deadline=None)
@given(
    count=st.integers(0, 40),
    head=st.binary(min_size=6, max_size=6),
    tail=st.binary(max_size=64),
)
def test_fuzz_plausible_headers_only_raise_rtcp_error(count: int, head: bytes, tail: bytes) -> None:
    data = head[:2] + count.to_bytes(2, "big") + head[2:] + tail
    try:
        report = parse_transport_feedback(data)
    except RtcpError:
        return
    assert len(report.packets) == count
    for _, arrival in report.packets:
        assert arrival is None or isinstance(arrival, float)
