"""The load tester's frame checker: frames are decodable when complete with their references,
and a frame waits for a reference that a retransmission may still complete."""

from __future__ import annotations

from loadtest.capturefile import read_capture
from loadtest.checker import WAIT_FOR_REFERENCE, FrameChecker
from loadtest.scenario import CAPTURES, VIDEO_CAPTURES
from sfu.codecs.vp9 import parse_vp9_descriptor
from sfu.rtp.extensions import DEPENDENCY_DESCRIPTOR
from sfu.rtp.packet import parse_rtp


def _packets() -> tuple[FrameChecker, list[tuple[float, bytes]], int]:
    """A checker for the S0 frames of the VP9 L3T3_KEY capture, the packets, and the index
    of a packet of an S0 T0 frame after the keyframe (later frames reference it)."""
    capture = read_capture(CAPTURES / VIDEO_CAPTURES["VP9"])
    checker = FrameChecker("VP9", capture.info.extensions[DEPENDENCY_DESCRIPTOR])
    s0 = []
    for t, packet in capture.packets:
        h = parse_rtp(packet)
        d = parse_vp9_descriptor(packet[h.payload_offset : h.payload_end])
        if d.sid == 0:
            s0.append((t, packet, d))
    victim = next(
        i for i, (t, _, d) in enumerate(s0) if t > 0.5 and d.tid == 0 and d.start_of_frame
    )
    return checker, [(t, p) for t, p, _ in s0], victim


def _feed(checker: FrameChecker, packet: bytes, now: float) -> None:
    checker.add(packet, parse_rtp(packet), now)


def test_every_frame_of_a_clean_stream_decodes() -> None:
    checker, packets, _ = _packets()
    for t, packet in packets:
        _feed(checker, packet, t)
    assert checker.frames_decodable > 100
    assert checker.frames_undecodable == 0
    assert checker.freezes == 0


def test_a_frame_waits_for_its_retransmitted_reference() -> None:
    checker, packets, victim = _packets()
    for i, (t, packet) in enumerate(packets):
        if i == victim:
            continue
        _feed(checker, packet, t)
        if i == victim + 20:  # the retransmission comes late, out of order
            _feed(checker, packets[victim][1], t)
    assert checker.frames_undecodable == 0
    assert not checker.keyframe_wanted


def test_a_reference_that_never_comes_makes_its_dependents_undecodable() -> None:
    checker, packets, victim = _packets()
    end = 0.0
    for i, (t, packet) in enumerate(packets):
        if i != victim:
            _feed(checker, packet, t)
        end = t
    checker.expire(end + WAIT_FOR_REFERENCE + 0.1)
    assert checker.frames_undecodable > 0
    assert checker.keyframe_wanted
