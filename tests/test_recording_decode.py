"""Decodable by construction: the committed Chromium captures recorded layer by layer, and
every segment read back at every level, merged, and decoded with PyAV (libvpx, dav1d,
libopus) without an error, every picture at its level's resolution; a lost packet drops
only what depends on it; a publisher's reconnect is a discontinuity; the manifest's
bitrates are the capture's."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from support.captures import AV1, CAPTURES, VP8, VP9, load

from loadtest.capturefile import Capture, read_capture
from loadtest.looper import CaptureLooper, replay
from loadtest.recording_figures import new_recorder
from sfu.codecs.av1_dd import TemplateStructure, parse_dependency_descriptor
from sfu.recording.layerfile import read_layer_file
from sfu.recording.manifest import Level, Manifest, SegmentEntry, Track
from sfu.recording.merge import AccessUnit, merge
from sfu.recording.playback import level_files, read_level
from sfu.recording.recorder import AudioRecorder, Recording, VideoRecorder
from sfu.recording.segmenter import Segment
from sfu.recording.writer import MANIFEST, RecordingWriter
from sfu.rtp.extensions import DEPENDENCY_DESCRIPTOR
from sfu.rtp.packet import parse_rtp

CODEC = {VP9: "VP9", AV1: "AV1", VP8: "VP8"}
DECODER = {"VP9": "libvpx-vp9", "AV1": "libdav1d", "VP8": "libvpx"}
SECONDS = 7.0  # of the looped recordings: three 2 s segments and a last one


@dataclass
class Recorded:
    capture: Capture
    recorder: VideoRecorder
    segments: list[Segment] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)  # packets after which a keyframe was asked

    @property
    def files(self) -> dict[str, bytes]:
        return {f.name: f.data for s in self.segments for f in s.files}

    def track(self) -> Track:
        return self.recorder.history.track()

    def layer_records(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.segments:
            for f in s.files:
                counts[f.layer] = counts.get(f.layer, 0) + f.records
        return counts


def record(capture: Capture, packets: Iterable[tuple[float, bytes]]) -> Recorded:
    result = Recorded(capture, new_recorder(capture))
    for at, packet in packets:
        out = result.recorder.on_rtp(packet, at)
        result.sent.append(packet)
        result.segments += out.segments
        if out.wants_keyframe:
            result.asked.append(len(result.sent) - 1)
    result.segments += result.recorder.finish().segments
    return result


@functools.cache
def looped(name: str) -> Recorded:
    """The capture played in real time (a simulated clock), the recorder's keyframe requests
    answered by the looper (it jumps to the capture's next keyframe)."""
    capture = load(name)
    looper = CaptureLooper(
        capture,
        ssrc=capture.info.ssrc,
        payload_type=capture.info.payload_type,
        extension_ids=None,
    )
    result = Recorded(capture, new_recorder(capture))
    now = 0.0
    while now < SECONDS:
        for packet in looper.due(now):
            out = result.recorder.on_rtp(packet, now)
            result.sent.append(packet)
            result.segments += out.segments
            if out.wants_keyframe:
                result.asked.append(len(result.sent) - 1)
                looper.request_keyframe()
        now += 0.005
    result.segments += result.recorder.finish().segments
    return result


def decode(codec: str, units: list[AccessUnit]) -> list[tuple[int, int]]:
    """(width, height) of each decoded picture; raises on any decoder error."""
    ctx = av.CodecContext.create(DECODER[codec], "r")
    if codec == "AV1":  # a picture out for each temporal unit in
        ctx.options = {"max_frame_delay": "1"}
    sizes = []
    for unit in units:
        sizes += [(f.width, f.height) for f in ctx.decode(av.Packet(unit.data))]
    sizes += [(f.width, f.height) for f in ctx.decode(None)]
    return sizes


def resolutions(track: Track, segment: SegmentEntry) -> dict[int, tuple[int, int]]:
    """(width, height) of each spatial layer in the segment."""
    spatial = {layer.id: layer.spatial for layer in track.layers}
    out = {}
    for layer, f in segment.files.items():
        assert f.width is not None and f.height is not None
        out[spatial[layer]] = (f.width, f.height)
    return out


def read(recorded: Recorded, segment: SegmentEntry, level: Level, sparse: bool) -> list[AccessUnit]:
    files = recorded.files

    def fetch(name: str, length: int | None) -> bytes:
        return files[name] if length is None else files[name][:length]

    return read_level(recorded.track(), segment, level, fetch, sparse=sparse)


def temporal_ids(recorded: Recorded) -> dict[int, int]:
    """The temporal id of each picture sent, by RTP timestamp (from the dependency
    descriptor, read apart from the recorder)."""
    dd_id = recorded.capture.info.extensions[DEPENDENCY_DESCRIPTOR]
    structure: TemplateStructure | None = None
    out: dict[int, int] = {}
    for packet in recorded.sent:
        h = parse_rtp(packet)
        dd = parse_dependency_descriptor(h.extensions[dd_id], structure)
        structure = dd.structure or structure
        out.setdefault(h.timestamp, dd.temporal_id)
    return out


# -- every segment, every level -------------------------------------------------------------


@pytest.mark.parametrize("name", [VP9, AV1, VP8])
def test_every_segment_and_level_decodes_at_its_resolution(name: str) -> None:
    recorded = looped(name)
    codec = CODEC[name]
    track = recorded.track()
    segments = track.segments
    assert len(segments) >= 3
    # cut at the keyframe asked for when the segment was due: the target and a picture
    assert all(s.duration <= 2.1 and not s.over_target for s in segments)
    assert sum(s.duration >= 2.0 for s in segments[:-1]) >= 2
    # the independent count: the pictures sent from the first, by temporal id
    tids = temporal_ids(recorded)
    base = parse_rtp(recorded.sent[0]).timestamp
    by_pts = {(ts - base) & 0xFFFFFFFF: tid for ts, tid in tids.items()}
    assert sum(s.pictures for s in segments) == len(by_pts)
    for segment in segments:
        res = resolutions(track, segment)
        if codec != "VP8":
            assert res == {0: (320, 180), 1: (640, 360), 2: (1280, 720)}
        inside = [
            t
            for pts, t in by_pts.items()
            if segment.pts <= pts < segment.pts + (round(segment.duration * 90000))
        ]
        assert len(inside) == segment.pictures
        for level in track.levels:
            wanted = sum(1 for t in inside if t <= level.temporal)
            for sparse in (False, True) if level.sparse_layers else (False,):
                units = read(recorded, segment, level, sparse)
                assert len(units) == wanted, (segment.sequence, level, sparse)
                assert units[0].keyframe and units[0].pts == segment.pts
                sizes = decode(codec, units)
                assert sizes == [res[level.spatial]] * wanted, (segment.sequence, level)


def test_ksvc_upper_levels_need_the_lower_layers_keyframe_only() -> None:
    """VP9 L3T3_KEY: S1 and S2 reference the layers below in the keyframe picture only, so a
    level reads the lower files up to key_bytes; AV1 L3T3 references them in every picture."""
    vp9, av1 = looped(VP9).track(), looped(AV1).track()
    assert [layer.inter_layer for layer in vp9.layers] == ["none", "keyframe", "keyframe"]
    assert [layer.inter_layer for layer in av1.layers] == ["none", "all", "all"]
    assert all(not level.sparse_layers for level in av1.levels)
    top = vp9.levels[-1]
    assert top.sparse_layers == ["s0", "s1"]
    assert top.sparse_bitrate is not None and top.sparse_bitrate < 0.85 * top.bitrate
    for segment in vp9.segments:
        reads = level_files(vp9, segment, top)
        assert [length for _, length in reads] == [
            segment.files["s0"].key_bytes,
            segment.files["s1"].key_bytes,
            None,
        ]


@pytest.mark.parametrize("name", [VP9, AV1, VP8])
def test_base_only_reading_never_touches_higher_files(name: str, tmp_path: Path) -> None:
    """Written to a folder, read back by the manifest: the base level opens the base files."""
    recorded = looped(name)
    writer = RecordingWriter(tmp_path, fsync=False)
    for segment in recorded.segments:
        writer.write_segment(segment)
    recording = Recording("r")
    recording.add(recorded.recorder)
    writer.write_manifest(recording.manifest())
    manifest = Manifest.model_validate_json((tmp_path / MANIFEST).read_bytes())
    assert manifest.endlist
    (track,) = manifest.tracks
    base = track.levels[0]
    assert base.layers == (["s0t0"] if name == VP8 else ["s0"]) and base.temporal == 0
    opened: list[str] = []

    def fetch(name: str, length: int | None) -> bytes:
        opened.append(name)
        with open(tmp_path / name, "rb") as f:
            return f.read() if length is None else f.read(length)

    for segment in track.segments:
        units = read_level(track, segment, base, fetch)
        assert units and all(u.spatial == 0 and u.temporal == 0 for u in units)
        decode(track.codec, units)
    assert opened and all(n.endswith(f"-{base.layers[0]}.sls") for n in opened)


def test_without_the_dependency_descriptor() -> None:
    """Layers and references from the codecs' own descriptors: VP9's flexible mode gives the
    same files; VP8 without temporal ids is one layer; AV1 is one temporal unit per picture
    (every spatial layer in one file), decoded at the top resolution."""
    vp9 = load(VP9)
    with_dd = record(vp9, replay(vp9, 2))
    without = Recorded(vp9, VideoRecorder("video", "VP9"))
    for at, packet in replay(vp9, 2):
        without.segments += without.recorder.on_rtp(packet, at).segments
    without.segments += without.recorder.finish().segments
    assert without.files == with_dd.files
    for name, codec, size in ((VP8, "VP8", None), (AV1, "AV1", (1280, 720))):
        capture = load(name)
        recorder = VideoRecorder("video", codec)
        segments = []
        for at, packet in capture.packets:
            segments += recorder.on_rtp(packet, at).segments
        segments += recorder.finish().segments
        pictures = len({parse_rtp(p).timestamp for _, p in capture.packets})
        assert sum(s.pictures for s in segments) == pictures
        for segment in segments:
            (f,) = segment.files
            assert f.layer == ("s0t0" if codec == "VP8" else "s0") and f.records == segment.pictures
            sizes = decode(codec, merge(codec, [read_layer_file(f.data)]))
            assert len(sizes) == segment.pictures
            assert size is None or set(sizes) == {size}


def test_ffmpegs_own_vp9_decoder_shows_every_layer_of_a_superframe() -> None:
    """libvpx (and Chromium's WebCodecs) output the last frame of a superframe; FFmpeg's own
    VP9 decoder outputs each shown frame of it: a player on it keeps the last per picture."""
    recorded = looped(VP9)
    track = recorded.track()
    segment, level = track.segments[0], track.levels[-1]
    units = read(recorded, segment, level, sparse=False)
    ctx = av.CodecContext.create("vp9", "r")
    for unit in units:
        frames = ctx.decode(av.Packet(unit.data))
        assert len(frames) == 3 and (frames[-1].width, frames[-1].height) == (1280, 720)


# -- losses, reordering, reconnects ---------------------------------------------------------


def drop_packet(
    capture: Capture, picture: int, spatial: int
) -> tuple[list[tuple[float, bytes]], int]:
    """One pass over the capture without the middle packet of a frame of ``spatial`` in the
    ``picture``-th picture; and that picture's temporal id."""
    dd_id = capture.info.extensions[DEPENDENCY_DESCRIPTOR]
    packets = list(replay(capture, 1))
    structure: TemplateStructure | None = None
    pictures: list[int] = []
    frame: list[int] = []
    tid = -1
    for i, (_, packet) in enumerate(packets):
        h = parse_rtp(packet)
        dd = parse_dependency_descriptor(h.extensions[dd_id], structure)
        structure = dd.structure or structure
        if not pictures or pictures[-1] != h.timestamp:
            pictures.append(h.timestamp)
        if len(pictures) - 1 == picture and dd.spatial_id == spatial:
            frame.append(i)
            tid = dd.temporal_id
    assert len(frame) >= 1
    lost = frame[len(frame) // 2]
    return packets[:lost] + packets[lost + 1 :], tid


@pytest.mark.parametrize(
    "name,spatial,broken",
    [
        (VP9, 2, {"s2"}),  # the top layer's chain
        (VP9, 0, {"s0"}),  # K-SVC: the upper layers do not predict from S0 after the keyframe
        (AV1, 1, {"s1", "s2"}),  # full SVC: S2 predicts from S1 in every picture
        (AV1, 2, {"s2"}),
    ],
)
def test_a_lost_packet_drops_only_what_depends_on_it(
    name: str, spatial: int, broken: set[str]
) -> None:
    capture = load(name)
    clean = record(capture, replay(capture, 1))
    at = 40
    packets, tid = drop_packet(capture, at, spatial)
    assert tid == 0  # a T0 frame: every later frame of its layer references it
    lossy = record(capture, packets)
    (segment,) = lossy.segments
    (clean_segment,) = clean.segments
    clean_files = {f.layer: f for f in clean_segment.files}
    for f in segment.files:
        if f.layer in broken:  # the pictures before the loss only
            assert f.records == at and f.dropped == clean_files[f.layer].records - at
        else:  # byte for byte what the clean recording wrote
            assert f.data == clean_files[f.layer].data and not f.dropped
    # the recorder asked for a keyframe when the chain broke (when the gap was declared
    # lost, the reorder window after it), before the segment was due
    assert lossy.asked[0] < clean.asked[0]
    track = lossy.track()
    res = resolutions(track, track.segments[0])
    for level in track.levels:
        units = read(lossy, track.segments[0], level, sparse=True)
        # what each picture holds decides its resolution: the top layer it has
        assert decode(CODEC[name], units) == [res[u.spatial] for u in units]
        if not {f"s{s}" for s in range(level.spatial + 1)} & broken:
            assert len(units) == len(read(clean, clean.track().segments[0], level, sparse=True))


def test_a_lost_t2_frame_drops_that_frame_alone() -> None:
    """VP8 L1T3: nothing references a T2 frame; losing one leaves every other record."""
    capture = load(VP8)
    clean = record(capture, replay(capture, 1))
    packets, tid = drop_packet(capture, 5, 0)
    assert tid == 2
    lossy = record(capture, packets)
    assert lossy.layer_records() == {
        **clean.layer_records(),
        "s0t2": clean.layer_records()["s0t2"] - 1,
    }
    # no chain broke: a keyframe asked for only when segments were due
    assembler = lossy.recorder.assembler
    assert (assembler.incomplete, assembler.unreferenced) == (1, 0)
    assert len(lossy.asked) == len(clean.asked)
    track = lossy.track()
    for segment in track.segments:
        for level in track.levels:
            units = read(lossy, segment, level, sparse=False)
            assert len(decode("VP8", units)) == len(units)


@pytest.mark.parametrize("name", [VP9, AV1])
def test_reordered_packets_are_recorded_as_in_order(name: str) -> None:
    """Packets late by up to 8 places (retransmissions) within the reorder window: the same
    files as in order."""
    capture = load(name)
    packets = list(replay(capture, 1))
    rng = random.Random(3)
    keyed = sorted(
        (i + (rng.randint(1, 8) if rng.random() < 0.1 else 0), i) for i in range(len(packets))
    )
    shuffled = [packets[i] for _, i in keyed]
    assert shuffled != packets
    clean, moved = record(capture, packets), record(capture, shuffled)
    assert moved.files == clean.files and moved.recorder._buffer.lost == 0  # noqa: SLF001


@pytest.mark.parametrize("same_ssrc", [False, True])
def test_a_publisher_reconnect_is_a_discontinuity(same_ssrc: bool) -> None:
    """A new SSRC (a new publisher connection), or the same one with its timestamps and
    sequence numbers starting over: the open segment ends, the next starts at the new
    stream's keyframe, marked, its times following on."""
    capture = load(VP9)
    first = list(replay(capture, 1))
    gap = first[-1][0] + 1.0
    second = [
        (gap + at, packet)
        for at, packet in replay(
            capture,
            1,
            ssrc=capture.info.ssrc if same_ssrc else 0x1234,
            first_sequence_number=40000,
            first_timestamp=7,
        )
    ]
    # a packet of the old stream, late, after the new one began: not a third stream
    late = (second[0][0], first[-2][1])
    recorded = record(capture, first[:-2] + first[-1:] + second[:1] + [late] + second[1:])
    assert recorded.recorder.discontinuities == 1
    assert recorded.recorder.stale == 1
    track = recorded.track()
    a, b = track.segments
    assert not a.discontinuity and b.discontinuity
    assert b.pts == a.pts + round(a.duration * 90000) and b.sequence == a.sequence + 1
    assert track.discontinuity_sequence == 0
    for segment in (a, b):
        for level in track.levels:
            if level.temporal == 2:
                units = read(recorded, segment, level, sparse=True)
                assert len(decode("VP9", units)) == len(units) == segment.pictures


# -- bitrates, audio, figures ---------------------------------------------------------------


def capture_layer_bitrates(capture: Capture) -> tuple[dict[int, float], dict[int, float]]:
    """Bits per second of RTP payload per spatial layer, and per temporal layer, of one pass
    (by the dependency descriptor)."""
    dd_id = capture.info.extensions[DEPENDENCY_DESCRIPTOR]
    structure: TemplateStructure | None = None
    spatial: dict[int, int] = {}
    temporal: dict[int, int] = {}
    stamps = []
    for _, packet in capture.packets:
        h = parse_rtp(packet)
        dd = parse_dependency_descriptor(h.extensions[dd_id], structure)
        structure = dd.structure or structure
        size = h.payload_size
        spatial[dd.spatial_id] = spatial.get(dd.spatial_id, 0) + size
        temporal[dd.temporal_id] = temporal.get(dd.temporal_id, 0) + size
        stamps.append(h.timestamp)
    seconds = ((stamps[-1] - stamps[0]) & 0xFFFFFFFF) / 90000 + 1 / 30
    return (
        {s: 8 * b / seconds for s, b in spatial.items()},
        {t: 8 * b / seconds for t, b in temporal.items()},
    )


@pytest.mark.parametrize("name", [VP9, AV1, VP8])
def test_bitrates_per_layer_are_the_captures(name: str) -> None:
    capture = load(name)
    track = record(capture, replay(capture, 2)).track()
    spatial, temporal = capture_layer_bitrates(capture)
    for layer in track.layers:
        rtp = spatial[layer.spatial] if layer.temporal is None else temporal[layer.temporal]
        # the layer file holds the frames without the RTP payload descriptors, and adds a
        # 20-byte record header per frame
        assert 0.9 * rtp < layer.bitrate < 1.05 * rtp, (layer.id, layer.bitrate, rtp)
    assert track.levels[-1].bitrate == pytest.approx(sum(x.bitrate for x in track.layers), 1e-3)
    assert track.levels[-1].frame_rate == pytest.approx(30, abs=1)
    assert track.levels[0].frame_rate == pytest.approx(7.5, abs=0.5)


def test_audio_segments_decode_with_every_sample() -> None:
    capture = read_capture(CAPTURES / "opus.sfucap")
    recorder = AudioRecorder("audio")
    segments: list[Segment] = []
    for at, packet in capture.packets:  # 250 packets of 20 ms
        segments += recorder.on_rtp(packet, at).segments
    segments += recorder.finish().segments
    track = recorder.history.track()
    assert [s.duration for s in track.segments] == [2.0, 2.0, 1.0]
    for segment in segments:
        (f,) = segment.files
        ctx = av.CodecContext.create("libopus", "r")
        ctx.sample_rate = 48000
        ctx.layout = "stereo"
        samples = 0
        for unit in merge("OPUS", [read_layer_file(f.data)]):
            samples += sum(frame.samples for frame in ctx.decode(av.Packet(unit.data)))
        assert samples == segment.duration


def test_layer_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, not asserted (docs/recording.md): the bytes of each layer, the top layer's
    share, what a top-level player fetches, and the recorder's cost per packet."""
    lines = []
    for name in (VP9, AV1, VP8):
        capture = load(name)
        packets = list(replay(capture, 4))
        start = time.perf_counter()
        recorded = record(capture, packets)
        cost = (time.perf_counter() - start) / len(packets) * 1e6
        track = recorded.track()
        total = sum(layer.bitrate for layer in track.layers)
        rtp = sum(len(p) for _, p in capture.packets) * 4
        parts = ", ".join(
            f"{layer.id} {layer.bitrate / 1000:.0f} kbit/s ({layer.bitrate / total:.0%})"
            for layer in track.layers
        )
        top = track.levels[-1]
        sparse = (
            f", top level sparse {top.sparse_bitrate / 1000:.0f} kbit/s"
            f" ({top.sparse_bitrate / total:.0%})"
            if top.sparse_bitrate
            else ""
        )
        files = sum(len(d) for d in recorded.files.values())
        lines.append(
            f"{name}: {parts}; all {total / 1000:.0f} kbit/s{sparse}; files/RTP bytes "
            f"{files / rtp:.3f}; recorder {cost:.1f} us/packet"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
