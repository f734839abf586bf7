"""A capture looped (sans-IO), the one way the load tests and the tests replay captures.

:class:`CaptureLooper` makes an endless stream of a capture: paced at the capture's own timing
(:meth:`CaptureLooper.due`), looping at a keyframe, and jumping to the next keyframe when the
SFU asks for one. Header extensions are renumbered to the ids negotiated on the publisher's
connection, and abs-send-time is stamped at send time.

:func:`replay` is the same looper without a clock: whole passes over the capture, each packet
with its send time, the capture's own header extensions kept (the in-process tests and
``python -m loadtest profile`` feed a ``MediaSource`` with them).

Either way, everything the receiver checks continues across a loop or a jump: sequence
numbers, timestamps, VP8/VP9 picture ids and dependency-descriptor frame numbers. The first
pass keeps the capture's own timestamps (from ``first_timestamp``), picture ids and frame
numbers. Nothing else is added or changed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from sfu.codecs.errors import CodecError
from sfu.codecs.keyframe import KEYFRAME_DETECTORS
from sfu.codecs.vp8 import Vp8Descriptor, parse_vp8_descriptor, rewrite_vp8_descriptor
from sfu.codecs.vp9 import Vp9Descriptor, parse_vp9_descriptor, rewrite_vp9_descriptor
from sfu.rtp import extensions as ext
from sfu.rtp.ntp import ntp_from_time
from sfu.rtp.packet import parse_rtp, serialize_extensions

from .capturefile import Capture

_HEADER = struct.Struct("!BBHII")


@dataclass(slots=True)
class _Packet:
    at: float  # seconds since the capture's first packet
    marker: bool
    timestamp: int
    payload: bytes
    extensions: list[tuple[str, bytes]]  # by URI
    raw_extensions: list[tuple[int, bytes]]  # as captured: by id, in the packet's order
    picture_start: bool
    keyframe: bool
    vp8: Vp8Descriptor | None
    vp9: Vp9Descriptor | None
    frame_number: int | None  # dependency descriptor


class CaptureLooper:
    def __init__(
        self,
        capture: Capture,
        *,
        ssrc: int,
        payload_type: int,
        extension_ids: dict[str, int] | None,
        first_sequence_number: int = 0,
        first_timestamp: int = 0,
    ) -> None:
        self.capture = capture
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = capture.info.clock_rate
        self.codec = capture.info.mime_type.split("/")[-1].upper()
        #: negotiated ids by URI of the extensions sent; None: the capture's own, all of them
        self.extension_ids = (
            None
            if extension_ids is None
            else {
                uri: i
                for uri, i in extension_ids.items()
                if uri
                in (
                    ext.DEPENDENCY_DESCRIPTOR,
                    ext.AUDIO_LEVEL,
                    ext.ABS_SEND_TIME,
                    ext.TRANSPORT_WIDE_CC,
                )
            }
        )
        self._dd_id = capture.info.extensions.get(ext.DEPENDENCY_DESCRIPTOR)
        uri_by_id = {i: uri for uri, i in capture.info.extensions.items()}
        detect = KEYFRAME_DETECTORS.get(self.codec)
        self.packets: list[_Packet] = []
        previous_ts: int | None = None
        for at, data in capture.packets:
            h = parse_rtp(data)
            payload = data[h.payload_offset : h.payload_end]
            vp8 = vp9 = None
            try:
                if self.codec == "VP9":
                    vp9 = parse_vp9_descriptor(payload)
                elif self.codec == "VP8":
                    vp8 = parse_vp8_descriptor(payload)
            except CodecError:
                pass
            exts = [(uri_by_id[i], v) for i, v in h.extensions.items() if i in uri_by_id]
            dd = next((v for u, v in exts if u == ext.DEPENDENCY_DESCRIPTOR), None)
            picture_start = h.timestamp != previous_ts
            previous_ts = h.timestamp
            self.packets.append(
                _Packet(
                    at,
                    h.marker,
                    h.timestamp,
                    payload,
                    exts,
                    list(h.extensions.items()),
                    picture_start,
                    picture_start and detect is not None and detect(payload),
                    vp8,
                    vp9,
                    int.from_bytes(dd[1:3], "big") if dd is not None and len(dd) >= 3 else None,
                )
            )
        if capture.info.kind == "audio":
            self.keyframes = [0]
        else:
            self.keyframes = [i for i, p in enumerate(self.packets) if p.keyframe] or [0]
        self.sequence_number = first_sequence_number & 0xFFFF
        self._index = 0
        self._segment_start_at = 0.0  # capture time of the segment's first packet
        self._segment_start_wall: float | None = None
        self._first_timestamp = first_timestamp & 0xFFFFFFFF
        self._ts_base = self._first_timestamp
        self._ts0 = self.packets[0].timestamp if self.packets else 0
        # picture id and frame number of the segment's first packet, and what they become
        # (None: the first seen, unchanged)
        self._pid_base: int | None = None
        self._pid0: int | None = None
        self._fn_base: int | None = None
        self._fn0: int | None = None
        self._last_ts: int | None = None
        self._last_pid: int | None = None
        self._last_fn: int | None = None
        self._jump = False
        self.keyframe_requests = 0
        #: transport-wide sequence numbers, when negotiated (shared by the publisher's streams)
        self.transport_sequence: list[int] = [0]
        self.loops = 0
        self.sent = 0

    def request_keyframe(self) -> None:
        """Jump to the next keyframe of the capture at the next picture boundary."""
        self.keyframe_requests += 1
        self._jump = True

    def _start_segment(self, index: int, now: float) -> None:
        p = self.packets[index]
        self._index = index
        self._segment_start_at = p.at
        self._segment_start_wall = now
        self._ts0 = p.timestamp
        if self._last_ts is None:  # the first segment: the capture's timestamps, rebased
            self._ts_base = self._first_timestamp
        else:  # a frame after the last one sent
            self._ts_base = (self._last_ts + self.clock_rate // 30) & 0xFFFFFFFF
        self._pid0 = None
        self._pid_base = (self._last_pid + 1) if self._last_pid is not None else None
        self._fn0 = None
        self._fn_base = (self._last_fn + 1) if self._last_fn is not None else None

    def due(self, now: float) -> list[bytes]:
        """The packets to send by ``now`` (seconds, any monotonic clock)."""
        if not self.packets:
            return []
        if self._segment_start_wall is None:
            self._start_segment(0, now)
        out: list[bytes] = []
        while True:
            if self._index >= len(self.packets):
                self.loops += 1
                self._start_segment(self.keyframes[0], now)
            p = self.packets[self._index]
            if p.picture_start and self._jump and self._index not in self.keyframes:
                self._jump = False
                after = [k for k in self.keyframes if k > self._index]
                if not after:
                    self.loops += 1
                self._start_segment(after[0] if after else self.keyframes[0], now)
                p = self.packets[self._index]
            elif p.picture_start and self._jump:
                self._jump = False  # this picture is a keyframe already
            assert self._segment_start_wall is not None
            if p.at - self._segment_start_at > now - self._segment_start_wall:
                return out
            out.append(self._render(p, now))
            self._index += 1

    def passes(self, loops: int) -> Iterator[tuple[float, bytes]]:
        """``loops`` whole passes over the capture from its first packet, without a clock:
        (send time, packet), pass ``n`` later by ``n`` times the capture's length (its last
        packet's time and a frame)."""
        if not self.packets:
            return
        length = self.packets[-1].at + 1 / 30
        for loop in range(loops):
            start = loop * length
            self._start_segment(0, start)
            for p in self.packets:
                yield start + p.at, self._render(p, start + p.at)
            self.loops += 1

    def _render(self, p: _Packet, now: float) -> bytes:
        ts = (self._ts_base + p.timestamp - self._ts0) & 0xFFFFFFFF
        self._last_ts = ts
        payload = p.payload
        descriptor = p.vp9 or p.vp8
        if descriptor is not None and descriptor.picture_id is not None:
            if self._pid0 is None:
                self._pid0 = descriptor.picture_id
            if self._pid_base is None:
                self._pid_base = descriptor.picture_id
            mask = (1 << descriptor.picture_id_bits) - 1
            pid = (self._pid_base + descriptor.picture_id - self._pid0) & mask
            self._last_pid = pid
            try:
                if p.vp9 is not None:
                    payload = rewrite_vp9_descriptor(payload, p.vp9, picture_id=pid)
                elif p.vp8 is not None:
                    payload = rewrite_vp8_descriptor(payload, p.vp8, picture_id=pid)
            except CodecError:
                pass
        if self.extension_ids is None:  # the capture's own, frame numbers continued
            elements = [
                (i, self._frame_number(p, value) if i == self._dd_id else value)
                for i, value in p.raw_extensions
            ]
        else:
            elements = self._negotiated_extensions(p, now)
        block = serialize_extensions(elements)
        header = _HEADER.pack(
            0x90 if block else 0x80,
            (0x80 if p.marker else 0) | self.payload_type,
            self.sequence_number,
            ts,
            self.ssrc,
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.sent += 1
        return header + block + payload

    def _frame_number(self, p: _Packet, value: bytes) -> bytes:
        """``value``, a dependency descriptor, with the frame number continued."""
        if p.frame_number is None:
            return value
        if self._fn0 is None:
            self._fn0 = p.frame_number
        if self._fn_base is None:
            self._fn_base = p.frame_number
        fn = (self._fn_base + p.frame_number - self._fn0) & 0xFFFF
        self._last_fn = fn
        return value[:1] + fn.to_bytes(2, "big") + value[3:]

    def _negotiated_extensions(self, p: _Packet, now: float) -> list[tuple[int, bytes]]:
        """The packet's extensions with the negotiated ids, a transport-wide sequence number
        when negotiated, abs-send-time stamped ``now``."""
        assert self.extension_ids is not None
        elements = []
        twcc = self.extension_ids.get(ext.TRANSPORT_WIDE_CC)
        if twcc is not None:
            counter = self.transport_sequence
            elements.append((twcc, (counter[0] & 0xFFFF).to_bytes(2, "big")))
            counter[0] += 1
        for uri, value in p.extensions:
            out_id = self.extension_ids.get(uri)
            if out_id is None:
                continue
            if uri == ext.DEPENDENCY_DESCRIPTOR:
                value = self._frame_number(p, value)
            elif uri == ext.ABS_SEND_TIME:
                value = ext.abs_send_time(ntp_from_time(now))
            elements.append((out_id, value))
        return elements


def replay(
    capture: Capture,
    loops: int = 1,
    *,
    ssrc: int | None = None,
    payload_type: int | None = None,
    first_sequence_number: int = 0,
    first_timestamp: int = 0,
) -> Iterator[tuple[float, bytes]]:
    """(send time, packet) for ``loops`` passes over ``capture`` (:meth:`CaptureLooper.passes`),
    with the capture's SSRC, payload type and header extensions unless told otherwise."""
    looper = CaptureLooper(
        capture,
        ssrc=capture.info.ssrc if ssrc is None else ssrc,
        payload_type=capture.info.payload_type if payload_type is None else payload_type,
        extension_ids=None,
        first_sequence_number=first_sequence_number,
        first_timestamp=first_timestamp,
    )
    return looper.passes(loops)
