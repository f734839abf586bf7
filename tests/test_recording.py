"""The layered recorder's parts on exact inputs: the reorder buffer, the depacketizers, the
layer file format byte for byte, the merge, the segmenter's cuts and keyframe requests, the
manifest's live window, and the atomic writer."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from sfu.codecs.errors import CodecError
from sfu.recording.depacketize import (
    Av1FrameObus,
    av1_elements,
    leb128,
    obu_with_size,
    opus_samples,
    read_leb128,
)
from sfu.recording.frames import LayerFrame, Picture
from sfu.recording.history import TrackHistory
from sfu.recording.layerfile import (
    FLAG_INTER_LAYER,
    FLAG_KEYFRAME,
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    encode_header,
    encode_record,
    read_layer_file,
)
from sfu.recording.manifest import Manifest, codec_string
from sfu.recording.merge import av1_temporal_unit, merge, vp9_superframe
from sfu.recording.recorder import AudioRecorder, Recording, VideoRecorder
from sfu.recording.reorder import ReorderBuffer
from sfu.recording.segmenter import Segmenter
from sfu.recording.writer import MANIFEST, RecordingWriter
from sfu.rtp.packet import build_rtp

# -- reorder buffer ------------------------------------------------------------------------


def test_reorder_buffer_gives_packets_in_order_and_fills_gaps_late() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(window=0.5)
    assert [(o.sequence, o.item) for o in buffer.push(10, "a", 0.0)] == [(10, "a")]
    assert buffer.push(12, "c", 0.01) == []  # 11 missing: held
    assert buffer.push(13, "d", 0.02) == []
    out = buffer.push(11, "b", 0.1)  # the retransmission
    assert [(o.lost_before, o.item) for o in out] == [(0, "b"), (0, "c"), (0, "d")]
    # a duplicate and a packet behind what was given out are dropped
    assert buffer.push(11, "b", 0.2) == [] and buffer.push(5, "x", 0.2) == []
    assert buffer.dropped == 2


def test_reorder_buffer_declares_a_gap_lost_after_the_window_or_capacity() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(window=0.5, capacity=4)
    buffer.push(0, 0, 0.0)
    assert buffer.push(3, 3, 0.1) == []
    assert buffer.poll(0.55) == []
    out = buffer.poll(0.61)  # 3 has waited 0.51 s behind 1 and 2
    assert [(o.lost_before, o.sequence) for o in out] == [(2, 3)]
    assert buffer.lost == 2
    # capacity: the fourth packet held behind a gap gives up on it at once
    for seq in (5, 6, 7):
        assert buffer.push(seq, seq, 1.0) == []
    out = buffer.push(8, 8, 1.0)
    assert [(o.lost_before, o.sequence) for o in out] == [(1, 5), (0, 6), (0, 7), (0, 8)]


def test_reorder_buffer_across_the_sequence_number_wrap_and_flush() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer()
    buffer.push(65534, 0, 0.0)
    assert buffer.push(0, 2, 0.0) == []
    out = buffer.push(65535, 1, 0.0)
    assert [o.sequence for o in out] == [65535, 65536]
    buffer.push(3, 4, 0.0)
    assert [(o.lost_before, o.item) for o in buffer.flush()] == [(2, 4)]


# -- depacketizing -------------------------------------------------------------------------


def test_leb128_round_trip() -> None:
    for value in (0, 1, 127, 128, 300, 2**21 + 5):
        encoded = leb128(value)
        assert read_leb128(encoded + b"\xff", 0) == (value, len(encoded))
    with pytest.raises(CodecError):
        read_leb128(b"\x80\x80", 0)


def test_av1_elements_and_fragments() -> None:
    obu_a = bytes([0x30]) + b"A" * 5  # frame OBU, no size field
    obu_b = bytes([0x34, 0x08]) + b"B" * 300  # with an extension byte
    # W=2: the first element has a length, the last not; Y: the last continues
    first = bytes([0x60]) + leb128(len(obu_a)) + obu_a + obu_b[:100]
    second = bytes([0x90]) + obu_b[100:]  # Z=1, W=1
    assert av1_elements(first) == (False, True, [obu_a, obu_b[:100]])
    frame = Av1FrameObus()
    frame.add(first)
    assert frame.result() is None  # an OBU unfinished
    frame.add(second)
    expected = bytes([0x32, 5]) + b"A" * 5 + bytes([0x36, 0x08]) + leb128(300) + b"B" * 300
    assert frame.result() == expected
    # a continuation without its start does not fit
    broken = Av1FrameObus()
    broken.add(second)
    assert broken.result() is None
    # temporal delimiters, tile lists and padding are left out
    assert obu_with_size(b"\x10") is None and obu_with_size(b"\x40") is None
    assert obu_with_size(b"\x78") is None


def test_opus_packet_durations() -> None:
    assert opus_samples(bytes([0xF8, 0])) == 960  # CELT FB 20 ms, one frame
    assert opus_samples(bytes([0x11, 0])) == 1920 * 2  # SILK NB 40 ms, two frames
    assert opus_samples(bytes([0x7B, 0x03])) == 3 * 960  # hybrid FB 20 ms, code 3, 3 frames
    assert opus_samples(b"") == 0


# -- the layer file, byte for byte ---------------------------------------------------------


def test_layer_file_layout_is_as_documented() -> None:
    header = encode_header("VP9", 90000, 7, 2, 1, None)
    assert header == b"SLS1VP90" + struct.pack("<III", 90000, 7, 2) + bytes([1, 0xFF, 24, 0])
    assert len(header) == HEADER_SIZE
    record = encode_record(5, 123456, 1, 2, FLAG_KEYFRAME | FLAG_INTER_LAYER, b"xyz")
    assert record == struct.pack("<IIQBBBB", 3, 5, 123456, 1, 2, 3, 0) + b"xyz"
    assert len(record) - 3 == RECORD_HEADER_SIZE
    data = header + record + encode_record(6, 126456, 1, 0, 0, b"abcd")
    parsed = read_layer_file(data)
    assert (parsed.codec, parsed.timescale, parsed.sequence, parsed.spatial) == ("VP9", 90000, 7, 1)
    assert parsed.temporal is None and parsed.complete
    assert [(r.picture, r.pts, r.temporal, r.keyframe, r.data) for r in parsed.records] == [
        (5, 123456, 2, True, b"xyz"),
        (6, 126456, 0, False, b"abcd"),
    ]
    # a prefix (a range request) gives the whole records it holds
    prefix = read_layer_file(data[: HEADER_SIZE + RECORD_HEADER_SIZE + 3 + 10])
    assert len(prefix.records) == 1 and not prefix.complete
    with pytest.raises(ValueError):
        read_layer_file(b"IVF0" + data[4:])


def test_vp9_superframe_index_and_av1_temporal_unit() -> None:
    assert vp9_superframe([b"only"]) == b"only"
    frames = [b"a" * 3, b"b" * 300]
    # two frames, two bytes per size: marker 0b110_01_001
    assert vp9_superframe(frames) == b"a" * 3 + b"b" * 300 + bytes([0xC9, 3, 0, 44, 1, 0xC9])
    assert av1_temporal_unit([b"\x32\x01x", b"\x32\x01y"]) == b"\x12\x00\x32\x01x\x32\x01y"


def test_merge_orders_pictures_and_layers_and_filters_temporal() -> None:
    head0 = encode_header("VP9", 90000, 0, 3, 0, None)
    head1 = encode_header("VP9", 90000, 0, 2, 1, None)
    s0 = read_layer_file(
        head0
        + encode_record(0, 0, 0, 0, FLAG_KEYFRAME, b"k0")
        + encode_record(1, 3000, 0, 2, 0, b"p1")
        + encode_record(2, 6000, 0, 1, 0, b"p2")
    )
    s1 = read_layer_file(
        head1
        + encode_record(0, 0, 1, 0, FLAG_KEYFRAME | FLAG_INTER_LAYER, b"K0")
        + encode_record(2, 6000, 1, 1, 0, b"P2")
    )
    units = merge("VP9", [s1, s0])
    assert [(u.picture, u.spatial, u.keyframe) for u in units] == [
        (0, 1, True),
        (1, 0, False),
        (2, 1, False),
    ]
    assert units[0].data == vp9_superframe([b"k0", b"K0"])
    assert [u.picture for u in merge("VP9", [s0, s1], max_temporal=1)] == [0, 2]


# -- the segmenter -------------------------------------------------------------------------


def picture(ts: int, keyframe: bool, layers: int = 2, temporal: int = 0) -> Picture:
    frames = [
        LayerFrame(s, temporal, bytes([s, ts & 0xFF]) * 10, True, keyframe, keyframe and s > 0)
        for s in range(layers)
    ]
    return Picture(ts, 0.0, frames, keyframe, [(320 << s, 180 << s) for s in range(layers)])


def test_segments_cut_at_the_first_keyframe_at_or_after_the_target() -> None:
    segmenter = Segmenter("v", "VP9", 90000, target_duration=1.0)
    assert segmenter.add(picture(0, False), 0, 0) is None and not segmenter.open
    done = []
    for i in range(90):  # 3 s at 30 fps, keyframes at 0, 0.5 s, 1.5 s, 2.5 s
        pts = i * 3000
        key = i in (0, 15, 45, 75)
        segment = segmenter.add(picture(pts, key), i, pts)
        if segment is not None:
            done.append((i, segment))
        if i == 31:
            assert segmenter.due  # one second in: the next keyframe ends it
    assert [i for i, _ in done] == [45, 75]
    first = done[0][1]
    assert (first.pts, first.duration, first.pictures) == (0, 135000, 45)
    assert not first.over_target  # 1.5 s: late by the keyframes, within 0.5 s
    last = segmenter.end()
    assert last is not None and last.pts == 225000 and last.duration == 15 * 3000
    s0, s1 = first.files
    assert (s0.name, s1.name) == ("v-000000-s0.sls", "v-000000-s1.sls")
    # the keyframe at 0.5 s references the lower layer after the first picture
    assert s1.inter_layer == "all" and s0.inter_layer == "none"
    assert [f.inter_layer for f in done[1][1].files] == ["none", "keyframe"]
    assert s0.key_bytes == HEADER_SIZE + RECORD_HEADER_SIZE + 20
    assert first.level_pictures == {(0, 0): 45, (1, 0): 45}


def test_a_keyframe_that_changes_the_resolution_cuts_at_once() -> None:
    segmenter = Segmenter("v", "VP8", 90000, target_duration=2.0, split_temporal=True)
    segmenter.add(picture(0, True, layers=1), 0, 0)
    segmenter.add(picture(3000, False, layers=1, temporal=2), 1, 3000)
    changed = picture(6000, True, layers=1)
    changed.resolutions = [(1280, 720)]
    segment = segmenter.add(changed, 2, 6000)
    assert segment is not None and segment.duration == 6000
    assert [f.layer for f in segment.files] == ["s0t0", "s0t2"]
    assert segment.files[0].resolution == (320, 180)


def test_recorder_asks_for_keyframes_when_waiting_due_and_broken() -> None:
    rec = VideoRecorder("v", "VP8", target_duration=1.0, keyframe_interval=0.5)
    seq = 0

    def send(ts: int, key: bool, at: float) -> bool:
        nonlocal seq
        # VP8: X=0, S=1, PID=0; payload header byte: bit 0 is P (0 = keyframe)
        payload = bytes([0x10, 0x00 if key else 0x01]) + b"\x00" * 20
        packet = build_rtp(
            payload_type=96, sequence_number=seq, timestamp=ts, ssrc=1, payload=payload, marker=True
        )
        seq += 1
        return rec.on_rtp(packet, at).wants_keyframe

    assert send(0, False, 0.0)  # a picture could not start the recording
    assert not send(3000, False, 0.1)  # within the interval
    assert not send(6000, True, 0.6)  # the keyframe starts a segment
    asked = [send(9000 + 3000 * i, False, 1.0 + i / 32) for i in range(50)]
    # due after one second of media: asked then, and again after the interval
    assert [i for i, a in enumerate(asked) if a] == [29, 45]
    assert rec.keyframe_requests == 3


# -- the manifest --------------------------------------------------------------------------


def test_live_window_slides_and_counts_discontinuities() -> None:
    history = TrackHistory("v", "video", "VP9", 90000, target_duration=1.0, window=2)
    segmenter = Segmenter("v", "VP9", 90000, target_duration=1.0)
    gone = []
    for n in range(4):
        segmenter.discontinuity = n == 1
        segmenter.add(picture(n * 90000, True), n * 30, n * 90000)
        segment = segmenter.end((n + 1) * 90000)
        assert segment is not None
        gone += history.add(segment)
    track = history.track()
    assert [s.sequence for s in track.segments] == [2, 3]
    assert track.media_sequence == 2 and track.discontinuity_sequence == 1
    assert gone == ["v-000000-s0.sls", "v-000000-s1.sls", "v-000001-s0.sls", "v-000001-s1.sls"]
    assert [layer.depends_on for layer in track.layers] == [[], ["s0"]]
    assert track.levels[1].layers == ["s0", "s1"] and track.levels[1].sparse_layers == ["s0"]
    assert track.codec_string == "vp09.00.21.08"  # 640x360: level 2.1


def test_codec_strings() -> None:
    assert codec_string("VP9", {"profile-id": "2"}, (1280, 720)) == "vp09.02.31.08"
    assert codec_string("VP9", None, (320, 180)) == "vp09.00.11.08"
    assert codec_string("AV1", {"level-idx": "5", "profile": "0", "tier": "0"}) == "av01.0.05M.08"
    assert codec_string("VP8") == "vp8" and codec_string("opus") == "opus"


# -- writing -------------------------------------------------------------------------------


def test_writer_renames_whole_files_and_the_manifest_last(tmp_path: Path) -> None:
    recording = Recording("room-1")
    audio = recording.add(AudioRecorder("audio", target_duration=0.1))
    segments = []
    for i in range(12):  # 20 ms Opus packets: CELT FB, one frame
        packet = build_rtp(
            payload_type=111,
            sequence_number=i,
            timestamp=960 * i,
            ssrc=5,
            payload=bytes([0xF8]) + b"\x00" * 40,
        )
        segments += audio.on_rtp(packet, i * 0.02).segments
    segments += recording.finish().segments
    writer = RecordingWriter(tmp_path / "rec")
    for segment in segments:
        writer.write_segment(segment)
    writer.write_manifest(recording.manifest())
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    manifest = Manifest.model_validate_json((tmp_path / "rec" / MANIFEST).read_bytes())
    assert manifest.endlist and manifest.recording == "room-1"
    (track,) = manifest.tracks
    assert track.kind == "audio" and track.codec_string == "opus" and track.sample_rate == 48000
    assert [s.duration for s in track.segments] == [0.1, 0.1, 0.04]
    for entry in track.segments:
        (only,) = entry.files.values()
        data = (tmp_path / "rec" / only.name).read_bytes()
        assert len(data) == only.bytes
        assert read_layer_file(data).codec == "OPUS"
    assert sorted(names) == sorted([MANIFEST, *(f.name for s in segments for f in s.files)])
    json.loads((tmp_path / "rec" / MANIFEST).read_text())
    with pytest.raises(ValueError):
        writer.write_file("../escape", b"")


def vp9_packet(seq: int, ts: int, *, start: bool, end: bool, marker: bool, key: bool) -> bytes:
    """A VP9 packet, non-flexible, one spatial layer: B/E bits, P unless a keyframe."""
    first = (0x08 if start else 0) | (0x04 if end else 0) | (0 if key else 0x40)
    return build_rtp(
        payload_type=98,
        sequence_number=seq,
        timestamp=ts,
        ssrc=9,
        payload=bytes([first]) + b"\x00" * 10,
        marker=marker,
    )


def test_padding_and_packets_after_the_marker_bit() -> None:
    """Padding-only packets hold no media (their sequence numbers keep the order); a packet
    of a picture after its marker bit (not as RFC 9628 has it) cannot join it: dropped."""
    rec = VideoRecorder("v", "VP9", target_duration=0.05)

    def send(packet: bytes, at: float) -> None:
        assert not rec.on_rtp(packet, at).segments

    send(vp9_packet(0, 0, start=True, end=True, marker=True, key=True), 0.0)
    padding = build_rtp(payload_type=98, sequence_number=1, timestamp=0, ssrc=9, payload=b"")
    send(padding, 0.01)
    send(vp9_packet(2, 3000, start=True, end=False, marker=False, key=False), 0.03)
    send(vp9_packet(3, 3000, start=False, end=True, marker=True, key=False), 0.03)
    send(vp9_packet(4, 3000, start=True, end=True, marker=False, key=False), 0.03)  # late
    assert rec.assembler.after_marker == 1 and rec.assembler.incomplete == 0
    done = rec.finish().segments
    assert [s.pictures for s in done] == [2]
    (f,) = done[0].files
    assert f.records == 2 and not f.dropped
