"""The server's Prometheus metrics: one :class:`Metrics` per application, its own registry.

``Metrics()`` always exists: the :class:`~sfu.rooms.room.RoomManager` makes one unless given
one (``RoomManager.metrics``), every room it creates holds it (``Room.metrics``), and the
aiohttp application has it under ``METRICS_KEY`` (:mod:`sfu.signaling.state`), served at
``/metrics`` to admins.  Callers never check for None.

Three kinds of figures (every name, label and unit: ``docs/stats.md``):

* read at scrape time from the live objects (:mod:`.live`): rooms, participants, tracks,
  forwarded and dropped packets, NACKs, keyframe requests;
* counted when they happen, a few times per second per subscriber at most, never per
  packet: layer switches (where ``level_changed`` is sent), the subscribers' downlink
  estimates (once a second each), the viewers' own figures (their receiver reports);
* the process (CPU, memory, file descriptors: ``sfu_process_*``).

Labels are of bounded cardinality: ``policy`` (a room policy's name, from the settings),
``kind``, ``reason``, ``role``; never a room's or a participant's name.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector
from prometheus_client.exposition import choose_encoder

from .. import faults
from ..adapters.peers import SubscriberPeer
from ..forwarding.downtrack import DownTrack
from .live import LiveCollector, LiveParticipant, LiveRooms

#: the reasons a subscriber's level changes (``level_changed``); any other counts as "other"
SWITCH_REASONS = frozenset({"window", "pin", "policy", "bandwidth", "cpu"})

#: bits/s: a thumbnail's audio and video to a screen share's top layer
DOWNLINK_BUCKETS = (
    100e3,
    200e3,
    300e3,
    500e3,
    750e3,
    1e6,
    1.5e6,
    2e6,
    3e6,
    5e6,
    7.5e6,
    10e6,
    20e6,
    50e6,
)
#: seconds from ``level_changed`` to the first painted frame of the new size
SWITCH_PAINT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
#: seconds from joining to the first painted frame
FIRST_FRAME_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0)


class Metrics:
    """The registry and every metric of one application (see the module)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        registry = self.registry
        #: the rooms' live objects, read at scrape time
        self.live = LiveCollector()
        registry.register(self.live)
        ProcessCollector(namespace="sfu", registry=registry)
        self._worker = Info(
            "sfu_worker", "This process: its worker id in a cluster, its node.", registry=registry
        )
        self._worker.info({"worker": "0", "node": ""})
        self._switches = Counter(
            "sfu_layer_switches",
            "Level changes sent to subscribers (level_changed), by reason.",
            ["policy", "reason"],
            registry=registry,
        )
        self._downlink = Histogram(
            "sfu_downlink_estimate_bits_per_second",
            "Subscribers' downlink estimates, observed once a second per subscriber.",
            ["policy"],
            buckets=DOWNLINK_BUCKETS,
            registry=registry,
        )
        self._decoded = Counter(
            "sfu_viewer_frames_decoded",
            "Frames the viewers decoded (their receiver reports).",
            ["policy"],
            registry=registry,
        )
        self._dropped = Counter(
            "sfu_viewer_frames_dropped",
            "Frames the viewers dropped (their receiver reports).",
            ["policy"],
            registry=registry,
        )
        self._freezes = Counter(
            "sfu_viewer_freezes",
            "Freezes the viewers saw (their receiver reports).",
            ["policy"],
            registry=registry,
        )
        self._freeze_seconds = Counter(
            "sfu_viewer_freeze_seconds",
            "Time the viewers' videos stood frozen.",
            ["policy"],
            registry=registry,
        )
        self._switch_paint = Histogram(
            "sfu_viewer_switch_paint_seconds",
            "From a level_changed of another size to the viewer's first painted frame of it.",
            ["policy"],
            buckets=SWITCH_PAINT_BUCKETS,
            registry=registry,
        )
        self._first_frame = Histogram(
            "sfu_viewer_first_frame_seconds",
            "From joining the room to the viewer's first painted frame of a track.",
            ["policy"],
            buckets=FIRST_FRAME_BUCKETS,
            registry=registry,
        )

    # -- wiring ---------------------------------------------------------------------------------
    def watch(self, rooms: LiveRooms) -> None:
        """The rooms whose live objects are read at each scrape (the room manager)."""
        self.live.rooms = rooms

    def set_worker(self, worker: str, node: str) -> None:
        """This process's place in a cluster (``sfu_worker_info``): bounded, no pid."""
        self._worker.info({"worker": worker, "node": node})

    def note_participant(self, policy: str, participant: LiveParticipant) -> None:
        """``participant`` leaves: its counts since the last scrape are kept."""
        try:
            self.live.note_participant(policy, participant)
        except Exception:  # leaving must not depend on the metrics
            faults.record("metrics", f"policy {policy!r}")

    def note_downtrack(self, policy: str, downtrack: DownTrack) -> None:
        """``downtrack`` goes (its track was unpublished): its counts so far are kept."""
        try:
            self.live.note_downtrack(policy, downtrack)
        except Exception:
            faults.record("metrics", downtrack.context)

    # -- counted as they happen (never per packet) ----------------------------------------------
    def level_switch(self, policy: str, reason: str) -> None:
        """A ``level_changed`` sent to a subscriber, for ``reason`` (LevelEvent.reason)."""
        self._switches.labels(policy, reason if reason in SWITCH_REASONS else "other").inc()

    def observe_downlink(self, policy: str, subscriber: SubscriberPeer) -> None:
        """A subscriber's downlink estimate, if it has one (once a second per subscriber)."""
        estimate = subscriber.congestion.estimate
        if estimate is not None:
            self._downlink.labels(policy).observe(estimate)

    def viewer_frames(self, policy: str, decoded: int, dropped: int) -> None:
        """Frames decoded and dropped by a viewer since its last report (deltas; a negative
        one, from a viewer whose counters restarted, counts as 0)."""
        if decoded > 0:
            self._decoded.labels(policy).inc(decoded)
        if dropped > 0:
            self._dropped.labels(policy).inc(dropped)

    def viewer_freezes(self, policy: str, count: int, seconds: float) -> None:
        """Freezes, and their duration, since a viewer's last report (deltas)."""
        if count > 0:
            self._freezes.labels(policy).inc(count)
        if seconds > 0:
            self._freeze_seconds.labels(policy).inc(seconds)

    def switch_paint(self, policy: str, seconds: float) -> None:
        """From a ``level_changed`` to the first painted frame of the new size."""
        if seconds >= 0:
            self._switch_paint.labels(policy).observe(seconds)

    def first_frame(self, policy: str, seconds: float) -> None:
        """From joining to the first painted frame of a track."""
        if seconds >= 0:
            self._first_frame.labels(policy).observe(seconds)

    # -- exposition ---------------------------------------------------------------------------
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (Prometheus text by default, or
        OpenMetrics), and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
