"""What a simulated subscriber checks of the video it receives, without decoding (sans-IO).

Frames are followed through the dependency descriptor (which the SFU forwards for every
codec when negotiated): a frame is *complete* when every packet from its first to its last is
there, and *decodable* when it is complete and every frame it references was decodable
(keyframes reference nothing). Without a descriptor, frames are delimited by timestamps and
only completeness is checked. A *freeze* is a gap of more than 500 ms between decodable frames.

Every packet of every frame is checked. With a descriptor, a packet whose descriptor only names
a template (three bytes, or with the active decode targets alone) is read from that template
(spatial and temporal id, references), without the codec's payload descriptor: the frame facts
are the descriptor's either way. Other packets (a structure attached, custom references, no
known structure, no descriptor) go through the :class:`~sfu.forwarding.layers.LayerParser`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sfu.codecs.av1_dd import TemplateStructure
from sfu.forwarding.layers import LayerParser
from sfu.rtp.packet import RtpHeader

FREEZE_GAP = 0.5
#: a complete frame waits this long (seconds) for a reference still being repaired
WAIT_FOR_REFERENCE = 1.0


@dataclass
class _Frame:
    first_seq: int | None = None
    last_seq: int | None = None
    packets: int = 0
    references: list[int] = field(default_factory=list)
    keyframe: bool = False
    sid: int = 0
    tid: int = 0
    done: bool = False
    #: when all its packets were there (0: not yet)
    complete_at: float = 0.0
    #: its RTP timestamp, and whether its last packet has the marker bit (it ends a picture)
    timestamp: int = 0
    marker: bool = False


class FrameChecker:
    def __init__(self, codec: str, dd_extension_id: int | None) -> None:
        self.layers = LayerParser(codec, dd_extension_id)
        self.dd_extension_id = dd_extension_id
        #: packets read through the layer parser (the others from their template alone)
        self.parsed = 0
        #: of the structure the parser knows: template id -> (spatial id, temporal id,
        #: frame number differences of the references), and the descriptor length with the
        #: active decode targets alone
        self._templates: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        self._structure: TemplateStructure | None = None
        self._with_active_targets = 0
        self.frames_complete = 0
        self.frames_decodable = 0
        self.frames_undecodable = 0
        self.freezes = 0
        self.longest_gap = 0.0
        #: (time the freeze ended, its length) of each freeze
        self.freeze_log: list[tuple[float, float]] = []
        self.last_decodable: float | None = None
        #: (time, spatial id, temporal id) of each decodable frame
        self.decoded: list[tuple[float, int, int]] = []
        self._frames: dict[int, _Frame] = {}
        self._decodable: dict[int, bool] = {}
        #: frame number -> frames complete but waiting for it (a reference)
        self._waiting: dict[int, list[int]] = {}
        self._ts_frame: dict[int, int] = {}  # without DD: timestamp -> pseudo frame number
        self._next_pseudo = 0
        #: the checker wants a keyframe (an undecodable frame was seen)
        self.keyframe_wanted = False
        #: called with (RTP timestamp, spatial id, now) when the frame that ends a picture
        #: (its last packet has the marker bit: the top layer forwarded) becomes decodable
        #: (loadtest.viewer.PictureTally.paint)
        self.on_picture: Callable[[int, int, float], None] | None = None

    def add(self, data: bytes, header: RtpHeader, now: float) -> None:
        dd_id = self.dd_extension_id
        if dd_id is not None:
            raw = header.extensions.get(dd_id)
            if raw is not None:
                size = len(raw)
                # the template alone, or with the active decode targets (flags 0x08) alone
                if size == 3 or (size == self._with_active_targets and raw[3] >> 3 == 0x08):
                    template = self._templates.get(raw[0] & 0x3F)
                    if template is not None:
                        first = raw[0]
                        self._add_dd(
                            (raw[1] << 8) | raw[2],
                            first & 0x80,
                            first & 0x40,
                            template,
                            False,
                            header,
                            now,
                        )
                        return
        self.parsed += 1
        info = self.layers.parse(
            data[header.payload_offset : header.payload_end], header.extensions, header.marker
        )
        if not info.valid:
            return
        dd = info.dd
        if dd is not None:
            if self.layers.structure is not self._structure:
                self._learn(self.layers.structure)
            self._add_dd(
                dd.frame_number,
                dd.start_of_frame,
                dd.end_of_frame,
                (dd.spatial_id, dd.temporal_id, tuple(dd.fdiffs)),
                dd.structure is not None and not dd.fdiffs,
                header,
                now,
            )
            return
        number = self._ts_frame.get(header.timestamp, -1)
        if number < 0:
            number = self._ts_frame[header.timestamp] = self._next_pseudo
            self._next_pseudo += 1
            if len(self._ts_frame) > 256:
                self._ts_frame.pop(next(iter(self._ts_frame)))
        frame = self._frames.get(number)
        if frame is None:
            frame = self._frames[number] = _Frame(keyframe=True, timestamp=header.timestamp)
        if info.start_of_frame and frame.first_seq is None:
            frame.first_seq = header.sequence_number
        if header.marker:
            frame.last_seq = header.sequence_number
            frame.marker = True
        self._add_packet(number, frame, now)

    def _learn(self, structure: TemplateStructure | None) -> None:
        """The templates of the structure the parser now knows, by template id."""
        self._structure = structure
        self._templates = {}
        self._with_active_targets = 0
        if structure is None:
            return
        for index, t in enumerate(structure.templates):
            self._templates[(structure.template_id_offset + index) % 64] = (
                t.spatial_id,
                t.temporal_id,
                tuple(t.fdiffs),
            )
        # three bytes, then 5 bits of flags and one bit per decode target, padded
        self._with_active_targets = 3 + (5 + structure.decode_target_count + 7) // 8

    def _add_dd(
        self,
        number: int,
        start: int | bool,
        end: int | bool,
        template: tuple[int, int, tuple[int, ...]],
        keyframe: bool,
        header: RtpHeader,
        now: float,
    ) -> None:
        """A packet of frame ``number`` (dependency descriptor frame number)."""
        frame = self._frames.get(number)
        if frame is None:
            frame = self._frames[number] = _Frame()
        if start:
            sid, tid, fdiffs = template
            frame.first_seq = header.sequence_number
            frame.references = [(number - d) & 0xFFFF for d in fdiffs]
            frame.keyframe = keyframe
            frame.sid, frame.tid = sid, tid
            frame.timestamp = header.timestamp
        if end:
            frame.last_seq = header.sequence_number
            frame.marker = header.marker
        self._add_packet(number, frame, now)

    def _add_packet(self, number: int, frame: _Frame, now: float) -> None:
        frame.packets += 1
        self._evaluate(number, frame, now)
        if len(self._frames) > 512:
            for old in list(self._frames)[:128]:
                self._frames.pop(old)

    def _evaluate(self, number: int, frame: _Frame, now: float) -> None:
        if frame.done or frame.first_seq is None or frame.last_seq is None:
            return
        expected = ((frame.last_seq - frame.first_seq) & 0xFFFF) + 1
        if frame.packets < expected:
            return
        if not frame.keyframe:
            # a reference still on its way (a retransmission may complete it): wait for it,
            # as a receiver's frame buffer does; one known undecodable: so is this frame
            pending = [r for r in frame.references if r not in self._decodable]
            known_bad = any(self._decodable.get(r) is False for r in frame.references)
            if frame.complete_at == 0.0:
                frame.complete_at = now
            if pending and not known_bad and now - frame.complete_at < WAIT_FOR_REFERENCE:
                for reference in pending:
                    waiters = self._waiting.setdefault(reference, [])
                    if number not in waiters:
                        waiters.append(number)
                return
        frame.done = True
        self.frames_complete += 1
        decodable = frame.keyframe or all(self._decodable.get(r, False) for r in frame.references)
        self._decodable[number] = decodable
        if len(self._decodable) > 1024:
            for old in list(self._decodable)[:256]:
                self._decodable.pop(old)
        if decodable:
            self._decoded(frame, now)
        else:
            self.frames_undecodable += 1
            self.keyframe_wanted = True
        # then the frames that waited for this one (decoded after it, as a decoder does)
        for waiter in self._waiting.pop(number, ()):
            waiting = self._frames.get(waiter)
            if waiting is not None and not waiting.done:
                self._evaluate(waiter, waiting, now)

    def _decoded(self, frame: _Frame, now: float) -> None:
        self.frames_decodable += 1
        if frame.keyframe:
            self.keyframe_wanted = False
        if self.last_decodable is not None:
            gap = now - self.last_decodable
            self.longest_gap = max(self.longest_gap, gap)
            if gap > FREEZE_GAP:
                self.freezes += 1
                self.freeze_log.append((now, gap))
        self.last_decodable = now
        self.decoded.append((now, frame.sid, frame.tid))
        if frame.marker and self.on_picture is not None:
            self.on_picture(frame.timestamp, frame.sid, now)

    def expire(self, now: float) -> None:
        """Give up on references that did not come in time: the frames waiting for them are
        undecodable (and a keyframe is wanted)."""
        for reference in list(self._waiting):
            for number in list(self._waiting.get(reference, ())):
                frame = self._frames.get(number)
                if frame is None or frame.done:
                    continue
                if now - frame.complete_at >= WAIT_FOR_REFERENCE:
                    self._evaluate(number, frame, now)
            if reference in self._decodable or all(
                self._frames.get(n) is None or self._frames[n].done
                for n in self._waiting.get(reference, ())
            ):
                self._waiting.pop(reference, None)

    def incomplete(self) -> int:
        """Frames whose end was seen but some packet never came."""
        return sum(
            1
            for f in self._frames.values()
            if not f.done and f.first_seq is not None and f.last_seq is not None
        )
