"""``recording-figures``: what a layered recording stores, beside a recording of the top
rendition alone and a simulcast ladder of the same content at the same quality; and how
soon a player shows its first picture (docs/recording.md, "Figures").

**Stored bytes**, per committed capture (VP9 ``L3T3_KEY`` and AV1 ``L3T3`` 1280x720; VP8
``L1T3``, temporal layers only), recorded by :class:`~sfu.recording.recorder.VideoRecorder`
over one pass (``--frames``: its first pictures only; one keyframe, at the start):

* **layered**: every layer file, what the recorder stores;
* **top alone**: what the top level reads (the manifest's ``level_files``: in K-SVC the lower
  files up to their ``key_bytes`` and the top file whole; with full SVC every file);
* **ladder, publisher's encoder** (K-SVC and VP8 only): each level's read, summed over
  the levels (at the top temporal layer; for VP8 per temporal layer): in K-SVC a level's
  read is a single-layer stream of its resolution after the keyframe, as a simulcast
  encoder makes it;
* **ladder, re-encoded** (VP9, AV1): the top level is decoded (PyAV: libvpx-vp9, libdav1d)
  and is the reference, the camera's frames not being in the capture.  Each lower level's
  decoded pictures are compared with the reference downscaled by the linear filter that
  best fits them (least squares, ``2 x factor`` taps square, on luma: the publisher
  encoder's own scaler, as near as a linear filter gets; plain scalers leave up to 16 dB
  of scaler mismatch in the figure).  Its rung is encoded from the reference downscaled by
  that filter, with PyAV's ``libvpx-vp9`` (realtime, ``cpu-used`` 7, no lag) or for AV1
  ``libsvtav1`` (preset 10, ``rtc=1``; ``libaom-av1``, else ``libvpx-vp9``, when missing),
  in constant-quality mode, at the ``crf`` found by a small search (at most ``--tries``
  encodes) that brings the rung's PSNR (luma, against the reference downscaled by the
  filter that best fits the rung, the same measure) within 0.5 dB of the level's.  The top
  rung cannot be re-encoded at the reference's quality (it is the reference): it is the
  publisher's own 720p stream, the top-alone read in K-SVC (after the keyframe S2
  predicts from S2 only), and at least the top file with full SVC (AV1: every S2 frame
  predicts from S1 too; a 720p encode without that needs at least about as much).

**Time to first frame**, from the manifest of the capture recorded looped in real time
with the recorder's keyframe requests answered (segments of 2.03 s): the bytes of segment
0 a player fetches before it can show a picture, one request after the other, each one
round trip (``--rtt``) and the bytes at the rate: the base level's first picture (its file
up to ``key_bytes``), the base file, the top level's files whole, and sparse (K-SVC).

::

    python -m loadtest recording-figures                     # all three captures, 35-75 s
    python -m loadtest recording-figures --codecs VP9 --frames 45 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
from numpy.typing import NDArray

from sfu.recording.manifest import Level, Track
from sfu.recording.playback import level_files, read_level
from sfu.recording.recorder import Recording, VideoRecorder
from sfu.recording.segmenter import Segment
from sfu.rtp.extensions import DEPENDENCY_DESCRIPTOR
from sfu.rtp.packet import parse_rtp

from .capturefile import Capture, read_capture
from .looper import CaptureLooper, replay
from .scenario import CAPTURES, VIDEO_CAPTURES

CODECS = ("VP9", "AV1", "VP8")
DECODERS = {"VP9": "libvpx-vp9", "AV1": "libdav1d", "VP8": "libvpx"}
#: download rates (bit/s) and the round trip of one request, for the time to first frame
RATES = (500_000, 2_000_000, 8_000_000)
RTT = 0.05
#: the PSNR a rung is searched to (dB either side of the level's), and the tolerance reported
CLOSE_ENOUGH = 0.25
TOLERANCE = 0.5
#: PSNR lost per crf step, a first guess for the search (both encoders, this content)
DB_PER_CRF = 0.5
FIRST_CRF = 36
LOOPED_SECONDS = 4.5  # the looped recording: segment 0 whole (2.03 s), the next begun

Luma = NDArray[np.uint8]
Floats = NDArray[np.float64]


# -- recording ------------------------------------------------------------------------------


@dataclass
class Recorded:
    track: Track  # from the recording's manifest
    files: dict[str, bytes]

    def fetch(self, name: str, length: int | None) -> bytes:
        data = self.files[name]
        return data if length is None else data[:length]


def load(codec: str) -> Capture:
    """The committed capture of ``codec``, cut after its last complete picture."""
    capture = read_capture(CAPTURES / VIDEO_CAPTURES[codec])
    while capture.packets and not parse_rtp(capture.packets[-1][1]).marker:
        capture.packets.pop()
    return capture


def new_recorder(capture: Capture) -> VideoRecorder:
    """A recorder of the capture's video track, with its codec, dependency descriptor id
    and format parameters (the tests' too)."""
    info = capture.info
    return VideoRecorder(
        "video",
        info.mime_type.split("/")[-1],
        dd_extension_id=info.extensions.get(DEPENDENCY_DESCRIPTOR),
        parameters={k: str(v) for k, v in info.parameters.items()},
    )


def _recorded(recorder: VideoRecorder, segments: list[Segment]) -> Recorded:
    segments += recorder.finish().segments
    recording = Recording("figures")
    recording.add(recorder)
    (track,) = recording.manifest().tracks
    return Recorded(track, {f.name: f.data for s in segments for f in s.files})


def record_pass(capture: Capture, pictures: int | None = None) -> Recorded:
    """One pass over the capture (its first ``pictures`` only), as the packets came."""
    recorder = new_recorder(capture)
    segments: list[Segment] = []
    stamps: set[int] = set()
    for at, packet in replay(capture, 1):
        if pictures is not None:
            stamp = parse_rtp(packet).timestamp
            if stamp not in stamps:
                if len(stamps) == pictures:
                    break
                stamps.add(stamp)
        segments += recorder.on_rtp(packet, at).segments
    return _recorded(recorder, segments)


def record_looped(capture: Capture, seconds: float = LOOPED_SECONDS) -> Recorded:
    """The capture played in real time (a simulated clock), the recorder's keyframe requests
    answered by the looper (tests/test_recording_decode.py): segments of the target."""
    looper = CaptureLooper(
        capture,
        ssrc=capture.info.ssrc,
        payload_type=capture.info.payload_type,
        extension_ids=None,
    )
    recorder = new_recorder(capture)
    segments: list[Segment] = []
    now = 0.0
    while now < seconds:
        for packet in looper.due(now):
            out = recorder.on_rtp(packet, now)
            segments += out.segments
            if out.wants_keyframe:
                looper.request_keyframe()
        now += 0.005
    return _recorded(recorder, segments)


def top_temporal_levels(track: Track) -> list[Level]:
    """The levels at the top temporal layer, lowest spatial first."""
    temporal = max(level.temporal for level in track.levels)
    return [level for level in track.levels if level.temporal == temporal]


def read_bytes(track: Track, level: Level, *, sparse: bool, segments: int | None = None) -> int:
    """Bytes a player of ``level`` fetches, over every segment (the first ``segments``)."""
    total = 0
    for segment in track.segments[:segments]:
        entries = {f.name: f for f in segment.files.values()}
        for name, length in level_files(track, segment, level, sparse=sparse):
            total += entries[name].bytes if length is None else length
    return total


# -- decoding, scaling, PSNR ----------------------------------------------------------------


def decode(decoder: str, packets: Iterable[bytes]) -> list[av.VideoFrame]:
    ctx = cast(av.VideoCodecContext, av.CodecContext.create(decoder, "r"))
    if decoder == "libdav1d":  # a picture out for each temporal unit in
        ctx.options = {"max_frame_delay": "1"}
    frames: list[av.VideoFrame] = []
    for data in packets:
        frames += ctx.decode(av.Packet(data))
    frames += ctx.decode(None)
    return frames


def decode_level(recorded: Recorded, level: Level) -> list[av.VideoFrame]:
    """The level's pictures over every segment (a decoder per segment), each at the level's
    resolution."""
    track = recorded.track
    frames: list[av.VideoFrame] = []
    for segment in track.segments:
        units = read_level(track, segment, level, recorded.fetch)
        frames += decode(DECODERS[track.codec], (u.data for u in units))
    sizes = {(f.width, f.height) for f in frames}
    if sizes != {(level.width, level.height)}:
        raise ValueError(f"level {level.spatial}: pictures of {sizes}, not all the level's")
    return frames


def luma(frame: av.VideoFrame) -> Luma:
    array = cast(Luma, frame.to_ndarray(format="yuv420p"))
    return array[: frame.height]


class Downscaler:
    """The reference (the top level's luma) downscaled by ``factor`` with a linear filter of
    ``2 x factor`` taps square and an offset, fitted by least squares to pictures of that
    size: the filter that best explains them, and what is left (their PSNR)."""

    def __init__(self, top: list[Luma], factor: int) -> None:
        self.top = top
        self.factor = factor
        self.taps = 2 * factor
        self.size = (top[0].shape[0] // factor, top[0].shape[1] // factor)
        n = self.taps * self.taps + 1
        gram = np.zeros((n, n))
        for picture in top:
            x = self._design(picture)
            gram += x @ x.T
        self.gram = gram

    def _shifted(self, picture: Luma) -> list[NDArray[Any]]:
        """For each tap, the picture shifted by it and decimated: tap (i, j) of output
        pixel (y, x) is input pixel (factor y + factor / 2 - taps / 2 + i, ... + j)."""
        f, taps = self.factor, self.taps
        h, w = self.size
        padded = np.pad(picture, taps, mode="edge")
        off = taps + f // 2 - taps // 2
        return [
            padded[off + i : off + i + h * f : f, off + j : off + j + w * f : f]
            for i in range(taps)
            for j in range(taps)
        ]

    def _design(self, picture: Luma) -> Floats:
        rows = [s.reshape(-1) for s in self._shifted(picture)]
        rows.append(np.ones(self.size[0] * self.size[1], dtype=np.uint8))
        return np.asarray(np.stack(rows), dtype=np.float64)

    def fit(self, pictures: list[Luma]) -> tuple[Floats, float]:
        """The filter (taps and offset) that best downscales the reference to ``pictures``,
        and their PSNR against it (luma, over all pictures' squared errors)."""
        if len(pictures) != len(self.top):
            raise ValueError(f"{len(pictures)} pictures for {len(self.top)} of the reference")
        n = self.taps * self.taps + 1
        cross = np.zeros(n)
        energy = 0.0
        for picture, target in zip(self.top, pictures, strict=True):
            b = target.astype(np.float64)
            for k, shifted in enumerate(self._shifted(picture)):
                cross[k] += float(np.einsum("ij,ij->", shifted, b, dtype=np.float64))
            cross[-1] += float(b.sum())
            energy += float(np.einsum("ij,ij->", b, b))
        # a small ridge: neighbouring pixels of flat pictures are nearly collinear
        ridge = 1e-9 * float(np.trace(self.gram)) / n
        kernel: Floats = np.asarray(
            np.linalg.solve(self.gram + ridge * np.eye(n), cross), dtype=np.float64
        )
        residual = energy - 2 * float(kernel @ cross) + float(kernel @ self.gram @ kernel)
        mse = max(residual, 1e-12) / (len(pictures) * self.size[0] * self.size[1])
        return kernel, 10 * math.log10(255**2 / mse)

    def apply(self, kernel: Floats, picture: Luma) -> Luma:
        out = np.full(self.size, kernel[-1])
        for weight, shifted in zip(kernel[:-1], self._shifted(picture), strict=True):
            out += weight * shifted
        result: Luma = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return result


# -- encoding a rung ------------------------------------------------------------------------


def av1_encoder() -> str:
    """PyAV's AV1 encoder: libsvtav1, libaom-av1, else none (VP9 stands in)."""
    for name in ("libsvtav1", "libaom-av1"):
        if name in av.codecs_available:
            return name
    return "libvpx-vp9"


def encoder_options(encoder: str, crf: int) -> dict[str, str]:
    if encoder == "libvpx-vp9":
        return {"deadline": "realtime", "cpu-used": "7", "lag-in-frames": "0", "crf": str(crf)}
    if encoder == "libsvtav1":
        return {"preset": "10", "crf": str(crf), "svtav1-params": "rtc=1"}
    if encoder == "libaom-av1":
        return {"usage": "realtime", "cpu-used": "9", "lag-in-frames": "0", "crf": str(crf)}
    raise ValueError(f"no settings for {encoder}")


def encode(
    encoder: str, pictures: list[NDArray[np.uint8]], size: tuple[int, int], crf: int
) -> list[bytes]:
    """``pictures`` (yuv420p arrays of ``size``, width by height) at 30 fps, constant
    quality ``crf``, one keyframe (at the start, as the capture)."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration otherwise
    ctx = cast(av.VideoCodecContext, av.CodecContext.create(encoder, "w"))
    ctx.width, ctx.height = size
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.framerate = Fraction(30)
    ctx.gop_size = max(len(pictures), 1)
    ctx.bit_rate = 0
    ctx.options = encoder_options(encoder, crf)
    out: list[bytes] = []
    for i, array in enumerate(pictures):
        frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, 30)
        out += [bytes(p) for p in ctx.encode(frame)]
    out += [bytes(p) for p in ctx.encode(None)]
    return out


@dataclass
class Trial:
    crf: int
    bytes: int
    psnr: float
    cpu: float  # seconds of CPU to encode


@dataclass
class Rung:
    spatial: int
    width: int
    height: int
    svc_psnr: float  # the SVC level's, against the reference downscaled by its best filter
    svc_read: int  # bytes the level reads (sparse where it can)
    encoder: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def chosen(self) -> Trial:
        return min(self.trials, key=lambda t: abs(t.psnr - self.svc_psnr))

    @property
    def matched(self) -> tuple[int, bool]:
        """The rung's bytes at the level's PSNR: the chosen encode's when within
        ``TOLERANCE``, else interpolated (linearly in PSNR) between the nearest encodes on
        either side; and whether interpolated."""
        chosen = self.chosen
        if abs(chosen.psnr - self.svc_psnr) <= TOLERANCE:
            return chosen.bytes, False
        above = [t for t in self.trials if t.psnr >= self.svc_psnr]
        below = [t for t in self.trials if t.psnr < self.svc_psnr]
        if not above or not below:
            return chosen.bytes, False
        a = min(above, key=lambda t: t.psnr)
        b = max(below, key=lambda t: t.psnr)
        share = (self.svc_psnr - b.psnr) / (a.psnr - b.psnr)
        return round(b.bytes + share * (a.bytes - b.bytes)), True


def search_crf(
    measure: Callable[[int], Trial], target: float, tries: int, low: int = 4, high: int = 63
) -> list[Trial]:
    """Encodes at ``crf`` values that bring the PSNR near ``target``: from ``FIRST_CRF`` by
    ``DB_PER_CRF``, then between the nearest crf values on either side."""
    trials: dict[int, Trial] = {}
    crf = FIRST_CRF
    while len(trials) < tries:
        trial = trials[crf] = measure(crf)
        if abs(trial.psnr - target) <= CLOSE_ENOUGH:
            break
        better = [c for c, t in trials.items() if t.psnr >= target]  # crf low enough
        worse = [c for c, t in trials.items() if t.psnr < target]
        if better and worse:
            a, b = max(better), min(worse)
            if b - a <= 1:
                break
            pa, pb = trials[a].psnr, trials[b].psnr
            step = (pa - target) / (pa - pb) if pa > pb else 0.5
            crf = min(b - 1, max(a + 1, a + round(step * (b - a))))
        else:
            step = round((trial.psnr - target) / DB_PER_CRF)
            crf = min(high, max(low, crf + (step or (1 if trial.psnr > target else -1))))
        if crf in trials:
            break
    return sorted(trials.values(), key=lambda t: t.crf)


# -- the figures ----------------------------------------------------------------------------


@dataclass
class Fetch:
    what: str
    requests: int
    bytes: int

    def seconds(self, rate: float, rtt: float = RTT) -> float:
        return self.requests * rtt + 8 * self.bytes / rate


@dataclass
class Figures:
    codec: str
    capture: str
    pictures: int
    seconds: float  # recorded
    resolution: str
    layers: dict[str, int]  # bytes of each layer's files
    layered: int
    top_alone: int
    #: the levels' reads summed (K-SVC, temporal layers): the publisher encoder's ladder
    publisher_ladder: int | None = None
    rungs: list[Rung] = field(default_factory=list)
    top_rung: int | None = None  # the re-encoded ladder's top rung: the publisher's
    top_rung_bound: bool = False  # a lower bound (full SVC)
    record_cpu: float = 0.0  # seconds of CPU the recorder took
    transcode_cpu: float | None = None  # decode of the top level + the chosen rungs' encodes
    first_segment: float = 0.0  # seconds, of the looped recording's segment 0
    first_frame: list[Fetch] = field(default_factory=list)

    @property
    def ladder(self) -> int | None:
        if self.top_rung is None:
            return None
        return self.top_rung + sum(r.matched[0] for r in self.rungs)

    def kbits(self, count: int) -> float:
        return 8 * count / self.seconds / 1000


def first_frame(track: Track) -> list[Fetch]:
    """What a player fetches of segment 0 before it shows a picture."""
    segment = track.segments[0]
    base, top = track.levels[0], track.levels[-1]

    def plan(what: str, level: Level, sparse: bool) -> Fetch:
        reads = level_files(track, segment, level, sparse=sparse)
        return Fetch(what, len(reads), read_bytes(track, level, sparse=sparse, segments=1))

    base_file = segment.files[base.layers[0]]
    out = [
        Fetch("base level, first picture (key_bytes)", 1, base_file.key_bytes),
        plan("base level, segment", base, False),
        plan("top level, segment", top, False),
    ]
    if top.sparse_layers:
        out.append(plan("top level, segment, sparse", top, True))
    return out


def storage(codec: str, pictures: int | None, tries: int, log: Callable[[str], None]) -> Figures:
    capture = load(codec)
    began = time.process_time()
    recorded = record_pass(capture, pictures)
    record_cpu = time.process_time() - began
    track = recorded.track
    levels = top_temporal_levels(track)
    top = track.levels[-1]
    layers = {layer.id: 0 for layer in track.layers}
    for segment in track.segments:
        for layer, entry in segment.files.items():
            layers[layer] += entry.bytes
    figures = Figures(
        codec=codec,
        capture=VIDEO_CAPTURES[codec],
        pictures=sum(s.pictures for s in track.segments),
        seconds=sum(s.duration for s in track.segments),
        resolution=f"{top.width}x{top.height}",
        layers=layers,
        layered=sum(layers.values()),
        top_alone=read_bytes(track, top, sparse=True),
        record_cpu=record_cpu,
    )
    ksvc = any(level.sparse_layers for level in track.levels)
    if ksvc or len(levels) == 1:  # each level's read is a single-layer stream
        rates = levels if ksvc else track.levels
        figures.publisher_ladder = sum(read_bytes(track, lv, sparse=True) for lv in rates)
    if len(levels) == 1:
        return figures  # temporal layers only: no spatial ladder to re-encode

    start = time.process_time()
    top_frames = decode_level(recorded, levels[-1])
    decode_cpu = time.process_time() - start
    reference = [luma(f) for f in top_frames]
    encoder = "libvpx-vp9" if codec == "VP9" else av1_encoder()
    decoder = {"libvpx-vp9": "libvpx-vp9"}.get(encoder, "libdav1d")
    figures.transcode_cpu = decode_cpu
    for level in levels[:-1]:
        assert level.width and level.height and top.width
        factor = top.width // level.width
        size = (level.width, level.height)
        scaler = Downscaler(reference, factor)
        kernel, svc_psnr = scaler.fit([luma(f) for f in decode_level(recorded, level)])
        # the rung's source: the reference luma by the level's filter, chroma by swscale
        sources: list[Luma] = []
        for frame, y in zip(top_frames, reference, strict=True):
            chroma = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            array = cast(Luma, chroma.to_ndarray(format="yuv420p"))
            array[: size[1]] = scaler.apply(kernel, y)
            sources.append(array)
        rung = Rung(
            level.spatial,
            size[0],
            size[1],
            svc_psnr,
            read_bytes(track, level, sparse=True),
            encoder,
        )

        def measure(
            crf: int,
            scaler: Downscaler = scaler,
            sources: list[Luma] = sources,
            size: tuple[int, int] = size,
        ) -> Trial:
            began = time.process_time()
            packets = encode(encoder, sources, size, crf)
            cpu = time.process_time() - began
            out = [luma(f) for f in decode(decoder, packets)]
            _, rung_psnr = scaler.fit(out)
            return Trial(crf, sum(len(p) for p in packets), rung_psnr, cpu)

        rung.trials = search_crf(measure, svc_psnr, tries)
        figures.rungs.append(rung)
        figures.transcode_cpu += rung.chosen.cpu
        log(
            f"  {codec} {size[0]}x{size[1]}: SVC {svc_psnr:.2f} dB; "
            + ", ".join(f"crf {t.crf} {t.bytes} B {t.psnr:.2f} dB" for t in rung.trials)
        )
    if ksvc:
        figures.top_rung = figures.top_alone
    else:  # full SVC: the top file, at least
        figures.top_rung = layers[top.layers[-1]]
        figures.top_rung_bound = True
    return figures


def run(
    codecs: Iterable[str] = CODECS,
    pictures: int | None = None,
    tries: int = 4,
    log: Callable[[str], None] = print,
) -> list[Figures]:
    out = []
    for codec in codecs:
        figures = storage(codec, pictures, tries, log)
        looped = record_looped(load(codec)).track
        figures.first_segment = looped.segments[0].duration
        figures.first_frame = first_frame(looped)
        out.append(figures)
    return out


# -- the report -----------------------------------------------------------------------------


def _kb(count: int) -> str:
    return f"{count / 1000:.0f} KB"


def report(results: list[Figures], rates: Iterable[float] = RATES, rtt: float = RTT) -> str:
    rates = list(rates)
    lines = [
        "Stored bytes (one pass of each capture; kbit/s over the recorded time):",
        "",
        "| capture | layered | top alone | ladder, publisher's encoder | ladder, re-encoded "
        "| layered / ladder |",
        "|---|---|---|---|---|---|",
    ]
    for f in results:
        layers = ", ".join(f"{k} {_kb(v)}" for k, v in f.layers.items())
        publisher = (
            f"{_kb(f.publisher_ladder)} ({f.layered / f.publisher_ladder:.3f})"
            if f.publisher_ladder
            else "-"
        )
        ladder = f.ladder
        if ladder is None:
            reencoded, ratio = "-", "-"
        else:
            sign = ">= " if f.top_rung_bound else ""
            reencoded = f"{sign}{_kb(ladder)} ({f.kbits(ladder):.0f} kbit/s)"
            ratio = f"{'<= ' if f.top_rung_bound else ''}{f.layered / ladder:.2f}"
        lines.append(
            f"| {f.codec} {f.resolution}, {f.pictures} pictures, {f.seconds:.2f} s "
            f"| {_kb(f.layered)} ({f.kbits(f.layered):.0f} kbit/s; {layers}) "
            f"| {_kb(f.top_alone)} ({f.top_alone / f.layered:.0%}) | {publisher} "
            f"| {reencoded} | {ratio} |"
        )
    lines += [
        "",
        "The re-encoded ladder's rungs (PSNR: luma, against the top level downscaled by the "
        "filter that best fits each):",
        "",
        "| capture | level | SVC: PSNR, level read | rung: encoder, crf, PSNR, bytes "
        "| at the level's PSNR | rung / level read | tried (crf: dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in results:
        for r in f.rungs:
            c = r.chosen
            matched, interpolated = r.matched
            tried = ", ".join(f"{t.crf}: {t.psnr:.2f}" for t in r.trials)
            lines.append(
                f"| {f.codec} | {r.width}x{r.height} | {r.svc_psnr:.2f} dB, {_kb(r.svc_read)} "
                f"| {r.encoder} crf {c.crf}, {c.psnr:.2f} dB ({c.psnr - r.svc_psnr:+.2f}), "
                f"{_kb(c.bytes)} | {_kb(matched)}{' (interpolated)' if interpolated else ''} "
                f"| {matched / r.svc_read:.2f} | {tried} |"
            )
        if f.top_rung is not None:
            what = "the top file (at least)" if f.top_rung_bound else "the top-alone read"
            lines.append(
                f"| {f.codec} | {f.resolution} | the reference | {what}, {_kb(f.top_rung)} "
                f"| {_kb(f.top_rung)} | - | - |"
            )
    lines += [
        "",
        "CPU per second of video: the recorder (one pass, all layers), and transcoding"
        " to the ladder (decoding the top level, encoding the chosen lower rungs):",
        "",
    ]
    for f in results:
        transcode = (
            f"; transcoding {f.transcode_cpu / f.seconds:.3f} s"
            if f.transcode_cpu is not None
            else ""
        )
        lines.append(f"* {f.codec}: recorder {f.record_cpu / f.seconds:.3f} s{transcode}")
    head = " | ".join(f"{r / 1e6:g} Mbit/s" for r in rates)
    lines += [
        "",
        f"Time to first frame (segment 0 of the looped recording; requests one after the "
        f"other, {rtt * 1000:.0f} ms each):",
        "",
        f"| capture | fetched | requests | bytes | {head} |",
        "|---|---|---|---|" + "---|" * len(rates),
    ]
    for f in results:
        for fetch in f.first_frame:
            times = " | ".join(f"{fetch.seconds(r, rtt):.2f} s" for r in rates)
            lines.append(
                f"| {f.codec} ({f.first_segment:.2f} s segment) | {fetch.what} | {fetch.requests} "
                f"| {fetch.bytes} | {times} |"
            )
    return "\n".join(lines)


def to_json(results: list[Figures]) -> list[dict[str, Any]]:
    out = []
    for f in results:
        data = asdict(f)
        data["ladder"] = f.ladder
        for rung, chosen in zip(data["rungs"], f.rungs, strict=True):
            rung["chosen"] = asdict(chosen.chosen)
            rung["matched_bytes"], rung["interpolated"] = chosen.matched
        for fetch, plan in zip(data["first_frame"], f.first_frame, strict=True):
            fetch["seconds"] = {str(r): plan.seconds(r) for r in RATES}
        out.append(data)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--codecs", nargs="+", choices=CODECS, default=list(CODECS), help="(all three)"
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="the captures' first pictures only (all 150)"
    )
    parser.add_argument("--tries", type=int, default=4, help="encodes per rung at most (4)")
    parser.add_argument("--json", type=Path, default=None, help="the figures, as JSON, here")


def command(args: argparse.Namespace) -> int:
    start = time.monotonic()
    results = run(args.codecs, args.frames, args.tries)
    print(report(results))
    print(f"\n({time.monotonic() - start:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(results), indent=1))
    return 0
