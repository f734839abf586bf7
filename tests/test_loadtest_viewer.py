"""The simulated viewer's accounting (loadtest.viewer.PictureTally), fed exact sequences:
pictures painted and dropped, freezes as libwebrtc counts them, sizes, time to first frame,
switch-paint latency and the receiver_report it makes; then behind the frame checker, with
synthetic VP8 packets and with the committed captures less a packet, and through a
SimSubscriber's receive path."""

from __future__ import annotations

import struct

import pytest

from loadtest.capturefile import read_capture
from loadtest.checker import FrameChecker
from loadtest.looper import replay
from loadtest.scenario import CAPTURES, VIDEO_CAPTURES
from loadtest.viewer import MAX_SWITCH_PAINTS, PictureTally
from sfu.codecs.vp9 import parse_vp9_descriptor
from sfu.rtp.extensions import DEPENDENCY_DESCRIPTOR
from sfu.rtp.packet import parse_rtp

# -- the tally alone: pictures seen (a packet came) and painted (the checker said so) -----


def paint_at(times: list[float], tally: PictureTally | None = None) -> PictureTally:
    """A tally that saw and painted one picture at each of ``times``."""
    tally = tally or PictureTally("v")
    for n, at in enumerate(times):
        tally.add(3000 * n, at)
        tally.paint(3000 * n, 0, at)
    return tally


def test_pictures_painted() -> None:
    tally = PictureTally("v", joined_at=0.25)
    for n in range(3):
        tally.add(3000 * n, 1.0 + 0.033 * n)
        tally.add(3000 * n, 1.001 + 0.033 * n)  # more packets of it: nothing new
        tally.paint(3000 * n, 0, 1.01 + 0.033 * n)
    assert (tally.frames_decoded, tally.frames_dropped) == (3, 0)
    assert tally.first_frame_at == 1.01 and tally.last_frame_at == pytest.approx(1.076)
    assert tally.jitter_buffer_delay == pytest.approx(0.03)  # 10 ms from first packet, each
    # time to first frame, from joining (on the wire) and from the offer (results)
    assert tally.report(2.0)["first_frame"] == 0.76
    assert tally.result()["first_frame_s"] == 0.76
    # a track published after the join: the results count from its offer
    later = paint_at([1.01], PictureTally("v", joined_at=0.25, offered_at=0.5))
    assert (later.report(2.0)["first_frame"], later.result()["first_frame_s"]) == (0.76, 0.51)


def test_pictures_not_painted_are_dropped_when_a_later_one_is() -> None:
    tally = PictureTally("v")
    for n in range(4):
        tally.add(3000 * n, 1.0 + 0.033 * n)
    tally.paint(0, 0, 1.01)
    assert (tally.frames_decoded, tally.frames_dropped) == (1, 0)  # 1, 2, 3 may come yet
    tally.paint(9000, 0, 1.11)  # picture 3 does not need 1 and 2
    assert (tally.frames_decoded, tally.frames_dropped) == (2, 2)
    tally.paint(3000, 0, 1.2)  # too late: it was given up
    tally.add(6000, 1.2)  # a packet of a picture given up: nothing
    assert (tally.frames_decoded, tally.frames_dropped) == (2, 2)
    tally.add(12000, 1.3)
    tally.paint(15000, 0, 1.4)  # picture 5, of which no packet was seen first
    assert (tally.frames_decoded, tally.frames_dropped) == (3, 3)


def test_a_picture_no_packet_of_came_is_not_counted() -> None:
    tally = paint_at([1.0])
    tally.add(6000, 1.1)  # picture 1 (3000) never seen
    tally.paint(6000, 0, 1.1)
    assert (tally.frames_decoded, tally.frames_dropped) == (2, 0)


def test_timestamps_wrap() -> None:
    tally = PictureTally("v")
    for n, ts in enumerate([0xFFFFF000, 0xFFFFFC00, 0x00000800]):
        tally.add(ts, 1.0 + 0.033 * n)
    tally.paint(0xFFFFF000, 0, 1.01)
    tally.paint(0x00000800, 0, 1.1)  # after the wrap: newer, drops the one before
    assert (tally.frames_decoded, tally.frames_dropped) == (2, 1)
    tally.paint(0xFFFFFC00, 0, 1.2)  # older
    assert tally.frames_decoded == 2


def test_freezes_as_libwebrtc_counts_them() -> None:
    # five delays of 40 ms, then 250 ms: the average of the six (this one included) is
    # 75 ms, max(3 x 75, 75 + 150) = 225 ms <= 250: a freeze of 250 ms
    times = [1.0 + 0.04 * i for i in range(6)]
    tally = paint_at([*times, times[-1] + 0.25])
    assert tally.freeze_count == 1
    assert tally.total_freezes_duration == pytest.approx(0.25)
    # 200 ms instead: the average is 66.7 ms, the bound 216.7 ms: no freeze
    assert paint_at([*times, times[-1] + 0.2]).freeze_count == 0
    # fewer than five delays before it: not judged yet
    assert paint_at([1.0, 1.04, 1.08, 1.12, 2.0]).freeze_count == 0
    assert paint_at([1.0, 1.04, 1.08, 1.12, 1.16, 2.0]).freeze_count == 1


def test_the_average_is_over_the_last_30_delays() -> None:
    # 40 delays of 40 ms then 29 of 10 ms: the window holds one 40 ms delay at its start
    times = [0.04 * i for i in range(41)]
    times += [times[-1] + 0.01 * i for i in range(1, 30)]
    last = times[-1]
    # average of 28 x 10 ms, one 40 ms and the new 175 ms: 16.8 ms, bound 166.8 ms
    assert paint_at([*times, last + 0.175]).freeze_count == 1
    assert paint_at([*times, last + 0.16]).freeze_count == 0


def test_a_pause_is_not_a_freeze() -> None:
    tally = paint_at([1.0 + 0.04 * i for i in range(10)])
    tally.on_level(1.4, 0, 1280, 720, paused=True)
    tally.add(30000, 3.0)
    tally.paint(30000, 0, 3.0)
    assert tally.freeze_count == 0 and tally.frames_decoded == 11
    tally.add(33000, 4.0)  # after the first picture, gaps count again
    tally.paint(33000, 0, 4.0)
    assert tally.freeze_count == 1 and tally.total_freezes_duration == 1.0


def test_sizes_from_level_changed_or_the_bitstream() -> None:
    tally = PictureTally("v")
    tally.on_level(0.5, 1, 640, 360, paused=False)
    tally.paint(0, 1, 1.0)
    assert (tally.frame_width, tally.frame_height) == (640, 360)
    tally.paint(3000, 2, 1.033)  # no size known for S2: the last one stays
    assert tally.spatial == 2 and (tally.frame_width, tally.frame_height) == (640, 360)

    class Parser:
        resolutions = [(320, 180), (640, 360), (1280, 720)]

    tally.parser = Parser()  # type: ignore[assignment]
    tally.paint(6000, 2, 1.066)
    assert (tally.frame_width, tally.frame_height) == (1280, 720)


def test_switch_paint_latency() -> None:
    tally = PictureTally("v")
    tally.paint(0, 2, 1.0)
    tally.on_level(1.01, 2, 1280, 720, paused=False)  # the size painted: no switch
    tally.on_level(1.02, 1, 640, 360, paused=False)  # S2 -> S1
    tally.paint(3000, 2, 1.033)  # still S2
    tally.paint(6000, 1, 1.102)
    assert tally.switch_paints == [pytest.approx(0.082)]
    tally.on_level(1.2, 1, 640, 360, paused=False)  # S1 T0: the same size
    tally.paint(9000, 1, 1.25)
    assert len(tally.switch_paints) == 1
    # a switch superseded before it painted is not counted; the one after it is
    tally.on_level(1.3, 2, 1280, 720, paused=False)
    tally.on_level(1.35, 0, 320, 180, paused=False)
    tally.paint(12000, 0, 1.4)
    assert tally.switch_paints[1:] == [pytest.approx(0.05)]
    # painted before the message came (the server tells the switch as it makes it)
    tally.paint(15000, 1, 1.5)
    tally.on_level(1.51, 1, 640, 360, paused=False)
    assert tally.switch_paints[2:] == [0.0]
    # back to the layer painted before the switch painted: no switch
    tally.on_level(1.6, 2, 1280, 720, paused=False)
    tally.on_level(1.61, 1, 640, 360, paused=False)
    tally.paint(18000, 1, 1.7)
    assert len(tally.switch_paints) == 3
    # a pause cancels the switch under way
    tally.on_level(1.8, 0, 320, 180, paused=False)
    tally.on_level(1.85, 0, 320, 180, paused=True)
    tally.paint(21000, 0, 3.0)
    assert len(tally.switch_paints) == 3


def test_the_receiver_report_entry() -> None:
    from sfu.protocol import ReceiverReport

    tally = PictureTally("video-1", joined_at=0.5)
    tally.on_level(0.9, 0, 320, 180, paused=False)
    times = [1.0 + 0.033 * n for n in range(31)]
    for n, at in enumerate(times[:11]):
        tally.add(3000 * n, at)
        if n != 1:  # picture 1 is dropped
            tally.paint(3000 * n, 0, at)
    first = tally.report(1.5, element=(426, 240))
    assert first == {
        "track_id": "video-1",
        "frames_decoded": 10,
        "frames_dropped": 0,  # the network's loss, not a busy CPU's: results only
        "freeze_count": 0,
        "total_freezes_duration": 0.0,
        "jitter_buffer_delay": 0.0,
        "jitter_buffer_emitted_count": 10,
        "frame_width": 320,
        "frame_height": 180,
        "element_width": 426,
        "element_height": 240,
        "first_frame": 0.5,
        "switch_paints": [],
    }
    assert "frames_per_second" not in first  # a rate needs a report before
    assert tally.result()["frames_dropped"] == 1
    for n, at in enumerate(times[11:], start=11):
        tally.add(3000 * n, at)
        tally.paint(3000 * n, 0, at)
    second = tally.report(2.5)
    assert (second["frames_decoded"], second["frames_per_second"]) == (30, 20.0)
    # more switches than one report carries: S0 -> S1 -> S0 ..., each painted 50 ms later
    for n in range(MAX_SWITCH_PAINTS + 2):
        spatial = (n + 1) % 2
        tally.on_level(3.0 + n, spatial, 320 << spatial, 180 << spatial, paused=False)
        tally.paint(93000 + 3000 * n, spatial, 3.05 + n)
    third = tally.report(21.0)
    assert third["switch_paints"] == [0.05] * MAX_SWITCH_PAINTS
    assert len(tally.switch_paints) == MAX_SWITCH_PAINTS + 2
    assert tally.report(22.0)["switch_paints"] == []  # each reported once
    tracks = [first, second, third]
    ReceiverReport.model_validate({"type": "receiver_report", "tracks": tracks})


# -- behind the frame checker: synthetic VP8 packets, no dependency descriptor ------------

_RTP = struct.Struct("!BBHII")


def vp8(seq: int, ts: int, start: bool, marker: bool) -> bytes:
    """A VP8 packet (no descriptor extension): a keyframe's first packet says 640x360."""
    header = _RTP.pack(0x80, (0x80 if marker else 0) | 96, seq, ts, 1234)
    if start:  # frame tag (key frame, shown), start code, 14-bit width and height
        payload = b"\x10" + b"\x50\x01\x00\x9d\x01\x2a" + struct.pack("<HH", 640, 360)
    else:
        payload = b"\x00" + bytes(20)
    return header + payload


def pictures(count: int, packets: int = 3) -> list[tuple[bytes, float]]:
    """``count`` pictures of ``packets`` packets, 33 ms apart from 1 s."""
    out = []
    for n in range(count):
        for i in range(packets):
            out.append((vp8(packets * n + i, 3000 * n, i == 0, i == packets - 1), 1 + 0.033 * n))
    return out


def watched(codec: str, dd: int | None) -> tuple[FrameChecker, PictureTally]:
    """A checker and the tally it paints pictures for, as a SimSubscriber wires them."""
    checker = FrameChecker(codec, dd)
    tally = PictureTally("v", joined_at=0.0)
    tally.parser = checker.layers
    checker.on_picture = tally.paint
    return checker, tally


def receive(checker: FrameChecker, tally: PictureTally, packet: bytes, at: float) -> None:
    header = parse_rtp(packet)
    tally.add(header.timestamp, at)
    checker.add(packet, header, at)


def test_vp8_packets_complete_pictures() -> None:
    checker, tally = watched("VP8", None)
    for packet, at in pictures(5):
        receive(checker, tally, packet, at)
    assert (tally.frames_decoded, tally.frames_dropped) == (5, 0)
    assert (tally.frame_width, tally.frame_height) == (640, 360)
    assert tally.first_frame_at == 1.0


def test_vp8_a_packet_lost_then_resent() -> None:
    stream = pictures(4)
    lost_packet, _ = stream.pop(4)  # the middle packet of picture 1
    # resent before the next picture: painted late, nothing dropped
    checker, tally = watched("VP8", None)
    for n, (packet, at) in enumerate(stream):
        receive(checker, tally, packet, at)
        if n == 4:
            receive(checker, tally, lost_packet, 1.05)
    assert (tally.frames_decoded, tally.frames_dropped) == (4, 0)
    # resent after picture 2 was painted (no reference without a descriptor): dropped
    checker, tally = watched("VP8", None)
    for packet, at in stream:
        receive(checker, tally, packet, at)
    assert (tally.frames_decoded, tally.frames_dropped) == (3, 1)
    receive(checker, tally, lost_packet, 1.2)
    assert (tally.frames_decoded, tally.frames_dropped) == (3, 1)


def test_vp8_a_marker_lost() -> None:
    stream = pictures(3)
    del stream[5]  # picture 1's last packet: it never ends
    checker, tally = watched("VP8", None)
    for packet, at in stream:
        receive(checker, tally, packet, at)
    assert (tally.frames_decoded, tally.frames_dropped) == (2, 1)


# -- behind the frame checker: the committed captures (dependency descriptor) -------------


def capture_run(
    codec: str, skip: int | None = None, resend_after: int | None = None, loops: int = 1
) -> tuple[PictureTally, list[int]]:
    """The capture (``loops`` passes) through a checker and its tally, less packet ``skip``
    (resent after packet ``resend_after``, if given); the tally and each packet's timestamp."""
    capture = read_capture(CAPTURES / VIDEO_CAPTURES[codec])
    checker, tally = watched(codec, capture.info.extensions[DEPENDENCY_DESCRIPTOR])
    packets = list(replay(capture, loops))
    stamps = []
    for i, (t, packet) in enumerate(packets):
        stamps.append(parse_rtp(packet).timestamp)
        if i != skip:
            receive(checker, tally, packet, t)
        if i == resend_after and skip is not None:
            receive(checker, tally, packets[skip][1], t)
    return tally, stamps


@pytest.mark.parametrize("codec", ["VP9", "AV1", "VP8"])
def test_a_capture_paints_every_picture(codec: str) -> None:
    tally, stamps = capture_run(codec)
    # the VP9 capture's last picture lost its end: it waits, neither painted nor dropped
    assert tally.frames_decoded == len(set(stamps)) - (1 if codec == "VP9" else 0)
    assert tally.frames_dropped == 0 and tally.freeze_count == 0
    assert (tally.frame_width, tally.frame_height) == (1280, 720)
    assert tally.spatial == (0 if codec == "VP8" else 2)
    assert tally.first_frame_at is not None and tally.first_frame_at < 0.05


def _vp9_packet(sid: int, tid: int, after: float) -> int:
    """The index of the first packet of a VP9 capture frame of (sid, tid) after ``after`` s."""
    capture = read_capture(CAPTURES / VIDEO_CAPTURES["VP9"])
    for i, (t, packet) in enumerate(replay(capture, 1)):
        header = parse_rtp(packet)
        d = parse_vp9_descriptor(packet[header.payload_offset : header.payload_end])
        if t > after and d.sid == sid and d.tid == tid and d.start_of_frame:
            return i
    raise AssertionError("no such frame")


def test_a_lost_packet_of_a_frame_nothing_needs_drops_its_picture() -> None:
    complete, _ = capture_run("VP9")
    victim = _vp9_packet(2, 2, 1.0)  # S2 T2: no frame references it
    tally, _ = capture_run("VP9", skip=victim)
    assert (tally.frames_decoded, tally.frames_dropped) == (complete.frames_decoded - 1, 1)


def test_a_lost_reference_resent_late_costs_a_delay_not_a_drop() -> None:
    complete, _ = capture_run("VP9")
    victim = _vp9_packet(2, 0, 1.0)  # S2 T0: the next S2 frames need it
    # resent 40 packets (about three pictures) later: they wait for it, then paint
    tally, _ = capture_run("VP9", skip=victim, resend_after=victim + 40)
    assert (tally.frames_decoded, tally.frames_dropped) == (complete.frames_decoded, 0)


def test_a_lost_reference_never_resent_drops_everything_up_to_the_next_keyframe() -> None:
    victim = _vp9_packet(2, 0, 1.0)
    tally, stamps = capture_run("VP9", skip=victim, loops=2)
    # the second pass starts at a keyframe: painting it gives up every picture from the
    # victim's to the end of the first pass
    first_pass = stamps[: len(stamps) // 2]
    lost = len(set(first_pass[first_pass.index(stamps[victim]) :]))
    assert tally.frames_dropped == lost
    assert tally.frames_decoded == len(set(stamps)) - lost - 1  # the last one waits
    assert tally.freeze_count == 1


async def test_a_sim_subscriber_counts_and_reports_what_it_receives() -> None:
    """SimSubscriber's receive path feeds the tally of the track its SSRC carries (the
    checker paints its pictures, its parser gives their sizes) and makes a valid
    receiver_report."""
    from loadtest.peers import SimSubscriber
    from sfu.protocol import ReceiverReport

    capture = read_capture(CAPTURES / VIDEO_CAPTURES["VP9"])
    info = capture.info
    sub = SimSubscriber("ws://127.0.0.1:1/ws", "sub", (1280, 720))
    try:
        sub.joined_at = 0.0
        sub._parsers[info.payload_type] = ("VP9", info.extensions[DEPENDENCY_DESCRIPTOR])
        sub._tally_by_ssrc[info.ssrc] = sub.tally("track-a")
        await sub.on_message(
            {
                "type": "level_changed",
                "track_id": "track-a",
                "spatial": 2,
                "temporal": 2,
                "width": 1280,
                "height": 720,
                "paused": False,
                "reason": "window",
            }
        )
        packets = list(replay(capture, 1))
        for t, packet in packets:
            sub.on_rtp(packet, 1.0 + t)
        tally = sub.tallies["track-a"]
        assert tally.frames_decoded == 149 and tally.frames_dropped == 0
        assert (tally.frame_width, tally.frame_height) == (1280, 720)
        message = sub.receiver_report(10.0)
        assert message is not None
        (entry,) = message["tracks"]
        assert entry["first_frame"] == pytest.approx(1.0 + packets[17][0], abs=1e-4)
        assert entry["element_width"] == 1280 and entry["frames_decoded"] == 149
        ReceiverReport.model_validate(message)
    finally:
        await sub.pc.close()
