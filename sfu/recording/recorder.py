"""Recorders: one track's RTP in, finished segments and keyframe requests out (sans-IO).

A recorder is one more subscriber of a source, fed every packet of every layer (a tap on
the source's fan-out: ``on_rtp(packet, arrival)``) and nothing else; it returns
:class:`RecorderOutput`: the segments it finished (files as bytes and names, for
:mod:`.writer`), and whether to ask the publisher for a keyframe (at the start, when a
segment is due, when a loss broke a layer's chain).  :class:`Recording` holds the recorders
of one recording and makes its manifest.

A new SSRC, or a timestamp or sequence number jump (a publisher's reconnect, an encoder's
restart), ends the open segment: the next one starts at the next keyframe, marked as a
discontinuity, its presentation times continuing where the last segment ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from ..rtp.packet import RtpError, RtpHeader, parse_rtp
from .depacketize import opus_samples
from .frames import FrameAssembler, LayerFrame, Picture
from .history import TrackHistory
from .manifest import Manifest
from .reorder import Ordered, ReorderBuffer
from .segmenter import Segment, Segmenter

__all__ = ["AudioRecorder", "RecorderOutput", "Recording", "VideoRecorder"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: a sequence number this far from the expected one starts a new stream
_SEQUENCE_JUMP = 3000
_Item = tuple[RtpHeader, bytes, float]


@dataclass(slots=True)
class RecorderOutput:
    #: segments finished by this packet (written by the caller, then the manifest)
    segments: list[Segment] = field(default_factory=list)
    #: ask the publisher for a keyframe (rate-limited by the recorder)
    wants_keyframe: bool = False
    #: files of segments that left the live window (to remove, a while later)
    expired: list[str] = field(default_factory=list)


class _TrackRecorder:
    kind: Literal["video", "audio"] = "video"

    def __init__(
        self,
        track: str,
        codec: str,
        clock_rate: int,
        *,
        target_duration: float,
        split_temporal: bool,
        reorder_window: float,
        max_gap: float,
        window: int | None,
        parameters: dict[str, str] | None,
        channels: int | None = None,
    ) -> None:
        if not _NAME.fullmatch(track):
            raise ValueError(f"a track name is 1-64 of A-Z a-z 0-9 _ -, not {track!r}")
        self.track = track
        self.codec = codec.upper()
        self.clock_rate = clock_rate
        self.reorder_window = reorder_window
        self.max_gap = max_gap
        self.segmenter = Segmenter(
            track,
            self.codec,
            clock_rate,
            target_duration=target_duration,
            split_temporal=split_temporal,
        )
        self.history = TrackHistory(
            track,
            self.kind,
            "opus" if self.codec == "OPUS" else self.codec,
            clock_rate,
            target_duration=target_duration,
            split_temporal=split_temporal,
            parameters=parameters,
            channels=channels,
            window=window,
        )
        self._buffer: ReorderBuffer[_Item] = ReorderBuffer(reorder_window)
        self._ssrc: int | None = None
        self._last_input_ts: int | None = None
        self._ts: int | None = None  # extended RTP timestamp of the last picture
        self._base: int | None = None  # extended RTP timestamp at pts == _offset
        self._offset = 0
        self._end = 0  # where the last segment ended (pts)
        self._index = 0  # the next picture's index
        self._last_pts: int | None = None
        self._skipping = False  # a picture could not start the recording: no keyframe yet
        self.ended = False
        #: (SSRC, next sequence number, last timestamp) of the streams that another followed
        self._retired: list[tuple[int, int | None, int | None]] = []
        #: counts: packets not RTP, pictures before a keyframe, discontinuities, packets of
        #: a stream left behind
        self.malformed = 0
        self.stale = 0
        self.skipped = 0
        self.discontinuities = 0

    # -- input --------------------------------------------------------------------------
    def on_rtp(
        self, packet: bytes, arrival: float, header: RtpHeader | None = None
    ) -> RecorderOutput:
        """Take one packet of the track (``header``: its parsed header, if the caller has
        it) that arrived at ``arrival`` (seconds, the caller's clock)."""
        if self.ended:
            return RecorderOutput()
        if header is None:
            try:
                header = parse_rtp(packet)
            except RtpError:
                self.malformed += 1
                return RecorderOutput()
        out = RecorderOutput()
        if self._ssrc is None:
            self._ssrc = header.ssrc
        elif header.ssrc != self._ssrc or self._jumped(header):
            if self._stale(header):
                self.stale += 1  # late from a stream left behind
                return out
            ended = (self._ssrc, self._buffer.next, self._last_input_ts)
            self._restart(out)
            self._retired = [*self._retired[-7:], ended]
            self._ssrc = header.ssrc
        self._last_input_ts = header.timestamp
        item = (header, packet, arrival)
        for ordered in self._buffer.push(header.sequence_number, item, arrival):
            self._ordered(ordered, out)
        out.wants_keyframe = self._wants_keyframe(arrival)
        return out

    def poll(self, now: float) -> RecorderOutput:
        """Go past gaps that have waited long enough, without a new packet."""
        out = RecorderOutput()
        for ordered in self._buffer.poll(now):
            self._ordered(ordered, out)
        return out

    def finish(self) -> RecorderOutput:
        """The stream ended: everything held is given out, the last segment closed."""
        out = RecorderOutput()
        if not self.ended:
            self._drain(out)
            self.ended = True
        return out

    # -- streams ------------------------------------------------------------------------
    def _jumped(self, header: RtpHeader) -> bool:
        last = self._last_input_ts
        if last is not None:
            delta = ((header.timestamp - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if delta > self.max_gap * self.clock_rate or delta < -self.clock_rate:
                return True
        expected = self._buffer.next
        if expected is not None:
            return abs(self._buffer.extend(header.sequence_number) - expected) > _SEQUENCE_JUMP
        return False

    def _stale(self, header: RtpHeader) -> bool:
        """A packet of a stream that another followed, arriving late (near where it ended)."""
        for ssrc, sequence, timestamp in self._retired:
            if ssrc != header.ssrc or sequence is None or timestamp is None:
                continue
            seq_delta = ((header.sequence_number - sequence + 0x8000) & 0xFFFF) - 0x8000
            ts_delta = ((header.timestamp - timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if abs(seq_delta) <= _SEQUENCE_JUMP and abs(ts_delta) <= self.clock_rate:
                return True
        return False

    def _drain(self, out: RecorderOutput) -> None:
        """Give out everything held and close the open segment."""
        for ordered in self._buffer.flush():
            self._ordered(ordered, out)
        self._flush(out)
        self._emit(self.segmenter.end(self._end_pts()), out)

    def _restart(self, out: RecorderOutput) -> None:
        self._drain(out)
        self.discontinuities += 1
        if self.history.segments:
            self.segmenter.discontinuity = True
        self._offset = self._end
        self._base = self._ts = None
        self._skipping = False
        self._buffer = ReorderBuffer(self.reorder_window)
        self._reset()

    def _emit(self, segment: Segment | None, out: RecorderOutput) -> None:
        if segment is None:
            return
        self._end = segment.pts + segment.duration
        out.segments.append(segment)
        out.expired += self.history.add(segment)

    def _pts(self, timestamp: int) -> int:
        """The presentation time of an RTP timestamp (extended from the last one)."""
        if self._ts is None:
            ext = timestamp
        else:
            delta = ((timestamp - self._ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            ext = self._ts + delta
        self._ts = ext
        if self._base is None:
            self._base = ext
        return self._offset + ext - self._base

    def _add(self, picture: Picture, out: RecorderOutput) -> None:
        if not self.segmenter.open and not picture.keyframe:
            self.skipped += 1
            self._skipping = True
            return
        pts = self._last_pts = self._pts(picture.timestamp)
        self._emit(self.segmenter.add(picture, self._index, pts), out)
        self._index += 1

    # -- per kind -----------------------------------------------------------------------
    def _ordered(self, ordered: Ordered[_Item], out: RecorderOutput) -> None:
        raise NotImplementedError

    def _flush(self, out: RecorderOutput) -> None:
        """The stream ended or restarts: finish what is in progress."""

    def _reset(self) -> None:
        """A new stream starts."""

    def _end_pts(self) -> int | None:
        return None

    def _wants_keyframe(self, now: float) -> bool:
        return False


class VideoRecorder(_TrackRecorder):
    """Records one VP8, VP9 or AV1 track, layer by layer."""

    kind: Literal["video", "audio"] = "video"

    def __init__(
        self,
        track: str,
        codec: str,
        *,
        clock_rate: int = 90000,
        dd_extension_id: int | None = None,
        target_duration: float = 2.0,
        split_temporal: bool | None = None,
        reorder_window: float = 0.5,
        keyframe_interval: float = 1.0,
        max_gap: float = 5.0,
        window: int | None = None,
        parameters: dict[str, str] | None = None,
    ) -> None:
        """``dd_extension_id``: the dependency descriptor's header extension id, when
        negotiated; ``split_temporal``: a file per temporal layer too (default: for VP8
        only); ``keyframe_interval``: seconds between keyframe requests; ``max_gap``: a
        timestamp jump longer than this (seconds) is a new stream; ``window``: segments kept
        in the manifest (None: all); ``parameters``: the codec's fmtp (for the codec
        string)."""
        super().__init__(
            track,
            codec,
            clock_rate,
            target_duration=target_duration,
            split_temporal=codec.upper() == "VP8" if split_temporal is None else split_temporal,
            reorder_window=reorder_window,
            max_gap=max_gap,
            window=window,
            parameters=parameters,
        )
        self.dd_extension_id = dd_extension_id
        self.keyframe_interval = keyframe_interval
        self.assembler = FrameAssembler(self.codec, dd_extension_id)
        self._asked: float | None = None
        self._unreferenced = 0
        #: a frame was not written because one it references was not: ask for a keyframe
        self.chain_broken = False
        self.keyframe_requests = 0

    def _ordered(self, ordered: Ordered[_Item], out: RecorderOutput) -> None:
        header, packet, arrival = ordered.item
        picture = self.assembler.packet(header, packet, ordered.lost_before, arrival)
        if picture is not None:
            self._picture(picture, out)

    def _picture(self, picture: Picture, out: RecorderOutput) -> None:
        if picture.keyframe:
            self.chain_broken = False
        elif self.assembler.unreferenced != self._unreferenced:
            self.chain_broken = True
        self._unreferenced = self.assembler.unreferenced
        self._add(picture, out)

    def _flush(self, out: RecorderOutput) -> None:
        picture = self.assembler.flush()
        if picture is not None:
            self._picture(picture, out)

    def _reset(self) -> None:
        self.assembler = FrameAssembler(self.codec, self.dd_extension_id)
        self._unreferenced = 0
        self.chain_broken = False
        self._asked = None

    def _wants_keyframe(self, now: float) -> bool:
        """Ask when a picture could not start the recording, when the segment is due, when a
        layer's chain broke; again after ``keyframe_interval`` while still so."""
        segmenter = self.segmenter
        if segmenter.open:
            if not segmenter.due and not self.chain_broken:
                return False
        elif not self._skipping:
            return False  # nothing seen yet: the first picture may be a keyframe
        if self._asked is not None and now - self._asked < self.keyframe_interval:
            return False
        self._asked = now
        self.keyframe_requests += 1
        return True


class AudioRecorder(_TrackRecorder):
    """Records one Opus track: every packet a record, segments cut at the target."""

    kind: Literal["video", "audio"] = "audio"

    def __init__(
        self,
        track: str,
        codec: str = "opus",
        *,
        clock_rate: int = 48000,
        channels: int = 2,
        target_duration: float = 2.0,
        reorder_window: float = 0.5,
        max_gap: float = 5.0,
        window: int | None = None,
    ) -> None:
        if codec.upper() != "OPUS":
            raise ValueError(f"no recording for {codec}: Opus only")
        super().__init__(
            track,
            codec,
            clock_rate,
            target_duration=target_duration,
            split_temporal=False,
            reorder_window=reorder_window,
            max_gap=max_gap,
            window=window,
            parameters=None,
            channels=channels,
        )
        self._last_samples = 0

    def _ordered(self, ordered: Ordered[_Item], out: RecorderOutput) -> None:
        header, packet, arrival = ordered.item
        payload = packet[header.payload_offset : header.payload_end]
        if not payload:
            return
        self._last_samples = opus_samples(payload)
        frame = LayerFrame(0, 0, payload, True, True, False)
        self._add(Picture(header.timestamp, arrival, [frame], True), out)

    def _end_pts(self) -> int | None:
        """After the last packet, by its duration."""
        if not self.segmenter.open or self._last_pts is None or not self._last_samples:
            return None
        return self._last_pts + self._last_samples * self.clock_rate // 48000


class Recording:
    """The recorders of one recording, and its manifest."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tracks: dict[str, VideoRecorder | AudioRecorder] = {}

    def add(self, recorder: R) -> R:
        """Record one more track."""
        if recorder.track in self.tracks:
            raise ValueError(f"track {recorder.track} is recorded already")
        self.tracks[recorder.track] = recorder
        return recorder

    @property
    def ended(self) -> bool:
        return bool(self.tracks) and all(r.ended for r in self.tracks.values())

    def finish(self) -> RecorderOutput:
        """End every track: the last segments."""
        out = RecorderOutput()
        for recorder in self.tracks.values():
            done = recorder.finish()
            out.segments += done.segments
            out.expired += done.expired
        return out

    def manifest(self) -> Manifest:
        tracks = [r.history.track() for r in self.tracks.values()]
        return Manifest(
            recording=self.name,
            target_duration=max((t.target_duration for t in tracks), default=0.0),
            endlist=self.ended,
            tracks=tracks,
        )


R = TypeVar("R", VideoRecorder, AudioRecorder)
