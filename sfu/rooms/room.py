"""Rooms and participants: who publishes what, who receives it, under which policy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .. import faults
from .. import protocol as m
from ..config import EventName, RecordingSettings, RoomPolicy, RoomsSettings
from ..events.logs import log_event
from ..events.model import Listener, RoomEvent, TrackRef, dispatch
from ..forwarding.source import MediaSource
from ..metrics import Metrics
from ..quality.viewer import RoomQuality
from ..sdp.limits import SdpLimits
from .active_speakers import RoomSpeakers
from .dynacast import RoomDynacast
from .participant import Participant, spawn
from .recording import RoomRecording

logger = logging.getLogger(__name__)


class RoomObserver(Protocol):
    """Told of what happens in every room (the cluster's cascading follows it)."""

    def joined(self, room: Room, participant: Participant) -> None: ...

    def published(self, room: Room, participant: Participant, source: MediaSource) -> None: ...

    def left(self, room: Room, participant: Participant) -> None: ...

    def muted(self, room: Room, participant: Participant, source: MediaSource) -> None: ...

    def unpublished(self, room: Room, participant: Participant, source: MediaSource) -> None: ...


class RoomError(Exception):
    """A request the room refuses; ``code`` goes into the error message."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def track_info(participant: Participant, source: MediaSource) -> m.TrackInfo:
    return m.TrackInfo(
        track_id=source.track_id,
        participant_id=participant.id,
        kind="audio" if source.kind == "audio" else "video",
        codec=source.params.codec,
        muted=source.muted,
        source="microphone" if source.kind == "audio" else source.source_type,
    )


class Room:
    def __init__(
        self,
        name: str,
        on_empty: Callable[[Room], None],
        policy: RoomPolicy | None = None,
        policy_name: str = "default",
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or RoomPolicy()
        self.policy_name = policy_name
        #: the server's metrics (the room manager's; one of its own otherwise)
        self.metrics = metrics if metrics is not None else Metrics()
        self.participants: dict[str, Participant] = {}
        self._on_empty = on_empty
        self.observer: RoomObserver | None = None
        #: told of its events (the manager's list, shared); each is logged anyway
        self.listeners: list[Listener] = []
        #: the viewers' time to first frame and switch-paint latency
        self.quality = RoomQuality()
        #: STUN/TURN servers the joining clients are told of (the manager's list, shared)
        self.ice_servers: list[m.IceServerInfo] = []
        self.speakers = RoomSpeakers(self)  # who speaks: from the first audio track on
        self.dynacast = RoomDynacast(self)  # layers nobody needs: from the first video on
        #: its recording, while it records (policy ``record``, or an operator's request)
        self.recording: RoomRecording | None = None

    def emit(
        self,
        name: EventName,
        participant: Participant | None = None,
        source: MediaSource | None = None,
        reason: str | None = None,
    ) -> None:
        """An event of this room: logged (sfu.events), and given to the listeners."""
        track = None
        if source is not None:
            track = TrackRef(source.track_id, source.kind, source.params.codec, source.source_type)
        ref = participant.ref if participant is not None else None
        event = RoomEvent(name, self.name, ref, track, reason)
        log_event(event)
        dispatch(event, self.listeners)

    def emit_left(self, participant: Participant, reason: str) -> None:
        """Its tracks unpublished, then the participant left."""
        for source in list(participant.sources.values()):
            self.emit("track_unpublished", participant, source)
        self.emit("participant_left", participant, reason=reason)

    @property
    def tracks(self) -> list[m.TrackInfo]:
        return [track_info(p, s) for p in self.participants.values() for s in p.sources.values()]

    @property
    def publishers(self) -> int:
        return sum(1 for p in self.participants.values() if p.publisher is not None)

    def start_recording(
        self, settings: RecordingSettings, by_policy: bool = False
    ) -> RoomRecording:
        """Record every track published here (those there already too), until
        :meth:`stop_recording` or the room goes."""
        if self.recording is None:
            self.recording = RoomRecording(self, settings)
            self.recording.by_policy = by_policy
            for participant in list(self.participants.values()):
                if participant.mirror_of is None:
                    for source in list(participant.sources.values()):
                        self.recording.add(participant, source)
        return self.recording

    async def stop_recording(self) -> None:
        recording, self.recording = self.recording, None
        if recording is not None:
            await recording.stop()

    def set_policy(self, name: str, policy: RoomPolicy) -> None:
        """A reloaded policy: running subscriptions take the new caps on their next selection."""
        self.policy_name = name
        self.policy = policy
        for participant in list(self.participants.values()):
            try:
                participant.apply_policy(policy)
            except Exception:
                faults.record("policy", participant.context)

    def check_publish(self, participant: Participant, scalability_mode: str | None) -> None:
        policy = participant.policy
        if not policy.may_publish(participant.role):
            raise RoomError("forbidden", "this participant may not publish in this room")
        if participant.publisher is None and self.publishers >= policy.max_publishers:
            raise RoomError("room_full", f"the room has {policy.max_publishers} publishers")
        modes = policy.scalability_modes
        if modes is not None and scalability_mode is not None and scalability_mode not in modes:
            raise RoomError(
                "not_allowed",
                f"scalability mode {scalability_mode} is not allowed here ({', '.join(modes)})",
            )

    async def evict_identity(self, identity: str) -> None:
        """The participant holding ``identity`` leaves (told ``duplicate_identity``): the
        same token's holder joins again (a reconnect, or a shared token); one participant per
        identity, the newest."""
        for other in list(self.participants.values()):
            if other.identity == identity:
                await self.leave(other, "duplicate_identity")
                await other.send(
                    m.Bye(
                        code="duplicate_identity",
                        reason=f"{identity!r} joined {self.name!r} again on another "
                        "connection: you have left the room",
                    )
                )
                if other.on_removed is not None:
                    other.on_removed(other)

    async def join(self, participant: Participant, request_id: int | str | None = None) -> None:
        if len(self.participants) >= self.policy.max_participants:
            raise RoomError(
                "room_full", f"the room has {self.policy.max_participants} participants"
            )
        others = list(self.participants.values())
        participant.room = self
        participant.room_name = self.name
        participant.apply_policy(self.policy)
        self.participants[participant.id] = participant
        await participant.send(
            m.Joined(
                id=request_id,
                room=self.name,
                participant_id=participant.id,
                participants=[p.info for p in others],
                tracks=self.tracks,
                ice_servers=self.ice_servers,
                role=participant.role,
                grants=sorted(participant.grants),
                can_publish="publish" in participant.grants
                and self.policy.may_publish(participant.role),
            )
        )
        if self.observer is not None:
            self.observer.joined(self, participant)
        self.emit("participant_joined", participant)
        for other in others:
            await other.send(m.ParticipantJoined(participant=participant.info))
        # subscribe the newcomer to everything already published
        sources = [(p, s) for p in others for s in p.sources.values()]
        if sources:
            for publisher, source in sources:
                try:
                    participant.subscribe(source, publisher.id)
                except Exception:
                    faults.record("subscribe", f"{participant.context} to {source.track_id}")
            await self._negotiate(participant)

    def publish(self, participant: Participant, source: MediaSource) -> None:
        """A new track arrived from ``participant``: every other participant subscribes."""
        participant.sources[source.track_id] = source
        source.on_structure = self._on_structure
        source.keyframes.min_interval = participant.policy.keyframe_min_interval
        if source.audio_levels is not None:
            self.speakers.start()
        if source.kind == "video":
            self.dynacast.start()
        if self.recording is not None and participant.mirror_of is None:
            self.recording.add(participant, source)
        info = track_info(participant, source)
        if self.observer is not None:
            self.observer.published(self, participant, source)
        self.emit("track_published", participant, source)
        for other in list(self.participants.values()):
            if other is participant:
                continue
            try:
                other.subscribe(source, participant.id)
            except Exception:
                faults.record("subscribe", f"{other.context} to {source.track_id}")
            spawn(self._announce_and_negotiate(other, info))

    def _on_structure(self, source: MediaSource) -> None:
        """The publisher's layers changed (count, resolutions): retarget its subscribers."""
        now = time.monotonic()
        for participant in list(self.participants.values()):
            try:
                subscription = participant.subscription(source.track_id)
                if subscription is not None:
                    subscription.update(now)
            except Exception:
                faults.record("structure", f"{participant.context} of {source.track_id}", now)

    async def _announce_and_negotiate(self, participant: Participant, info: m.TrackInfo) -> None:
        await participant.send(m.TrackPublished(track=info))
        await self._negotiate(participant)

    async def _negotiate(self, participant: Participant) -> None:
        if participant.subscriber is None:
            return
        try:
            await participant.subscriber.negotiate()
        except Exception:
            faults.record("negotiation", participant.context)

    def _unsubscribe(self, track_id: str) -> None:
        """Every subscriber's copy of the track goes (what it counted stays counted)."""
        for other in list(self.participants.values()):
            if other.subscriber is not None:
                try:
                    downtrack = other.subscriber.downtracks.get(track_id)
                    if downtrack is not None:
                        self.metrics.note_downtrack(self.policy_name, downtrack)
                    other.subscriber.remove(track_id)
                except Exception:
                    faults.record("unsubscribe", f"{other.context} from {track_id}")

    async def unpublish(self, participant: Participant, source: MediaSource) -> None:
        """One track of ``participant`` goes (its publisher stopped it): the room is told,
        and every subscriber's connection drops it."""
        if participant.sources.pop(source.track_id, None) is None:
            return
        if self.recording is not None:
            self.recording.remove(source)
        if self.observer is not None:
            self.observer.unpublished(self, participant, source)
        self.emit("track_unpublished", participant, source)
        self._unsubscribe(source.track_id)
        gone = m.TrackUnpublished(track_id=source.track_id, participant_id=participant.id)
        for other in list(self.participants.values()):
            if other is participant:
                continue
            await other.send(gone)
            await self._negotiate(other)

    async def leave(self, participant: Participant, reason: str | None = None) -> None:
        """``participant`` leaves; ``reason`` (default: its ``leave_reason``, else ``left``)
        goes into the log and the events."""
        if self.participants.pop(participant.id, None) is None:
            return
        participant.room = None
        # what its tracks and peers counted since the last scrape stays counted
        self.metrics.note_participant(self.policy_name, participant)
        if self.observer is not None:
            self.observer.left(self, participant)
        self.emit_left(participant, reason or participant.leave_reason or "left")
        if not self.participants:
            self._on_empty(self)
        for track_id, source in list(participant.sources.items()):
            self._unsubscribe(track_id)
            if self.recording is not None:
                self.recording.remove(source)
        for other in list(self.participants.values()):
            for track_id in participant.sources:
                await other.send(
                    m.TrackUnpublished(track_id=track_id, participant_id=participant.id)
                )
            await other.send(m.ParticipantLeft(participant_id=participant.id))
            await self._negotiate(other)
        participant.sources.clear()
        await participant.close()  # an empty room already went (above), whatever this does


class RoomManager:
    def __init__(
        self,
        rooms: RoomsSettings | None = None,
        start_bitrate_kbps: int = 1500,
        publisher_transport_cc: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        #: the server's Prometheus metrics: always there (one is made if none is given),
        #: held by every room too (``Room.metrics``)
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.watch(self)
        self.settings = rooms or RoomsSettings()
        self.start_bitrate_kbps = start_bitrate_kbps
        self.publisher_transport_cc = publisher_transport_cc
        self.max_rooms = 1000
        #: where and how rooms record (``recording``; its ``dir`` null: no recording)
        self.recording = RecordingSettings()
        #: the server drains (SIGTERM, cluster.drain_timeout): no new room
        self.draining = False
        #: seconds of silence from a client's peer connection before it is declared dead
        self.peer_timeout = 5.0
        #: seconds a peer connection may take to connect (and a subscribe offer to be
        #: answered)
        self.setup_timeout = 20.0
        #: bounds on the clients' SDPs
        self.sdp_limits = SdpLimits()
        #: peer connections of all rooms that may be setting up at once (a join or a first
        #: publish offer beyond it is refused, ``busy``): what clients that never connect
        #: may hold, from however many addresses
        self.max_peers_in_setup = 256
        self.rooms: dict[str, Room] = {}
        #: called with the name of a room that has gone (its last participant left)
        self.on_room_removed: Callable[[str], None] | None = None
        #: given to every room
        self.observer: RoomObserver | None = None
        #: told of every room's events (webhooks); shared with the rooms
        self.listeners: list[Listener] = []
        #: STUN/TURN servers for the clients, in every ``joined`` (``ice.servers``)
        self.ice_servers: list[m.IceServerInfo] = []

    def peers_in_setup(self) -> int:
        """Peer connections offered or answered, not connected yet, in every room."""
        count = 0
        for room in self.rooms.values():
            for participant in room.participants.values():
                for peer in (participant.publisher, participant.subscriber):
                    if peer is not None and peer.setup_deadline() is not None:
                        count += 1
        return count

    def check_setup_room(self) -> None:
        """Raises RoomError (``busy``) when no more peer connections may start setting up."""
        if self.peers_in_setup() >= self.max_peers_in_setup:
            raise RoomError(
                "busy",
                f"{self.max_peers_in_setup} connections are being set up"
                " (limits.max_peers_in_setup); try again in a few seconds",
            )

    def get_or_create(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            if self.draining:
                raise RoomError("draining", "this server is shutting down: it opens no new room")
            if len(self.rooms) >= self.max_rooms:
                raise RoomError("too_many_rooms", f"the server has {self.max_rooms} rooms")
            policy_name, policy = self.settings.policy_for(name)
            room = Room(name, self._remove, policy, policy_name, self.metrics)
            room.observer = self.observer
            room.listeners = self.listeners
            room.ice_servers = self.ice_servers
            self.rooms[name] = room
            room.emit("room_started")
            if policy.record and self.recording.dir is not None:
                room.start_recording(self.recording, by_policy=True)
        return room

    async def join(
        self, name: str, participant: Participant, request_id: int | str | None = None
    ) -> Room:
        """``participant`` joins room ``name`` (created if need be), replacing a participant
        of the same identity; raises RoomError."""
        self.check_setup_room()  # joining a room with tracks starts a subscribe connection
        room = self.get_or_create(name)
        if participant.identity is not None:
            await room.evict_identity(participant.identity)
            room = self.get_or_create(name)  # the eviction may have emptied it
        await room.join(participant, request_id)
        return room

    def apply(self, rooms: RoomsSettings) -> dict[str, str]:
        """New room settings, applied to the running rooms; returns room -> policy name."""
        self.settings = rooms
        applied = {}
        for room in list(self.rooms.values()):
            name, policy = rooms.policy_for(room.name)
            try:
                room.set_policy(name, policy)
                self._record_by_policy(room)
            except Exception:
                faults.record("policy", f"room {room.name!r}")
            applied[room.name] = name
        return applied

    def _record_by_policy(self, room: Room) -> None:
        """A reload turned the policy's ``record`` on (start) or off (stop, if it started)."""
        recording = room.recording
        if room.policy.record and recording is None and self.recording.dir is not None:
            room.start_recording(self.recording, by_policy=True)
        elif not room.policy.record and recording is not None and recording.by_policy:
            spawn(room.stop_recording())

    def _remove(self, room: Room) -> None:
        if self.rooms.get(room.name) is room and not room.participants:
            if room.recording is not None:
                spawn(room.stop_recording())
            del self.rooms[room.name]
            room.emit("room_finished")
            if self.on_room_removed is not None:
                self.on_room_removed(room.name)

    async def close(self) -> None:
        """Close every participant's peer connections, quietly: at shutdown everybody has
        been told already (``bye``), nobody needs to hear who left."""
        rooms = list(self.rooms.values())
        self.rooms.clear()
        for room in rooms:  # the last segments and the final manifest
            try:
                await room.stop_recording()
            except Exception:
                faults.record("recording", f"room {room.name!r}")
        participants = [p for room in rooms for p in room.participants.values()]
        for room in rooms:
            for participant in list(room.participants.values()):
                room.emit_left(participant, "shutdown")
            room.participants.clear()
            room.emit("room_finished")
        for participant in participants:
            participant.room = None
            participant.sources.clear()
        await asyncio.gather(*(p.close() for p in participants))
