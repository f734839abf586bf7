"""The capture looper (sans-IO) on the real captures: paced (the load tester's publishers)
and without a clock (replay, for the in-process tests)."""

from support.captures import CAPTURES

from loadtest.capturefile import read_capture
from loadtest.looper import CaptureLooper, replay
from sfu.codecs.av1_dd import parse_dependency_descriptor
from sfu.codecs.keyframe import KEYFRAME_DETECTORS
from sfu.codecs.vp9 import parse_vp9_descriptor
from sfu.rtp import extensions as ext
from sfu.rtp.packet import parse_rtp

IDS = {ext.DEPENDENCY_DESCRIPTOR: 7, ext.ABS_SEND_TIME: 3}


def run(
    looper: CaptureLooper, seconds: float, step: float = 0.01, jump_at: float | None = None
) -> list[tuple[float, bytes]]:
    out = []
    t = 0.0
    while t < seconds:
        if jump_at is not None and abs(t - jump_at) < step / 2:
            looper.request_keyframe()
        out += [(t, p) for p in looper.due(t)]
        t += step
    return out


def test_paced_at_capture_speed_and_continuous_across_loops() -> None:
    capture = read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    looper = CaptureLooper(capture, ssrc=99, payload_type=100, extension_ids=IDS)
    duration = capture.packets[-1][0]
    sent = run(looper, 2.5 * duration)
    assert looper.loops == 2
    headers = [parse_rtp(p) for _, p in sent]
    assert {h.ssrc for h in headers} == {99} and {h.payload_type for h in headers} == {100}
    seqs = [h.sequence_number for h in headers]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    # timestamps follow the wall clock: about 90000 per second of sending
    span = (headers[-1].timestamp - headers[0].timestamp) & 0xFFFFFFFF
    assert abs(span / 90000 - sent[-1][0]) < 0.2
    stamps = [h.timestamp for h in headers]
    assert all(((b - a) & 0xFFFFFFFF) < 90000 for a, b in zip(stamps, stamps[1:], strict=False))
    # picture ids and DD frame numbers continue across the loop
    pids = []
    structure = None
    frames = []
    for (_, packet), h in zip(sent, headers, strict=True):
        payload = packet[h.payload_offset : h.payload_end]
        d = parse_vp9_descriptor(payload)
        if d.start_of_frame and d.sid == 0 and d.picture_id is not None:
            pids.append(d.picture_id)
        dd = parse_dependency_descriptor(h.extensions[7], structure)
        structure = dd.structure or structure
        if dd.start_of_frame:
            frames.append(dd.frame_number)
    assert all(((b - a) & 0x7FFF) == 1 for a, b in zip(pids, pids[1:], strict=False))
    assert all(0 < ((b - a) & 0xFFFF) < 10 for a, b in zip(frames, frames[1:], strict=False))


def test_keyframe_request_jumps_to_a_keyframe_at_the_next_picture() -> None:
    capture = read_capture(CAPTURES / "av1_L3T3.sfucap")
    looper = CaptureLooper(capture, ssrc=1, payload_type=45, extension_ids=IDS)
    sent = run(looper, 2.0, jump_at=1.0)
    assert looper.keyframe_requests == 1
    after = [p for t, p in sent if t >= 1.0]
    starts = []
    last_ts = None
    for packet in after:
        h = parse_rtp(packet)
        if h.timestamp != last_ts:
            starts.append(packet)
            last_ts = h.timestamp
    assert starts
    # the first picture after the request starts with a keyframe (AV1 N bit)
    h = parse_rtp(starts[0])
    assert KEYFRAME_DETECTORS["AV1"](starts[0][h.payload_offset : h.payload_end])


def test_replay_keeps_the_first_pass_and_continues_the_next() -> None:
    """Without a clock: the first pass is the capture with its sequence numbers and
    timestamps rebased, the second continues picture ids, frame numbers and timestamps."""
    capture = read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    out = list(replay(capture, 2))
    n = len(capture.packets)
    assert len(out) == 2 * n
    for (at, original), (t, packet) in zip(capture.packets, out[:n], strict=True):
        h, o = parse_rtp(packet), parse_rtp(original)
        assert t == at and h.ssrc == o.ssrc and h.payload_type == o.payload_type
        assert packet[h.payload_offset :] == original[o.payload_offset :]
        assert h.extensions == o.extensions
    headers = [parse_rtp(p) for _, p in out]
    assert [h.sequence_number for h in headers] == list(range(2 * n))
    assert headers[0].timestamp == 0
    assert out[n][0] > out[n - 1][0]
    assert 0 < (headers[n].timestamp - headers[n - 1].timestamp) & 0xFFFFFFFF <= 3000
    pids = []
    for _, packet in out:
        h = parse_rtp(packet)
        d = parse_vp9_descriptor(packet[h.payload_offset : h.payload_end])
        if d.start_of_frame and d.sid == 0:
            pids.append(d.picture_id)
    assert all(((b - a) & 0x7FFF) == 1 for a, b in zip(pids, pids[1:], strict=False))
