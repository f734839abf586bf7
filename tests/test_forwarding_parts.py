"""The forwarding core's parts, each on exact inputs: the sequence mapper (sequence numbers
and picture ids), the frame-decision cache, the lower chain, the extension writer, the
retransmitter; drop reasons counted per down track on a real capture; and the narrow
interfaces between a source and its down tracks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.captures import AV1, VP9, forward, load

from loadtest.capturefile import stream_parameters
from loadtest.looper import replay
from sfu.forwarding.chain import LowerChain
from sfu.forwarding.congestion import SendSideCongestion
from sfu.forwarding.decisions import FrameDecisions
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.drops import DropReason, Refusal
from sfu.forwarding.extension_writer import ExtensionWriter
from sfu.forwarding.history import RetransmissionBuffer
from sfu.forwarding.picture_ids import PictureIdMapper
from sfu.forwarding.retransmission import Retransmitter, RtxStream
from sfu.forwarding.sequence import DROPPED, SequenceMapper
from sfu.forwarding.source import MediaSource
from sfu.rtp import extensions as ext
from sfu.rtp.packet import parse_rtp, serialize_extensions

FORWARDING = Path(__file__).resolve().parents[1] / "sfu" / "forwarding"


# -- SequenceMapper --------------------------------------------------------------------------
def test_sequence_mapper_closes_dropped_gaps_and_keeps_lost_ones() -> None:
    m = SequenceMapper(16, 64)
    m.sync(100, 7)
    assert m.map(100) == 7
    m.drop(101)
    assert m.map(102) == 8  # 101 dropped: no gap
    assert m.map(104) == 10  # 103 lost upstream: a gap
    assert m.map(103) == 9  # ... and when it arrives late, it fills it
    assert m.map(101) is None  # dropped stays dropped
    assert m.map(102) == 8  # a duplicate maps the same
    assert m.last_out == 10 and m.highest == 104


def test_sequence_mapper_wraps_at_its_width() -> None:
    m = SequenceMapper(15, 256)
    m.sync(0x7FFE, 0x7FFE)
    assert [m.map(0x7FFE), m.map(0x7FFF), m.map(0)] == [0x7FFE, 0x7FFF, 0]
    m.drop(1)
    assert m.map(2) == 1
    assert m.map(0x7FFF) == 0x7FFF  # older, across the wrap


def test_sequence_mapper_retracts_the_newest_input() -> None:
    """A picture found dropped whole once the next one starts: its id goes to the next."""
    m = SequenceMapper(15, 256)
    assert m.map(10) == 10
    assert m.map(11) == 11
    m.drop(11)
    m.drop(11)  # once only
    assert m.offset_of(11) == DROPPED
    assert m.map(12) == 11
    m.drop(10)  # older: changes nothing
    assert m.map(10) == 10 and m.map(13) == 12


def test_sequence_mapper_forgets_beyond_its_ring() -> None:
    m = SequenceMapper(16, 16)
    for n in range(40):
        m.map(n)
    assert m.map(39 - 16) is None and m.map(39 - 15) == 39 - 15
    with pytest.raises(ValueError):
        SequenceMapper(7, 256)


# -- picture ids and VP9 references -------------------------------------------------------------
def test_reference_diffs_follow_the_renumbering() -> None:
    ids = PictureIdMapper()
    assert ids.map(100, 15, True) == 100
    assert ids.map(101, 15, False) == 101  # not forwarded ...
    assert ids.map(102, 15, True) == 101  # ... so dropped whole once 102 starts
    assert ids.renumbered_from == 102
    # 102 references 100 (P_DIFF 2): 1 in the new numbering; 101 (dropped): unresolvable
    assert ids.reference_diffs(102, [2]) == [1]
    assert ids.reference_diffs(102, [1]) is None
    # a reference to a picture never seen keeps its distance
    assert ids.reference_diffs(102, [90]) == [90]
    ids.keyframe()
    diffs = [1, 2]
    assert ids.reference_diffs(102, diffs) is diffs  # nothing reaches past a keyframe


def test_pictures_dropped_before_the_first_forwarded_one_leave_the_publishers_ids() -> None:
    # two subscribers that join at different pictures, both waiting for a keyframe (at 104)
    early, late = PictureIdMapper(), PictureIdMapper()
    for pid in range(100, 104):
        assert early.map(pid, 15, False) == pid
    assert late.map(103, 15, False) == 103
    for ids in (early, late):
        # nothing was forwarded yet: nothing to be continuous with, no renumbering
        assert ids.map(104, 15, True) == 104
        assert ids.renumbered_from is None
        # from the first forwarded picture on, what is dropped whole is closed up
        assert ids.map(105, 15, False) == 105
        assert ids.map(106, 15, True) == 105
    assert early.renumbered_from == late.renumbered_from == 106


def test_picture_ids_of_another_width_start_a_new_numbering() -> None:
    ids = PictureIdMapper()
    assert ids.map(5, 15, True) == 5
    assert ids.map(126, 7, True) == 126
    assert ids.map(127, 7, False) == 127
    assert ids.map(0, 7, True) == 127  # 127 dropped whole; the 7-bit id wraps


# -- frame decisions and the lower chain --------------------------------------------------------
def test_frame_decisions_are_remembered_by_frame_number() -> None:
    decisions = FrameDecisions()
    decisions.record(7, True)
    decisions.record(8, False)
    assert decisions.decided(7) and decisions.forwarded(7)
    assert decisions.decided(8) and not decisions.forwarded(8)
    assert not decisions.decided(9) and not decisions.forwarded(9)
    decisions.record(7 + 512, False)  # the same slot, a later frame
    assert not decisions.decided(7) and not decisions.forwarded(7)


def test_the_lower_chain_is_kept_only_whole_and_ends_at_a_late_frame() -> None:
    chain = LowerChain()
    chain.intact = True
    assert not chain.take(1)  # not kept: the chain ends
    assert not chain.intact
    chain.keep = chain.intact = True  # a keyframe
    assert chain.take(2) and chain.take(4)
    assert not chain.late(4)  # its picture has not ended
    chain.picture_end = 5
    assert not chain.late(3)  # not a chain frame
    assert chain.intact
    assert chain.late(4)  # a chain frame after its picture: the chain ends
    assert not chain.intact and not chain.take(6)


# -- the extension writer ---------------------------------------------------------------------
def test_the_extension_writer_builds_the_shared_block() -> None:
    writer = ExtensionWriter({ext.AUDIO_LEVEL: 9}, ext.SUBSCRIBER_EXTENSION_IDS)
    elements, block, head, tail = writer.build({9: b"\x85"}, None, 0.5)
    assert elements[0] == (5, b"\x00\x00") and elements[1] == (2, b"\x85")
    assert elements[2][0] == 3 and elements[2][1] == ext.abs_send_time(1 << 31)
    assert block == serialize_extensions(elements)
    assert head + b"\x00\x00" + tail == block and len(head) == 5
    # no transport-wide sequence number negotiated: no split
    plain = ExtensionWriter({}, {ext.ABS_SEND_TIME: 3})
    assert plain.build(None, None, 0.5)[2:] == (b"", b"")


def test_the_extension_writer_rewrites_the_active_decode_targets() -> None:
    result = forward(load(AV1), {0: (0, 0)})
    source = result.source
    layers = source.layers
    assert layers is not None and layers.structure is not None
    # at S0T0 the down track signals fewer active decode targets than the publisher's
    packets = [parse_rtp(p) for p in result.packets]
    dd_id = ext.SUBSCRIBER_EXTENSION_IDS[ext.DEPENDENCY_DESCRIPTOR]
    assert packets and all(dd_id in (p.extensions or {}) for p in packets)
    assert result.downtrack._dd_mask is not None
    assert result.downtrack._dd_mask == layers.active_decode_targets(0, 0)
    assert result.downtrack._dd_mask != (1 << layers.structure.decode_target_count) - 1


# -- the retransmitter ------------------------------------------------------------------------
def _packet(seq: int, twcc: bool = True) -> bytes:
    block = serialize_extensions([(5, b"\x00\x00")]) if twcc else b""
    header = bytes([0x90 if twcc else 0x80, 100]) + seq.to_bytes(2, "big") + bytes(8)
    return header + block + b"payload"


def test_the_retransmitter_resends_as_rtx_with_new_transport_wide_numbers() -> None:
    history = RetransmissionBuffer(64)
    for seq in (10, 11):
        history.store(seq, _packet(seq))
    sent: list[bytes] = []
    retransmitter = Retransmitter(history, sent.append, RtxStream(777, 101, 500))
    congestion = SendSideCongestion()
    congestion.sequence_number = 40
    retransmitter.congestion, retransmitter.twcc_id = congestion, 5
    size = retransmitter.answer([10, 11, 12], 1.0, 0.02)
    assert size == sum(len(p) for p in sent) and len(sent) == 2
    first, second = (parse_rtp(p) for p in sent)
    assert (first.ssrc, first.payload_type, first.sequence_number) == (777, 101, 500)
    assert second.sequence_number == 501
    assert first.extensions is not None and first.extensions[5] == (40).to_bytes(2, "big")
    assert second.extensions is not None and second.extensions[5] == (41).to_bytes(2, "big")
    # the original sequence number leads the RTX payload (RFC 4588)
    assert sent[0][first.payload_offset : first.payload_offset + 2] == (10).to_bytes(2, "big")
    assert retransmitter.refused[Refusal.NOT_IN_HISTORY] == 1
    assert retransmitter.retransmitted == 2 and retransmitter.retransmitted_bytes == size
    # the layer policy, asked per packet
    assert retransmitter.answer([10], 2.0, 0.02, keeps=lambda seq, now: False) == 0
    assert retransmitter.refused[Refusal.LAYER] == 1


# -- drop reasons ----------------------------------------------------------------------------
def test_every_dropped_packet_is_counted_by_reason() -> None:
    result = forward(load(VP9), {0: (0, 0)})
    downtrack = result.downtrack
    drops = downtrack.stats()["drops"]
    assert set(drops) == {reason.name.lower() for reason in DropReason}
    assert sum(drops.values()) == downtrack.packets_dropped > 0
    assert drops["layer"] > len(result.packets)  # S0T0 of three spatial, three temporal
    top = forward(load(VP9), {0: (2, 2)})
    assert top.downtrack.drops[DropReason.LAYER] < downtrack.drops[DropReason.LAYER]


def test_a_paused_down_track_counts_its_drops_as_paused() -> None:
    capture = load(VP9)
    source = MediaSource(
        "pub:1", stream_parameters(capture.info), send_rtcp=lambda _: None, rtcp_ssrc=1
    )
    sent: list[bytes] = []
    downtrack = DownTrack(source, ssrc=1, payload_type=100, send=sent.append)
    source.attach(downtrack, 0.0)
    assert downtrack.selector is not None
    downtrack.selector.pause()
    for t, packet in replay(capture, 1):
        source.on_rtp(packet, parse_rtp(packet), t)
    assert not sent
    assert downtrack.drops[DropReason.PAUSED] == downtrack.packets_dropped > 100


# -- interfaces ------------------------------------------------------------------------------
def _imports(module: str) -> set[str]:
    tree = ast.parse((FORWARDING / f"{module}.py").read_text())
    return {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
    }


def test_a_source_and_its_down_tracks_meet_only_through_the_interfaces() -> None:
    assert "downtrack" not in _imports("source")
    assert "source" not in _imports("downtrack")
    assert "interfaces" in _imports("source") and "interfaces" in _imports("downtrack")
    # a down track asks for keyframes through a method, never by writing its source's fields
    tree = ast.parse((FORWARDING / "downtrack.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    assert target.value.attr != "source", ast.unparse(target)


# -- transport feedback a subscriber may send ---------------------------------------------
def test_feedback_claiming_more_statuses_than_packets_sent_is_refused_unparsed() -> None:
    """A 24-byte feedback can claim 65535 packet statuses (~28 ms of parsing and estimation
    each, 500 a second would stall the server): the statuses reported are bounded by the
    packets sent; beyond, the feedback is refused whole, before parsing; honest feedback,
    built by the project's receiver-side builder for what was sent, is taken."""
    import struct

    from sfu.rtp import rtcp
    from sfu.rtp.twcc import TransportFeedbackBuilder

    congestion = SendSideCongestion()
    builder = TransportFeedbackBuilder(1, 2)
    now = 0.0
    for _ in range(300):
        seq = congestion.stamp(1200, now)
        builder.on_packet(seq, now + 0.02)
        now += 0.004
    hostile = struct.pack("!HHI", 0, 65535, 0) + struct.pack("!H", 8191) * 8 + b"\x00\x07"
    before = congestion.estimator.estimate
    for _ in range(1000):
        congestion.on_transport_feedback(hostile, now)
    assert congestion.refused_feedback == 1000 and congestion.malformed_feedback == 0
    assert not congestion.feedback_seen and congestion.estimator.estimate == before
    honest = [p for data in builder.build() for p in rtcp.parse_rtcp(data)]
    assert honest and all(isinstance(p, rtcp.TransportFeedback) for p in honest)
    for packet in honest:
        assert isinstance(packet, rtcp.TransportFeedback)
        congestion.on_transport_feedback(packet.fci, now + 0.05)
    assert congestion.feedback_seen and congestion.refused_feedback == 1000
    # the credit spent, the same honest report again is refused: a loss reported twice at
    # most, not a report replayed without end
    for _ in range(3):
        for packet in honest:
            assert isinstance(packet, rtcp.TransportFeedback)
            congestion.on_transport_feedback(packet.fci, now + 0.1)
    assert congestion.refused_feedback > 1000


def test_extension_remap_renumbers_for_a_subscriber_with_ids_of_its_own() -> None:
    from sfu.forwarding.extension_writer import ExtensionRemap
    from sfu.rtp import extensions as ext
    from sfu.rtp.packet import parse_extension_block, serialize_extensions

    sfu_ids = ext.SUBSCRIBER_EXTENSION_IDS
    # Chromium's offer: abs-send-time 2, transport-cc 3, mid 4, no dependency descriptor
    viewer = {ext.ABS_SEND_TIME: 2, ext.TRANSPORT_WIDE_CC: 3, ext.MID: 4}
    assert ExtensionRemap.needed(viewer, sfu_ids)
    assert not ExtensionRemap.needed(dict(sfu_ids), sfu_ids)
    remap = ExtensionRemap(viewer, sfu_ids)
    block = serialize_extensions(
        [
            (sfu_ids[ext.TRANSPORT_WIDE_CC], b"\x00\x00"),
            (sfu_ids[ext.ABS_SEND_TIME], b"\x01\x02\x03"),
            (sfu_ids[ext.DEPENDENCY_DESCRIPTOR], b"\x80\x01\x02"),
        ]
    )
    out, head, tail = remap(block)
    assert parse_extension_block(out) == {3: b"\x00\x00", 2: b"\x01\x02\x03"}
    # the transport-wide sequence number's two bytes sit between head and tail
    assert head + b"\x00\x00" + tail == out and len(head) == 5
    # without transport-cc negotiated: no head and tail
    plain = ExtensionRemap({ext.ABS_SEND_TIME: 7}, sfu_ids)
    out, head, tail = plain(block)
    assert parse_extension_block(out) == {7: b"\x01\x02\x03"} and head == tail == b""
