"""Rooms and participants: who publishes what, who receives it, under which policy."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .. import faults
from .. import protocol as m
from ..adapters.peers import PeerSettings, PublisherPeer, SubscriberPeer
from ..config import EventName, RoomPolicy, RoomsSettings
from ..events.logs import log_event
from ..events.model import Listener, ParticipantRef, RoomEvent, TrackRef, dispatch
from ..forwarding.source import MediaSource
from ..forwarding.subscription import LevelEvent, Subscription
from ..forwarding.target import LayerCaps
from ..metrics import Metrics
from ..quality.viewer import RoomQuality
from ..sdp.limits import SdpLimits
from .active_speakers import RoomSpeakers
from .dynacast import RoomDynacast

logger = logging.getLogger(__name__)

Outbox = Callable[[m.ServerMessage], Awaitable[None]]

#: tasks started from callbacks (a peer failing), kept until done
_background: set[asyncio.Future[None]] = set()


def _spawn(coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


class RoomObserver(Protocol):
    """Told of what happens in every room (the cluster's cascading follows it)."""

    def joined(self, room: Room, participant: Participant) -> None: ...

    def published(self, room: Room, participant: Participant, source: MediaSource) -> None: ...

    def left(self, room: Room, participant: Participant) -> None: ...

    def muted(self, room: Room, participant: Participant, source: MediaSource) -> None: ...


class RoomError(Exception):
    """A request the room refuses; ``code`` goes into the error message."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def configure_viewer(subscription: Subscription, policy: RoomPolicy, now: float) -> None:
    """The policy's receiver-CPU fit settings, applied to one subscription (live)."""
    viewer = subscription.viewer
    viewer.fit.configure(
        threshold=policy.dropped_frame_threshold,
        window=policy.dropped_frame_window,
        hold=policy.cpu_fit_hold,
    )
    if policy.receiver_cpu_fit:
        viewer.fit_enabled = True
    elif viewer.fit_enabled:
        viewer.disable_fit()
        subscription.set_cpu(None, now)


def layer_caps(policy: RoomPolicy) -> LayerCaps:
    return LayerCaps(
        max_spatial=policy.max_spatial_layer,
        max_temporal=policy.max_temporal_layer,
        max_width=policy.max_width,
        max_height=policy.max_height,
        max_fps=policy.max_fps,
    )


class Participant:
    def __init__(
        self,
        name: str,
        outbox: Outbox,
        start_bitrate_kbps: int = 1500,
        role: str | None = None,
        publisher_transport_cc: bool = False,
        peer_timeout: float = 5.0,
        setup_timeout: float = 20.0,
        sdp_limits: SdpLimits | None = None,
    ) -> None:
        self.id = secrets.token_hex(6)
        self.name = name
        self.role = role
        self.outbox = outbox
        self.policy = RoomPolicy()
        self.settings = PeerSettings(
            start_bitrate_kbps=start_bitrate_kbps,
            publisher_transport_cc=publisher_transport_cc,
            peer_timeout=peer_timeout,
            setup_timeout=setup_timeout,
            sdp_limits=sdp_limits or SdpLimits(),
        )
        self.room: Room | None = None
        #: the room joined (kept after leaving), for logs
        self.room_name: str | None = None
        self._removing = False
        self.publisher: PublisherPeer | None = None
        self.subscriber: SubscriberPeer | None = None
        self.sources: dict[str, MediaSource] = {}
        #: what the participant's access token grants (both without tokens, in development)
        self.grants: frozenset[str] = frozenset({"publish", "subscribe"})
        #: the access token's identity (None: a tokenless join, in development mode); one
        #: participant per identity and room
        self.identity: str | None = None
        #: called once the room has removed the participant by itself (not on ``leave``)
        self.on_removed: Callable[[Participant], None] | None = None
        #: a participant whose connections are on another worker (cascading): that
        #: worker's id; its tracks come over the media link, it subscribes to nothing here
        self.mirror_of: str | None = None
        #: why it leaves its room, when not by a ``leave`` message (for the log and events)
        self.leave_reason: str | None = None

    @property
    def ref(self) -> ParticipantRef:
        return ParticipantRef(self.id, self.name, self.identity, self.role, self.mirror_of)

    @property
    def context(self) -> str:
        """Who this is, for logs: room and participant."""
        return f"room {self.room_name!r} participant {self.id}"

    @property
    def info(self) -> m.ParticipantInfo:
        return m.ParticipantInfo(participant_id=self.id, name=self.name)

    async def send(self, message: m.ServerMessage) -> None:
        try:
            await self.outbox(message)
        except Exception as exc:  # a dead socket must not disturb the room
            logger.debug("participant %s: send failed: %s", self.id, exc)

    def apply_policy(self, policy: RoomPolicy) -> None:
        """The room's policy (for this participant's role), applied live."""
        self.policy = policy.for_role(self.role)
        self.settings.publisher_max_bitrate = self.policy.publisher_max_bitrate
        self.settings.keyframe_min_interval = self.policy.keyframe_min_interval
        self.settings.subscriber_max_bitrate = self.policy.subscriber_max_bitrate
        self.settings.bandwidth_headroom = self.policy.bandwidth_headroom
        self.settings.bandwidth_estimation = self.policy.bandwidth_estimation
        self.settings.retransmission_ratio = self.policy.retransmission_ratio
        self.settings.nack_items_per_packet = self.policy.nack_items_per_packet
        self.settings.nack_items_per_second = self.policy.nack_items_per_second
        self.settings.priorities = {str(k): v for k, v in self.policy.priorities.items()}
        for source in self.sources.values():
            source.keyframes.min_interval = self.policy.keyframe_min_interval
        if self.subscriber is not None:
            now = time.monotonic()
            caps = layer_caps(self.policy)
            for subscription in list(self.subscriber.subscriptions.values()):
                subscription.set_caps(caps, self.policy.window_tolerance, now)
                configure_viewer(subscription, self.policy, now)

    def subscribe(self, source: MediaSource, publisher_id: str) -> None:
        """Receive ``source`` (a video track gets a subscription: window, pin, caps)."""
        if "subscribe" not in self.grants:
            return
        subscription = None
        if source.kind == "video":

            def on_level(event: LevelEvent) -> None:
                room = self.room
                if room is not None:
                    room.metrics.level_switch(room.policy_name, event.reason)
                logger.debug(
                    "%s: track %s level S%d T%d %dx%d%s (%s)",
                    self.context,
                    event.track_id,
                    event.spatial,
                    event.temporal,
                    event.width,
                    event.height,
                    " paused" if event.paused else "",
                    event.reason,
                    extra={"room": self.room_name, "participant_id": self.id},
                )
                asyncio.ensure_future(
                    self.send(
                        m.LevelChanged(
                            track_id=event.track_id,
                            spatial=event.spatial,
                            temporal=event.temporal,
                            width=event.width,
                            height=event.height,
                            paused=event.paused,
                            reason=event.reason,
                        )
                    )
                )

            subscription = Subscription(
                source,
                layer_caps(self.policy),
                tolerance=self.policy.window_tolerance,
                on_level_changed=on_level,
            )
            configure_viewer(subscription, self.policy, time.monotonic())
        self.subscriber_peer().add(source, stream_id=publisher_id, subscription=subscription)

    def subscription(self, track_id: str) -> Subscription | None:
        if self.subscriber is None:
            return None
        return self.subscriber.subscriptions.get(track_id)

    def subscriber_peer(self) -> SubscriberPeer:
        if self.subscriber is None:

            async def send_offer(sdp: str) -> None:
                await self.send(m.SubscribeOffer(sdp=sdp))

            self.use_subscriber(SubscriberPeer(send_offer, self.settings, self.context))
        assert self.subscriber is not None
        return self.subscriber

    def use_subscriber(self, peer: SubscriberPeer) -> None:
        """``peer`` is the connection this participant receives on (one that answers the
        client's offer, for WHEP; by default one that offers, made when first needed)."""
        self.subscriber = peer
        peer.on_failed = self._on_failed
        peer.on_report = self._observe_downlink

    def _observe_downlink(self, subscriber: SubscriberPeer) -> None:
        """Once a second: the downlink estimate, for the metrics."""
        room = self.room
        if room is not None:
            room.metrics.observe_downlink(room.policy_name, subscriber)

    def publisher_peer(self) -> PublisherPeer:
        if self.publisher is None:

            def on_source(source: MediaSource) -> None:
                if self.room is not None:
                    self.room.publish(self, source)

            self.publisher = PublisherPeer(self.id, on_source, self.settings, self.context)
            self.publisher.on_failed = self._on_failed
        return self.publisher

    async def discard_publisher(self) -> None:
        """The publish connection's first offer was refused: the connection goes, so that
        it holds nothing and does not count toward the room's ``max_publishers``."""
        peer, self.publisher = self.publisher, None
        if peer is not None:
            try:
                await peer.close()
            except Exception:
                faults.record("close", self.context)

    def _on_failed(self, code: str, reason: str) -> None:
        """A peer connection is dead (ICE/DTLS failed, closed by the client, silent for
        ``peer_timeout``, or not set up within ``setup_timeout``): leave the room, and tell
        the client if its WebSocket is open."""
        room = self.room
        if room is None or self._removing:
            return
        logger.warning("%s: %s (%s); leaving the room", self.context, reason, code)
        self.remove(code, reason)

    def remove(self, code: str, reason: str) -> None:
        """Take the participant out of its room, telling it why (``bye``)."""
        room = self.room
        if room is None or self._removing:
            return
        self._removing = True
        _spawn(self._remove(room, code, reason))

    async def _remove(self, room: Room, code: str, reason: str) -> None:
        await self.send(
            m.Bye(code=code, reason=f"{reason}: you have left the room (join again to return)")
        )
        try:
            await room.leave(self, code)
        except Exception:
            faults.record("leave", self.context)
        if self.on_removed is not None:
            self.on_removed(self)

    async def close(self) -> None:
        for peer in (self.publisher, self.subscriber):
            if peer is not None:
                try:
                    await peer.close()
                except Exception:
                    faults.record("close", self.context)


def track_info(participant: Participant, source: MediaSource) -> m.TrackInfo:
    return m.TrackInfo(
        track_id=source.track_id,
        participant_id=participant.id,
        kind="audio" if source.kind == "audio" else "video",
        codec=source.params.codec,
        muted=source.muted,
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
            _spawn(self._announce_and_negotiate(other, info))

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
        for track_id in list(participant.sources):
            for other in list(self.participants.values()):
                if other.subscriber is not None:
                    try:
                        downtrack = other.subscriber.downtracks.get(track_id)
                        if downtrack is not None:
                            self.metrics.note_downtrack(self.policy_name, downtrack)
                        other.subscriber.remove(track_id)
                    except Exception:
                        faults.record("unsubscribe", f"{other.context} from {track_id}")
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
            except Exception:
                faults.record("policy", f"room {room.name!r}")
            applied[room.name] = name
        return applied

    def _remove(self, room: Room) -> None:
        if self.rooms.get(room.name) is room and not room.participants:
            del self.rooms[room.name]
            room.emit("room_finished")
            if self.on_room_removed is not None:
                self.on_room_removed(room.name)

    async def close(self) -> None:
        """Close every participant's peer connections, quietly: at shutdown everybody has
        been told already (``bye``), nobody needs to hear who left."""
        rooms = list(self.rooms.values())
        self.rooms.clear()
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
