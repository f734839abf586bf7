"""A participant of a room: its connections (a publish and a subscribe peer connection),
the tracks it publishes, what it receives and under which policy."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .. import faults
from .. import protocol as m
from ..adapters.peers import PeerSettings, PublisherPeer, SubscriberPeer
from ..config import RoomPolicy
from ..events.model import ParticipantRef
from ..forwarding.source import MediaSource
from ..forwarding.subscription import LevelEvent, Subscription
from ..forwarding.target import LayerCaps
from ..sdp.limits import SdpLimits

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

Outbox = Callable[[m.ServerMessage], Awaitable[None]]

#: tasks started from callbacks (a peer failing), kept until done
_background: set[asyncio.Future[None]] = set()


def spawn(coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


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

            def on_source_gone(source: MediaSource) -> None:
                if self.room is not None:
                    spawn(self.room.unpublish(self, source))

            self.publisher = PublisherPeer(self.id, on_source, self.settings, self.context)
            self.publisher.on_failed = self._on_failed
            self.publisher.on_source_gone = on_source_gone
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
        spawn(self._remove(room, code, reason))

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
