"""A room's recording: the asyncio side of :mod:`sfu.recording` (docs/recording.md).

One recording per room while it records (its policy's ``record``, or an operator's
request): a folder ``DIR/ROOM/ID`` holding each segment's layer files and the manifest.
Each published track gets a recorder, fed by a tap on its source; a participant who
publishes again (a reconnect: the same identity, or name without tokens, the same kind of
track) goes on in the same recorder, which marks the new stream as a discontinuity.

The tap only queues the packet (a list append): the recorders run every ``INTERVAL`` in a
task of their own, after the fan-out, so the other subscribers' packets never wait for
them.  Files are written in a thread, one at a time in order, the manifest after the
segments it names.  Keyframe requests go to the source (rate-limited by the source too).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import faults
from ..config import RecordingSettings
from ..forwarding.source import MediaSource
from ..recording.recorder import AudioRecorder, RecorderOutput, Recording, VideoRecorder
from ..recording.writer import RecordingWriter
from ..rtp import extensions as ext

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

logger = logging.getLogger(__name__)

#: seconds between two runs of the recorders
INTERVAL = 0.05
#: ... and between two polls without packets (gaps declared lost, segments due)
POLL_INTERVAL = 0.5
#: packets queued at most (beyond, the oldest are dropped and counted: the recorders are
#: far behind, the machine overloaded)
MAX_PENDING = 20_000

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")

Recorder = VideoRecorder | AudioRecorder


def recording_id(now: datetime | None = None) -> str:
    """A recording's folder name: its UTC start, then a few random characters."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class RoomRecording:
    def __init__(self, room: Room, settings: RecordingSettings) -> None:
        assert settings.dir is not None
        self.room = room
        self.settings = settings
        self.id = recording_id()
        self.started = datetime.now(UTC)
        self.folder = Path(settings.dir) / room.name / self.id
        self.recording = Recording(f"{room.name}-{self.id}")
        self.writer: RecordingWriter | None = None
        #: (identity or name, kind) -> recorder; and the source feeding each
        self.recorders: dict[tuple[str, str], Recorder] = {}
        self.feeding: dict[str, tuple[MediaSource, Recorder]] = {}  # by track id
        self._pending: list[tuple[Recorder, bytes, float]] = []
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._writes: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self.stopped = False
        #: started because the room's policy says ``record`` (a reload may stop it)
        self.by_policy = False

    # -- tracks ---------------------------------------------------------------------------
    def add(self, participant: Participant, source: MediaSource) -> None:
        """Record ``source`` from now on."""
        if self.stopped or source.track_id in self.feeding:
            return
        key = (participant.identity or participant.name, _kind(source))
        recorder = self.recorders.get(key)
        if recorder is not None and any(r is recorder for _, r in self.feeding.values()):
            recorder = None  # someone else of that name publishes it now: a track of its own
        if recorder is None:
            recorder = self._recorder(key, source)
            if recorder is None:
                return
            self.recorders.setdefault(key, recorder)
        self.feeding[source.track_id] = (source, recorder)
        pending = self._pending

        def tap(data: bytes, now: float, recorder: Recorder = recorder) -> None:
            pending.append((recorder, data, now))

        source.taps.append(tap)
        source.request_keyframe(time.monotonic())
        self._start()
        logger.info("room %r: recording %s (%s)", self.room.name, source.track_id, recorder.track)

    def remove(self, source: MediaSource) -> None:
        """``source`` went (unpublished, or its participant left): its tap goes."""
        fed = self.feeding.pop(source.track_id, None)
        if fed is not None:
            source.taps[:] = [t for t in source.taps if _recorder_of(t) is not fed[1]]

    def _recorder(self, key: tuple[str, str], source: MediaSource) -> Recorder | None:
        base = _UNSAFE.sub("-", key[0]).strip("-")[:40] or "participant"
        name = f"{base}-{key[1]}"
        number = 2
        while name in self.recording.tracks:
            name, number = f"{base}-{key[1]}{number}", number + 1
        params = source.params
        codec = params.codec.upper()
        try:
            if source.kind == "audio":
                if codec != "OPUS":
                    return None
                return self.recording.add(
                    AudioRecorder(name, target_duration=self.settings.segment_duration)
                )
            return self.recording.add(
                VideoRecorder(
                    name,
                    codec,
                    clock_rate=params.clock_rate,
                    dd_extension_id=params.extensions.get(ext.DEPENDENCY_DESCRIPTOR),
                    target_duration=self.settings.segment_duration,
                    parameters={k: str(v) for k, v in params.parameters.items() if v is not None},
                )
            )
        except ValueError as exc:  # a codec the recorder does not take (H.264)
            logger.warning("room %r: %s is not recorded: %s", self.room.name, name, exc)
            return None

    # -- running --------------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._writer_task = asyncio.ensure_future(self._write_loop())

    async def _run(self) -> None:
        polled = time.monotonic()
        while not self.stopped:
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            try:
                self._drain(now)
                if now - polled >= POLL_INTERVAL:
                    polled = now
                    for recorder in list(self.recording.tracks.values()):
                        self._handle(recorder, recorder.poll(now))
            except Exception:
                faults.record("recording", f"room {self.room.name!r}", now)

    def _drain(self, now: float) -> None:
        pending = self._pending
        if len(pending) > MAX_PENDING:
            self.dropped += len(pending) - MAX_PENDING
            del pending[: len(pending) - MAX_PENDING]
        batch = pending[:]
        pending.clear()
        for recorder, data, arrival in batch:
            self._handle(recorder, recorder.on_rtp(data, arrival))

    def _handle(self, recorder: Recorder, out: RecorderOutput) -> None:
        if out.wants_keyframe:
            for source, fed in self.feeding.values():
                if fed is recorder:
                    source.request_keyframe(time.monotonic())
        if out.segments:
            for segment in out.segments:
                self._writes.put_nowait(("segment", segment))
            self._writes.put_nowait(("manifest", self.recording.manifest()))
        if out.expired:
            self._writes.put_nowait(("remove", out.expired))

    async def _write_loop(self) -> None:
        while True:
            what, item = await self._writes.get()
            if what == "end":
                return
            try:
                await asyncio.to_thread(self._write, what, item)
            except Exception:
                faults.record("recording write", f"room {self.room.name!r}", time.monotonic())

    def _write(self, what: str, item: object) -> None:
        if self.writer is None:
            self.writer = RecordingWriter(self.folder, fsync=self.settings.fsync)
        if what == "segment":
            self.writer.write_segment(item)  # type: ignore[arg-type]
        elif what == "manifest":
            self.writer.write_manifest(item)  # type: ignore[arg-type]
        elif what == "remove":
            self.writer.remove(item)  # type: ignore[arg-type]

    async def stop(self) -> None:
        """End the recording: taps off, the last segments and the final manifest written."""
        if self.stopped:
            return
        self.stopped = True
        for source, _ in list(self.feeding.values()):
            self.remove(source)
        try:
            self._drain(time.monotonic())
            out = self.recording.finish()
            for segment in out.segments:
                self._writes.put_nowait(("segment", segment))
            if self.recording.tracks:
                self._writes.put_nowait(("manifest", self.recording.manifest()))
        except Exception:
            faults.record("recording", f"room {self.room.name!r}", time.monotonic())
        self._writes.put_nowait(("end", None))
        if self._writer_task is not None:
            await self._writer_task
        if self._task is not None:
            self._task.cancel()
        logger.info("room %r: recording %s ended", self.room.name, self.id)

    def stats(self) -> dict[str, object]:
        return {
            "id": self.id,
            "folder": str(self.folder),
            "tracks": sorted(self.recording.tracks),
            "bytes_written": self.writer.bytes_written if self.writer else 0,
            "dropped": self.dropped,
        }


def _kind(source: MediaSource) -> str:
    if source.kind == "audio":
        return "audio"
    return "screen" if source.source_type == "screen" else "video"


def _recorder_of(tap: object) -> object:
    defaults = getattr(tap, "__defaults__", None)
    return defaults[0] if defaults else None
