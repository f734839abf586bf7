"""What a viewer would report of one subscribed video track, measured without decoding
(sans-IO): the figures of the ``receiver_report`` signaling message (``sfu.protocol``
``TrackReport``), in the names of the browser's ``getStats()``.

A *picture* is what a browser's decoder gets at once: every packet of one RTP timestamp
(all the spatial layers forwarded of it), the last one with the marker bit.  The subscriber's
:class:`~loadtest.checker.FrameChecker` already follows every frame without decoding it:
complete (every packet from its first to its last), then decodable (every frame it
references decodable; a complete frame waits up to a second for a reference that a
retransmission may still complete, as a receiver's frame buffer does).  A picture is
**decoded** (``frames_decoded``), or "painted", when the frame that ends it (the marker
packet's: the top spatial layer forwarded) becomes decodable: the checker calls
:meth:`PictureTally.paint`.  Pictures older than it of which a packet came but that were not
painted are given up then, and count as **dropped** (``frames_dropped``), as a browser's
frame buffer drops what it skips when it decodes a later frame.  A picture painted after a
later one was (a late reference) changes nothing; one that no packet of came is neither: no
viewer knows of it.  So a picture missing a packet is dropped only when a picture that does
not need it is painted: a lost packet that a retransmission repairs in time, or whose
dependents wait for it, costs a delay (perhaps a freeze), not a drop.  Per packet, the tally
only notes the timestamps it sees (:meth:`PictureTally.add`).

Per painted picture (never per packet):

* **freezes**, as libwebrtc counts them for ``freezeCount`` / ``totalFreezesDuration`` (the
  W3C definition): an inter-frame delay of at least max(3 x the average delay, the average
  + 150 ms), the average over the last 30 delays this one included, once there are 5; the
  delay is the freeze's duration.  The first picture after a pause (``level_changed`` with
  ``paused``) is not a freeze.
* **jitter buffer delay**: from a picture's first packet to its painting, summed.
* **size**: of the picture's top spatial layer (the marker packet's), from the bitstream
  (VP9 scalability structure, dependency descriptor resolutions, VP8 keyframe header, as
  the checker's :class:`~sfu.forwarding.layers.LayerParser` read them) or else from the
  ``level_changed`` messages, which carry the level's width and height.
* **time to first frame**: from joining (``first_frame`` on the wire) or from when the track
  was offered (``first_frame_s`` in the results) to the first painted picture.
* **switch-paint latency**: from a ``level_changed`` to another spatial layer (another size)
  to the first painted picture of that layer; 0 when one was painted before the message came
  (the server sends it when it switches, the media may be faster).  A switch superseded
  before it painted is not counted.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sfu.forwarding.layers import LayerParser

#: libwebrtc's VideoQualityObserver: delays averaged, delays needed before judging, and the
#: least increase over the average that is a freeze (seconds)
FREEZE_WINDOW = 30
FREEZE_MIN_SAMPLES = 5
FREEZE_MIN_INCREASE = 0.150
#: switch paints one receiver_report carries at most (TrackReport.switch_paints)
MAX_SWITCH_PAINTS = 16
#: pictures seen and not painted (yet) that are remembered, at most
MAX_PENDING = 256
#: TrackReport's bounds
_MAX_FIRST_FRAME = 3600.0
_MAX_SWITCH_PAINT = 60.0


class PictureTally:
    """One subscribed video track, as its viewer would count it (see the module)."""

    def __init__(
        self, track_id: str = "", joined_at: float | None = None, offered_at: float | None = None
    ) -> None:
        self.track_id = track_id
        #: when the viewer joined the room, and when this track was offered to it
        self.joined_at = joined_at
        self.offered_at = offered_at if offered_at is not None else joined_at
        #: where the picture sizes are read from the bitstream (its ``resolutions``)
        self.parser: LayerParser | None = None
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.freeze_count = 0
        #: seconds
        self.total_freezes_duration = 0.0
        self.jitter_buffer_delay = 0.0
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        #: the last painted picture's top spatial layer and size (None: not known)
        self.spatial: int | None = None
        self.frame_width: int | None = None
        self.frame_height: int | None = None
        #: size by spatial layer, from level_changed messages
        self.sizes: dict[int, tuple[int, int]] = {}
        #: every switch-paint latency (seconds), and those not yet in a report
        self.switch_paints: list[float] = []
        self._unreported: list[float] = []
        #: pictures seen and not painted: RTP timestamp -> their first packet's arrival
        self._pending: dict[int, float] = {}
        self._last_seen = -1
        self._newest_done: int | None = None  # the timestamp of the last picture painted
        self._delays: deque[float] = deque(maxlen=FREEZE_WINDOW)
        self._delay_sum = 0.0
        self._paused = False
        self._level_spatial: int | None = None
        #: (level_changed time, the spatial layer switched to) not painted yet
        self._switch: tuple[float, int] | None = None
        self._report_at: float | None = None
        self._report_decoded = 0

    # -- per packet --------------------------------------------------------------------
    def add(self, timestamp: int, now: float) -> None:
        """A packet of this track arrived (before the checker reads it): its picture is
        known from now on."""
        if timestamp == self._last_seen:
            return
        self._last_seen = timestamp
        pending = self._pending
        if timestamp in pending:
            return
        done = self._newest_done
        if done is not None:
            ahead = (timestamp - done) & 0xFFFFFFFF
            if ahead == 0 or ahead >= 0x80000000:
                return  # of a picture painted or given up already
        pending[timestamp] = now
        if len(pending) > MAX_PENDING:  # the oldest will never be painted
            del pending[next(iter(pending))]
            self.frames_dropped += 1

    # -- per painted picture -----------------------------------------------------------
    def paint(self, timestamp: int, spatial: int, now: float) -> None:
        """The picture of ``timestamp``, whose top layer is ``spatial``, became decodable
        (:attr:`loadtest.checker.FrameChecker.on_picture`)."""
        done = self._newest_done
        if done is not None:
            ahead = (timestamp - done) & 0xFFFFFFFF
            if ahead == 0 or ahead >= 0x80000000:
                return  # older than one painted: it was given up then
        pending = self._pending
        first_at = pending.pop(timestamp, now)
        for older in [t for t in pending if (timestamp - t) & 0xFFFFFFFF < 0x80000000]:
            del pending[older]
            self.frames_dropped += 1
        self._newest_done = timestamp
        self.frames_decoded += 1
        self.jitter_buffer_delay += now - first_at
        self.spatial = spatial
        size = self.size_of(spatial)
        if size is not None:
            self.frame_width, self.frame_height = size
        last = self.last_frame_at
        if last is None:
            self.first_frame_at = now
        elif self._paused:  # a pause is not a freeze, nor a delay to average
            self._paused = False
        else:
            delay = now - last
            delays = self._delays
            if len(delays) == FREEZE_WINDOW:
                self._delay_sum -= delays[0]
            delays.append(delay)
            self._delay_sum += delay
            if len(delays) >= FREEZE_MIN_SAMPLES:
                average = self._delay_sum / len(delays)
                if delay >= max(3 * average, average + FREEZE_MIN_INCREASE):
                    self.freeze_count += 1
                    self.total_freezes_duration += delay
        self.last_frame_at = now
        switch = self._switch
        if switch is not None and switch[1] == spatial:
            self._switch = None
            self._paint_after_switch(now - switch[0])

    def _paint_after_switch(self, latency: float) -> None:
        latency = min(_MAX_SWITCH_PAINT, max(0.0, latency))
        self.switch_paints.append(latency)
        self._unreported.append(latency)
        del self._unreported[:-MAX_SWITCH_PAINTS]

    def size_of(self, spatial: int) -> tuple[int, int] | None:
        """The size of ``spatial`` layer pictures: the bitstream's, else the server's."""
        parser = self.parser
        if parser is not None and spatial < len(parser.resolutions):
            return parser.resolutions[spatial]
        return self.sizes.get(spatial)

    # -- signaling -----------------------------------------------------------------------
    def on_level(self, now: float, spatial: int, width: int, height: int, paused: bool) -> None:
        """A ``level_changed`` message for this track, received at ``now``."""
        if width > 0 and height > 0:
            self.sizes[spatial] = (width, height)
        if paused:
            self._paused = True
            self._switch = None
            return
        previous = self._level_spatial if self._level_spatial is not None else self.spatial
        self._level_spatial = spatial
        if previous is None or previous == spatial:
            return
        if self.spatial == spatial:
            if self._switch is None:  # painted before the message came
                self._paint_after_switch(0.0)
            else:  # back to what is painted before the other layer was: no switch
                self._switch = None
            return
        self._switch = (now, spatial)

    def report(self, now: float, element: tuple[int, int] | None = None) -> dict[str, Any]:
        """This track's entry of a ``receiver_report`` (``TrackReport``): cumulative counts,
        the frame rate since the last report, the switch paints since the last report."""
        entry: dict[str, Any] = {
            "track_id": self.track_id,
            "frames_decoded": self.frames_decoded,
            # Chromium's framesDropped counts pictures a busy machine did not decode or show
            # in time: a simulated viewer never does that. The pictures the network cost it
            # (self.frames_dropped) are in its results; reported, they would make the
            # server's receiver-CPU fit take packet loss for a busy CPU
            "frames_dropped": 0,
            "freeze_count": self.freeze_count,
            "total_freezes_duration": round(self.total_freezes_duration, 4),
            "jitter_buffer_delay": round(self.jitter_buffer_delay, 4),
            "jitter_buffer_emitted_count": self.frames_decoded,
        }
        if self._report_at is not None and now > self._report_at:
            rate = (self.frames_decoded - self._report_decoded) / (now - self._report_at)
            entry["frames_per_second"] = round(min(1000.0, rate), 2)
        self._report_at, self._report_decoded = now, self.frames_decoded
        if self.frame_width is not None and self.frame_height is not None:
            entry["frame_width"], entry["frame_height"] = self.frame_width, self.frame_height
        if element is not None:
            entry["element_width"], entry["element_height"] = element
        if self.first_frame_at is not None and self.joined_at is not None:
            first = self.first_frame_at - self.joined_at
            entry["first_frame"] = round(min(_MAX_FIRST_FRAME, max(0.0, first)), 4)
        entry["switch_paints"] = [round(p, 4) for p in self._unreported]
        self._unreported = []
        return entry

    def result(self) -> dict[str, Any]:
        """The whole run's figures of this track, for the load test's results."""
        first = None
        if self.first_frame_at is not None and self.offered_at is not None:
            first = round(max(0.0, self.first_frame_at - self.offered_at), 4)
        seconds = 0.0
        if self.first_frame_at is not None and self.last_frame_at is not None:
            seconds = self.last_frame_at - self.first_frame_at
        return {
            "track_id": self.track_id,
            "frames_decoded": self.frames_decoded,
            "frames_dropped": self.frames_dropped,
            "freeze_count": self.freeze_count,
            "total_freezes_duration": round(self.total_freezes_duration, 4),
            "jitter_buffer_delay": round(self.jitter_buffer_delay, 4),
            "first_frame_s": first,
            "video_seconds": round(seconds, 3),
            "frame_width": self.frame_width,
            "frame_height": self.frame_height,
            "switch_paints_s": [round(p, 4) for p in self.switch_paints],
        }
