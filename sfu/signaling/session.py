"""One signaling connection: its messages validated, dispatched to the rooms, answered."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from .. import faults
from .. import protocol as m
from ..auth.access import Access, Authenticator
from ..auth.keys import TokenKeys
from ..auth.tokens import TokenError
from ..quality.viewer import ViewerFigures
from ..rooms.participant import Participant
from ..rooms.room import RoomError, RoomManager
from .limits import TokenBucket
from .outbox import Outbox


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(x) for x in error["loc"]) or "message"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def mute(participant: Participant, message: m.Mute, now: float) -> bool:
    """A publisher mutes or unmutes one of its own tracks (False: it has no such track);
    the room hears of a change."""
    source = participant.sources.get(message.track_id)
    room = participant.room
    if source is None or room is None:
        return False
    if source.set_muted(message.muted, now):
        event = m.TrackMuted(
            track_id=source.track_id, participant_id=participant.id, muted=message.muted
        )
        for other in list(room.participants.values()):
            if other.mirror_of is None:  # a mirror's own worker tells it
                asyncio.ensure_future(other.send(event))
        if room.observer is not None:  # the room's other workers (cascading)
            room.observer.muted(room, participant, source)
    return True


def receiver_report(participant: Participant, message: m.ReceiverReport, now: float) -> None:
    """The viewer's figures, per video it receives: they feed its receiver-CPU fit and the
    room's figures.  A track it does not receive (any more) is passed over: a report races
    with the track's end."""
    room = participant.room
    for track in message.tracks:
        subscription = participant.subscription(track.track_id)
        if subscription is None:
            continue
        source = subscription.source
        figures = ViewerFigures(
            frames_decoded=track.frames_decoded,
            frames_dropped=track.frames_dropped,
            frames_per_second=track.frames_per_second,
            frame_width=track.frame_width,
            frame_height=track.frame_height,
            freeze_count=track.freeze_count,
            total_freezes_duration=track.total_freezes_duration,
            jitter_buffer_delay=track.jitter_buffer_delay,
            jitter_buffer_emitted_count=track.jitter_buffer_emitted_count,
            element_width=track.element_width,
            element_height=track.element_height,
        )
        outcome = subscription.viewer.on_report(
            now,
            figures,
            current=subscription.current_level(),
            spatial_layers=source.spatial_layers,
            temporal_layers=source.temporal_layers,
            first_frame=track.first_frame,
            switch_paints=track.switch_paints,
        )
        if outcome is None:
            continue
        if outcome.cap_changed:
            subscription.set_cpu(outcome.cap, now)
        if room is not None:
            room.quality.add(outcome)
            metrics, policy = room.metrics, room.policy_name
            metrics.viewer_frames(policy, outcome.decoded, outcome.dropped)
            if outcome.freezes or outcome.freeze_seconds:
                metrics.viewer_freezes(policy, outcome.freezes, outcome.freeze_seconds)
            if outcome.first_frame is not None:
                metrics.first_frame(policy, outcome.first_frame)
            for seconds in outcome.switch_paints:
                metrics.switch_paint(policy, seconds)


class SignalingSession:
    """One WebSocket: one participant at most."""

    def __init__(
        self,
        ws: web.WebSocketResponse | None,
        rooms: RoomManager,
        auth: Authenticator | None = None,
        outbox: Outbox | None = None,
        address: str = "unknown",
    ) -> None:
        self.ws = ws
        self.rooms = rooms
        self.auth = auth or Authenticator(TokenKeys(None))
        #: the writer of this connection (None: write inline, as the fuzz targets do)
        self.outbox = outbox
        self.address = address
        self.participant: Participant | None = None
        self.errors = 0
        #: this connection's message rate (set by the handler; reconfigured on reload)
        self.bucket: TokenBucket | None = None
        #: called when the participant leaves its room (the connection may join again)
        self.on_left: Callable[[], None] | None = None
        #: set by :meth:`close` for the handler reading this connection: (code, reason)
        self.close_requested: asyncio.Future[tuple[int, bytes]] | None = None
        #: done once the handler has closed the WebSocket
        self.closed: asyncio.Event | None = None
        #: edge side of a cluster: the room is hosted by another worker, which gets this
        #: connection's messages (:mod:`.relay`)
        self.relayed = False
        #: host side of a cluster: the worker holding this connection's WebSocket, and how
        #: to close it (None: the WebSocket is here)
        self.edge_worker: str | None = None
        self.close_hook: Callable[[int, bytes, float], Awaitable[None]] | None = None

    async def close(self, code: int, reason: bytes, timeout: float) -> None:
        """Close the WebSocket with a close handshake (our close frame, the client's reply,
        then the TCP close), at most ``timeout`` seconds.

        The handler reading the connection does it: aiohttp's ``close()`` called while
        another task waits in ``receive()`` closes the TCP connection right after the close
        frame, and a client that reads the frame after the FIN cannot answer and sees 1006."""
        if self.close_hook is not None:  # the WebSocket is another worker's
            await self.close_hook(code, reason, timeout)
            return
        if self.close_requested is None or self.closed is None:  # no handler (fuzz targets)
            if self.ws is not None:
                await asyncio.wait_for(self.ws.close(code=code, message=reason), timeout)
            return
        if not self.close_requested.done():
            self.close_requested.set_result((code, reason))
        await asyncio.wait_for(self.closed.wait(), timeout)

    async def send(self, message: m.ServerMessage) -> None:
        text = message.model_dump_json()
        if self.outbox is not None:
            self.outbox.put(text)
        elif self.ws is not None and not self.ws.closed:
            await self.ws.send_str(text)

    async def error(self, code: str, reason: str, request_id: Any = None) -> None:
        self.errors += 1
        await self.send(m.Error(id=request_id, code=code, reason=reason))

    async def handle(self, text: str) -> None:
        message = await self.parse(text)
        if message is not None:
            await self.handle_message(message)

    async def parse(self, text: str) -> m.ClientMessage | None:
        """The message, or None after telling the client what is wrong with it."""
        try:
            return m.client_message.validate_json(text)
        except ValidationError as exc:
            request_id = None
            try:
                raw = json.loads(text)
                if isinstance(raw, dict) and isinstance(raw.get("id"), (int, str)):
                    request_id = raw["id"]
            except (ValueError, RecursionError):  # RecursionError: deep nesting
                pass
            await self.error("bad_request", _describe(exc), request_id)
            return None

    async def handle_message(self, message: m.ClientMessage) -> None:
        try:
            await self.dispatch(message)
        except Exception as exc:  # contained to this participant
            faults.record("signaling", f"{message.type} from {self.context}")
            await self.error("internal_error", f"{message.type} failed: {exc}", message.id)

    @property
    def context(self) -> str:
        if self.participant is None:
            return "a connection that has not joined"
        return self.participant.context

    async def dispatch(self, message: m.ClientMessage) -> None:
        if isinstance(message, m.Ping):
            await self.send(m.Pong(id=message.id))
        elif isinstance(message, m.Join):
            if self.participant is not None and self.participant.room is not None:
                await self.error("already_joined", "this connection has joined a room", message.id)
                return
            access = await self.authorize(message)
            if access is None:
                return
            participant = Participant(
                message.name,
                self.send,
                self.rooms.start_bitrate_kbps,
                role=access.role,
                publisher_transport_cc=self.rooms.publisher_transport_cc,
                peer_timeout=self.rooms.peer_timeout,
                setup_timeout=self.rooms.setup_timeout,
                sdp_limits=self.rooms.sdp_limits,
            )
            participant.identity = access.identity
            participant.grants = access.grants
            try:
                await self.rooms.join(message.room, participant, message.id)
            except RoomError as exc:
                await self.error(exc.code, exc.reason, message.id)
                return
            self.participant = participant
            participant.on_removed = self._removed
        elif self.participant is None or self.participant.room is None:
            await self.error("not_joined", f"{message.type} needs a joined room", message.id)
        elif isinstance(message, m.Publish):
            participant = self.participant
            room = participant.room
            assert room is not None
            if "publish" not in participant.grants:
                await self.error("forbidden", "the access token does not grant publish", message.id)
                return
            try:
                room.check_publish(participant, message.scalability_mode)
            except RoomError as exc:
                await self.error(exc.code, exc.reason, message.id)
                return
            first = participant.publisher is None
            if first:
                try:
                    self.rooms.check_setup_room()
                except RoomError as exc:
                    await self.error(exc.code, exc.reason, message.id)
                    return
            try:
                sdp = await participant.publisher_peer().answer(
                    message.sdp,
                    list(participant.policy.codecs),
                    dict(message.sources) if message.sources else None,
                )
            except Exception as exc:
                if first:  # nothing was published: no connection is left behind either
                    await participant.discard_publisher()
                await self.error("bad_sdp", f"cannot answer the offer: {exc}", message.id)
                return
            await self.send(m.PublishAnswer(id=message.id, sdp=sdp))
        elif isinstance(message, m.SubscribeAnswer):
            subscriber = self.participant.subscriber
            if subscriber is None:
                await self.error("no_offer", "no subscriber offer is outstanding", message.id)
                return
            try:
                await subscriber.answer(message.sdp)
            except Exception as exc:
                await self.error("bad_sdp", f"cannot apply the answer: {exc}", message.id)
        elif isinstance(message, m.RestartIce):
            subscriber = self.participant.subscriber
            try:
                if subscriber is None:
                    raise ValueError("there is no subscribe connection")
                await subscriber.restart_ice()
            except ValueError as exc:
                await self.error("not_connected", f"cannot restart ICE: {exc}", message.id)
                return
            if message.id is not None:
                await self.send(m.Ack(id=message.id))
        elif isinstance(message, m.Leave):
            await self.leave()
            await self.send(m.Left(id=message.id))
        elif isinstance(message, m.GetStats):
            peer = self.participant.subscriber
            metrics = (
                peer.metrics()
                if peer is not None
                else {"downloadRate": None, "videoBitrate": 0, "loss": 0.0, "rtt": None}
            )
            await self.send(m.Stats(id=message.id, **metrics))
        elif isinstance(message, (m.Window, m.SetLevel, m.Auto, m.GetLevels)):
            await self.subscription_request(self.participant, message)
        elif isinstance(message, m.Mute):
            if not mute(self.participant, message, time.monotonic()):
                await self.error(
                    "unknown_track", f"no track {message.track_id!r} of yours", message.id
                )
                return
            if message.id is not None:
                await self.send(m.Ack(id=message.id))
        elif isinstance(message, m.ReceiverReport):
            receiver_report(self.participant, message, time.monotonic())
            if message.id is not None:
                await self.send(m.Ack(id=message.id))

    async def authorize(self, message: m.Join) -> Access | None:
        """What the join's token (and the room's policy) allow; None after telling the
        client why it may not join."""
        _, policy = self.rooms.settings.policy_for(message.room)
        try:
            return self.auth.join(
                token=message.token,
                room=message.room,
                name=message.name,
                role=message.role,
                policy_requires=policy.require_token,
                now=time.time(),
            )
        except TokenError as exc:
            await self.error("unauthorized", str(exc), message.id)
            return None

    async def subscription_request(
        self, participant: Participant, message: m.Window | m.SetLevel | m.Auto | m.GetLevels
    ) -> None:
        subscription = participant.subscription(message.track_id)
        if subscription is None:
            await self.error(
                "unknown_track", f"no video subscription {message.track_id!r}", message.id
            )
            return
        now = time.monotonic()
        if isinstance(message, m.Window):
            subscription.set_window(message.width, message.height, now)
        elif isinstance(message, m.SetLevel):
            subscription.set_pin(message.spatial, message.temporal, now)
        elif isinstance(message, m.Auto):
            subscription.set_pin(None, None, now)
        else:
            current = subscription.current()
            await self.send(
                m.Levels(
                    id=message.id,
                    track_id=message.track_id,
                    levels=[
                        m.LevelInfo(
                            spatial=lv.spatial,
                            temporal=lv.temporal,
                            width=lv.width,
                            height=lv.height,
                            fps=lv.fps,
                            bitrate=lv.bitrate,
                        )
                        for lv in subscription.levels(now)
                    ],
                    spatial=current.spatial if current else 0,
                    temporal=current.temporal if current else 0,
                    paused=current.paused if current else False,
                )
            )
            return
        if message.id is not None:
            await self.send(m.Ack(id=message.id))

    async def leave(self) -> None:
        participant, self.participant = self.participant, None
        if participant is not None and participant.room is not None:
            await participant.room.leave(participant)
        if participant is not None and self.on_left is not None:
            self.on_left()

    def _removed(self, participant: Participant) -> None:
        """The room removed the participant (its peer failed, or its identity joined again
        elsewhere): this connection may join again."""
        if self.participant is participant:
            self.participant = None
            if self.on_left is not None:
                self.on_left()
