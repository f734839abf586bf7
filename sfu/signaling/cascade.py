"""Cascading (docs/scaling.md): one room over several workers.

A worker that holds participants of a room is one of its *members* (``sfu:members:<room>``
in Redis: worker -> participants there).  Every member has the room locally, with its own
participants and a *mirror* for each participant of the other members: a participant with
no connection here (it subscribes to nothing), whose tracks are
:class:`~sfu.forwarding.source.MediaSource` s fed over the media link
(:mod:`~sfu.adapters.relay_link`).  Local subscribers receive them like any track, with
their own layer selection, so a subscriber on another worker gets what a local one would.

Members tell each other what happens (:class:`~sfu.cluster.wire.RoomEvent` through their
inboxes): a newcomer says ``hello`` and gets each member's ``state``; then ``joined``,
``left``, ``published``, ``goodbye``.  A member that receives a track asks its origin for it
(``want``); the origin sends every packet of it as received (all layers, once per packet
whatever the number of members), the publisher's sender reports with them, and answers
the link's NACKs from what it sent (the last :data:`HISTORY` packets); keyframe requests go
on to the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from .. import faults
from .. import protocol as m
from ..adapters.relay_link import Address, RelayEndpoint
from ..cluster.wire import Envelope, MemberInfo, RoomEvent, TrackDescription
from ..forwarding.source import MediaSource
from ..forwarding.track import StreamParameters
from ..rooms.participant import Participant
from ..rooms.room import Room, RoomManager
from ..rtp import rtcp
from ..rtp.packet import RtpError, parse_rtp

if TYPE_CHECKING:
    from .relay import ClusterWorker

logger = logging.getLogger(__name__)

#: packets of each relayed track kept to answer the link's NACKs (a power of two)
HISTORY = 1024
#: seconds a newcomer waits for the members' ``state`` before its participant joins
STATE_TIMEOUT = 2.0
#: seconds between ticks of the relayed tracks (NACK and keyframe-request retries)
TICK = 0.05


class OutboundTrack:
    """A local track sent to other members."""

    def __init__(self, source: MediaSource, endpoint: RelayEndpoint) -> None:
        self.source = source
        self.endpoint = endpoint
        #: member -> its media link address
        self.destinations: dict[str, Address] = {}
        self._history: list[tuple[int, bytes] | None] = [None] * HISTORY
        source.taps.append(self.on_packet)
        source.report_taps.append(self.on_report)

    def on_packet(self, data: bytes, now: float) -> None:
        destinations = self.destinations
        if not destinations:
            return
        datagram = self.endpoint.send_rtp(data, destinations.values())
        if datagram is not None:
            seq = (data[2] << 8) | data[3]
            self._history[seq & (HISTORY - 1)] = (seq, datagram)

    def on_report(self, report: rtcp.SenderReport, now: float) -> None:
        packet = rtcp.build_sr(report)
        for address in self.destinations.values():
            self.endpoint.send_rtcp(packet, address)

    def answer(self, lost: Iterable[int], address: Address) -> int:
        """Resend what the link lost, from what was sent; how many were."""
        answered = 0
        for seq in lost:
            entry = self._history[seq & (HISTORY - 1)]
            if entry is not None and entry[0] == seq:
                self.endpoint.resend(entry[1], [address])
                answered += 1
        return answered

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.source.taps.remove(self.on_packet)
        with contextlib.suppress(ValueError):
            self.source.report_taps.remove(self.on_report)
        self.destinations.clear()


def describe(source: MediaSource) -> TrackDescription:
    params = source.params
    return TrackDescription(
        track_id=source.track_id,
        kind="audio" if params.kind == "audio" else "video",
        source_type=source.source_type,
        mime_type=params.mime_type,
        clock_rate=params.clock_rate,
        payload_type=params.payload_type,
        ssrc=params.ssrc,
        rtx_payload_type=params.rtx_payload_type,
        rtx_ssrc=params.rtx_ssrc,
        extensions=dict(params.extensions),
        parameters=dict(params.parameters),
        muted=source.muted,
    )


def member_info(participant: Participant) -> MemberInfo:
    return MemberInfo(
        participant_id=participant.id,
        name=participant.name,
        tracks=[describe(s) for s in participant.sources.values()],
    )


def local_participants(room: Room) -> list[Participant]:
    return [p for p in room.participants.values() if p.mirror_of is None]


class Cascade:
    """This worker's part of the cascaded rooms (a :class:`~sfu.rooms.room.RoomObserver`)."""

    def __init__(self, worker: ClusterWorker, rooms: RoomManager) -> None:
        self.worker = worker
        self.rooms = rooms
        self.endpoint = RelayEndpoint(self._on_link_rtp, self._on_link_rtcp)
        #: the other members of each room, as this worker knows them
        self.members: dict[str, set[str]] = {}
        #: relayed tracks received: (origin worker, ssrc) -> source
        self.inbound: dict[tuple[str, int], MediaSource] = {}
        #: local tracks sent to members: track id -> track, and by SSRC
        self.outbound: dict[str, OutboundTrack] = {}
        self._outbound_by_ssrc: dict[int, OutboundTrack] = {}
        #: a newcomer's wait for the members' state: room -> (members to hear from, done)
        self._waiting: dict[str, tuple[set[str], asyncio.Future[None]]] = {}
        self._rtcp_ssrc = secrets.randbits(32)
        self._tasks: set[asyncio.Future[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        rooms.observer = self

    @property
    def me(self) -> str:
        return self.worker.worker_id

    async def start(self, host: str) -> Address:
        """Open the media link on ``host`` (any free port); its address."""
        address = await self.endpoint.open(host)
        self._ticker = asyncio.ensure_future(self._tick())
        return address

    def learn(self, worker: str, host: str, port: int, key: str) -> None:
        """A live worker's media link (from its record in Redis)."""
        if worker != self.me:
            self.endpoint.add_peer(worker, (host, port), bytes.fromhex(key))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for track in self.outbound.values():
            track.close()
        self.endpoint.close()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for source in list(self.inbound.values()):
                try:
                    source.tick(now)
                except Exception:
                    faults.record("timer", f"relayed track {source.track_id}", now)

    # -- entering a room ------------------------------------------------------------------
    async def enter(self, room_name: str) -> None:
        """This worker is about to hold a participant of ``room_name``: if other workers
        hold some, become a member and mirror theirs first (so the newcomer's ``joined``
        lists them)."""
        room = self.rooms.rooms.get(room_name)
        count = len(local_participants(room)) if room is not None else 0
        members = await self.worker.store.set_member(room_name, self.me, count)
        holder = await self.worker.store.holder(room_name)
        candidates = set(members) | ({holder} if holder is not None else set())
        candidates.discard(self.me)
        if not candidates <= set(self.worker.live):
            await self.worker.refresh()  # started since this worker's last heartbeat
        others = candidates & set(self.worker.live)
        known = self.members.setdefault(room_name, set())
        # without the room here, nothing of the others was mirrored yet, even from a worker
        # known from its hello (its events for a room not here were passed over): ask all
        new = others if room is None else others - known
        logger.info(
            "cascade: %r: members %s, holder %s, asking %s", room_name, members, holder, new
        )
        known |= others
        if not new:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[room_name] = (set(new), done)
        self.rooms.get_or_create(room_name)
        for worker in new:
            await self._tell(worker, RoomEvent(kind="hello", room=room_name, worker=self.me))
        try:
            await asyncio.wait_for(asyncio.shield(done), STATE_TIMEOUT)
        except TimeoutError:
            logger.warning("cascade: %r: no state from %s in time", room_name, new)
        finally:
            self._waiting.pop(room_name, None)

    async def leave_if_unused(self, room_name: str) -> None:
        """A join here was refused after :meth:`enter`: let the room go if it holds no
        participant of this worker's."""
        room = self.rooms.rooms.get(room_name)
        if room is not None and not local_participants(room):
            await self._vacate(room)

    # -- RoomObserver -------------------------------------------------------------------
    def joined(self, room: Room, participant: Participant) -> None:
        if participant.mirror_of is not None:
            return
        self._spawn(self._local_joined(room, participant))

    def published(self, room: Room, participant: Participant, source: MediaSource) -> None:
        if participant.mirror_of is not None:
            return
        self._outbound(source)  # members that want it are added by their ``want``
        event = RoomEvent(
            kind="published",
            room=room.name,
            worker=self.me,
            participant_id=participant.id,
            track=describe(source),
        )
        self._spawn(self._broadcast(room.name, event))

    def muted(self, room: Room, participant: Participant, source: MediaSource) -> None:
        if participant.mirror_of is not None:
            return
        event = RoomEvent(
            kind="muted",
            room=room.name,
            worker=self.me,
            participant_id=participant.id,
            track=describe(source),
        )
        self._spawn(self._broadcast(room.name, event))

    def unpublished(self, room: Room, participant: Participant, source: MediaSource) -> None:
        if participant.mirror_of is not None:
            self.inbound.pop((participant.mirror_of, source.params.ssrc), None)
            return
        track = self.outbound.pop(source.track_id, None)
        if track is not None:
            self._outbound_by_ssrc.pop(track.source.params.ssrc, None)
            track.close()
        event = RoomEvent(
            kind="unpublished",
            room=room.name,
            worker=self.me,
            participant_id=participant.id,
            track_id=source.track_id,
        )
        self._spawn(self._broadcast(room.name, event))

    def left(self, room: Room, participant: Participant) -> None:
        if participant.mirror_of is not None:
            self._drop_inbound(participant)
            return
        for track_id in list(participant.sources):
            track = self.outbound.pop(track_id, None)
            if track is not None:
                self._outbound_by_ssrc.pop(track.source.params.ssrc, None)
                track.close()
        event = RoomEvent(
            kind="left", room=room.name, worker=self.me, participant_id=participant.id
        )
        self._spawn(self._local_left(room, event))

    async def _local_joined(self, room: Room, participant: Participant) -> None:
        try:
            await self.worker.store.set_member(room.name, self.me, len(local_participants(room)))
        except RedisError:
            self.worker.errors += 1
        event = RoomEvent(
            kind="joined", room=room.name, worker=self.me, participant=member_info(participant)
        )
        await self._broadcast(room.name, event)

    async def _local_left(self, room: Room, event: RoomEvent) -> None:
        await self._broadcast(room.name, event)
        if not local_participants(room):
            await self._vacate(room)
            return
        with contextlib.suppress(RedisError):
            await self.worker.store.set_member(room.name, self.me, len(local_participants(room)))

    async def _vacate(self, room: Room) -> None:
        """No participant of this worker's is left: the mirrors go, the others are told."""
        members = self.members.pop(room.name, set())
        for worker in members:
            await self._tell(worker, RoomEvent(kind="goodbye", room=room.name, worker=self.me))
        for mirror in [p for p in room.participants.values() if p.mirror_of is not None]:
            await room.leave(mirror)
        with contextlib.suppress(RedisError):
            await self.worker.store.remove_member(room.name, self.me)

    # -- events from the other members ----------------------------------------------------
    async def on_event(self, event: RoomEvent) -> None:
        if event.worker == self.me:
            return
        room = self.rooms.rooms.get(event.room)
        kind = event.kind
        if kind == "hello":
            self.members.setdefault(event.room, set()).add(event.worker)
            participants = [member_info(p) for p in local_participants(room)] if room else []
            state = RoomEvent(
                kind="state", room=event.room, worker=self.me, participants=participants
            )
            await self._tell(event.worker, state)
            return
        if kind == "goodbye":
            self.members.get(event.room, set()).discard(event.worker)
            if room is not None:
                await self._drop_worker(room, event.worker)
            return
        if room is None:
            return
        self.members.setdefault(event.room, set()).add(event.worker)
        if kind == "state":
            for info in event.participants:
                await self._mirror(room, event.worker, info)
            waiting = self._waiting.get(event.room)
            if waiting is not None:
                waiting[0].discard(event.worker)
                if not waiting[0] and not waiting[1].done():
                    waiting[1].set_result(None)
        elif kind == "joined" and event.participant is not None:
            await self._mirror(room, event.worker, event.participant)
        elif kind == "left" and event.participant_id is not None:
            mirror = room.participants.get(event.participant_id)
            if mirror is not None and mirror.mirror_of == event.worker:
                await room.leave(mirror)
        elif kind == "published" and event.participant_id and event.track is not None:
            mirror = room.participants.get(event.participant_id)
            if mirror is not None and mirror.mirror_of == event.worker:
                await self._receive(room, mirror, event.track)
        elif kind == "muted" and event.participant_id and event.track is not None:
            mirror = room.participants.get(event.participant_id)
            if mirror is not None and mirror.mirror_of == event.worker:
                self._muted(room, mirror, event.track)
        elif kind == "unpublished" and event.participant_id and event.track_id is not None:
            mirror = room.participants.get(event.participant_id)
            source = mirror.sources.get(event.track_id) if mirror is not None else None
            if mirror is not None and source is not None and mirror.mirror_of == event.worker:
                await room.unpublish(mirror, source)
        elif kind in ("want", "unwant") and event.track_id is not None:
            if kind == "want" and self.endpoint.peer_address(event.worker) is None:
                await self.worker.refresh()  # a worker started since the last heartbeat
            self._want(event.worker, event.track_id, kind == "want")

    def _muted(self, room: Room, mirror: Participant, track: TrackDescription) -> None:
        """A mirror's track muted or unmuted on its own worker: the same here, and this
        worker's participants told."""
        source = mirror.sources.get(track.track_id)
        if source is None or not source.set_muted(track.muted, time.monotonic()):
            return
        told = m.TrackMuted(track_id=track.track_id, participant_id=mirror.id, muted=track.muted)
        for participant in local_participants(room):
            self._spawn(participant.send(told))

    async def _mirror(self, room: Room, worker: str, info: MemberInfo) -> None:
        mirror = room.participants.get(info.participant_id)
        if mirror is None:

            async def nowhere(message: object) -> None:
                return None

            mirror = Participant(info.name, nowhere)
            mirror.id = info.participant_id
            mirror.mirror_of = worker
            mirror.grants = frozenset()  # it subscribes to nothing here
            await room.join(mirror)
        for track in info.tracks:
            await self._receive(room, mirror, track)

    async def _receive(self, room: Room, mirror: Participant, track: TrackDescription) -> None:
        """A track of a mirror: a source fed by the media link, published in the room."""
        worker = mirror.mirror_of
        if worker is None or track.track_id in mirror.sources:
            return
        params = StreamParameters(
            kind=track.kind,
            mime_type=track.mime_type,
            clock_rate=track.clock_rate,
            payload_type=track.payload_type,
            ssrc=track.ssrc,
            rtx_payload_type=track.rtx_payload_type,
            rtx_ssrc=track.rtx_ssrc,
            extensions=dict(track.extensions),
            parameters=dict(track.parameters),
        )

        def send_rtcp(packet: bytes, origin: str = worker) -> None:
            address = self.endpoint.peer_address(origin)
            if address is not None:
                self.endpoint.send_rtcp(packet, address)

        source = MediaSource(track.track_id, params, send_rtcp=send_rtcp, rtcp_ssrc=self._rtcp_ssrc)
        source.source_type = track.source_type
        if track.muted:  # muted before this worker heard of it
            source.set_muted(True, time.monotonic())
        self.inbound[(worker, track.ssrc)] = source
        room.publish(mirror, source)
        await self._tell(
            worker, RoomEvent(kind="want", room=room.name, worker=self.me, track_id=track.track_id)
        )

    def _want(self, worker: str, track_id: str, wanted: bool) -> None:
        track = self.outbound.get(track_id)
        if track is None:
            return
        if not wanted:
            track.destinations.pop(worker, None)
            return
        address = self.endpoint.peer_address(worker)
        if address is None:
            logger.warning("cascade: no media link to %s for %s", worker, track_id)
            return
        track.destinations[worker] = address
        track.source.request_keyframe(time.monotonic())  # its subscribers start there

    def _outbound(self, source: MediaSource) -> OutboundTrack:
        track = self.outbound.get(source.track_id)
        if track is None:
            track = OutboundTrack(source, self.endpoint)
            self.outbound[source.track_id] = track
            self._outbound_by_ssrc[source.params.ssrc] = track
        return track

    def _drop_inbound(self, mirror: Participant) -> None:
        worker = mirror.mirror_of
        for source in mirror.sources.values():
            self.inbound.pop((worker or "", source.params.ssrc), None)

    async def _drop_worker(self, room: Room, worker: str) -> None:
        for mirror in [p for p in room.participants.values() if p.mirror_of == worker]:
            await room.leave(mirror)
        for track in self.outbound.values():
            track.destinations.pop(worker, None)

    async def worker_gone(self, worker: str) -> None:
        """``worker`` died: its mirrors leave every room, nothing is sent to it."""
        for name, members in list(self.members.items()):
            if worker in members:
                members.discard(worker)
                room = self.rooms.rooms.get(name)
                if room is not None:
                    await self._drop_worker(room, worker)
                with contextlib.suppress(RedisError):
                    await self.worker.store.remove_member(name, worker)
        for track in self.outbound.values():
            track.destinations.pop(worker, None)
        self.endpoint.remove_peer(worker)

    # -- the media link -------------------------------------------------------------------
    def _on_link_rtp(self, worker: str, packet: bytes, now: float) -> None:
        try:
            header = parse_rtp(packet)
        except RtpError:
            return
        source = self.inbound.get((worker, header.ssrc))
        if source is not None:
            source.on_rtp(packet, header, now)

    def _on_link_rtcp(self, worker: str, packet: bytes, now: float) -> None:
        try:
            packets = rtcp.parse_rtcp(packet, max_nack_items=HISTORY)
        except rtcp.RtcpError:
            return
        address = self.endpoint.peer_address(worker)
        for item in packets:
            if isinstance(item, rtcp.SenderReport):
                source = self.inbound.get((worker, item.ssrc))
                if source is not None:
                    source.on_sender_report(item, now)
            elif isinstance(item, rtcp.Pli):
                track = self._outbound_by_ssrc.get(item.media_ssrc)
                if track is not None and worker in track.destinations:
                    track.source.request_keyframe(now)
            elif isinstance(item, rtcp.Nack) and address is not None:
                track = self._outbound_by_ssrc.get(item.media_ssrc)
                if track is not None and worker in track.destinations:
                    track.answer(item.lost, address)

    # -- telling ----------------------------------------------------------------------------
    async def _broadcast(self, room: str, event: RoomEvent) -> None:
        for worker in list(self.members.get(room, ())):
            await self._tell(worker, event)

    async def _tell(self, worker: str, event: RoomEvent) -> None:
        envelope = Envelope(
            kind="room", session="room", edge=self.me, host=worker, text=event.model_dump_json()
        )
        if not await self.worker._publish(worker, envelope, 2.0):
            logger.warning("cascade: %s did not hear %s of %r", worker, event.kind, event.room)

    def stats(self) -> dict[str, object]:
        return {
            "rooms": {name: sorted(members) for name, members in self.members.items()},
            "tracks_in": len(self.inbound),
            "tracks_out": sum(1 for t in self.outbound.values() if t.destinations),
            "link": {
                "sent": self.endpoint.sent,
                "received": self.endpoint.received,
                "refused": self.endpoint.refused,
            },
        }
