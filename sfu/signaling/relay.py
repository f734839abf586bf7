"""A worker's part in a cluster (docs/scaling.md): its heartbeat in Redis, where a room
goes, and the signaling of clients whose WebSocket reached another worker than the one
hosting their room.

* **Edge** (the worker holding the WebSocket): a join is authorized here first (the token,
  the room's policy), then placed: :meth:`ClusterWorker.route_join` claims the room for the
  least-loaded worker unless a live one holds it already.  If that is another worker, the
  connection is *relayed*: its messages go to that worker's inbox as they come (after this
  worker's rate limits), what comes back is written to the WebSocket.
* **Host** (the worker hosting the room): a relayed connection is a :class:`SignalingSession`
  like any other, whose writer publishes to the edge's inbox, in order, bounded like a
  WebSocket's (:class:`~.outbox.Outbox`).  Media never crosses workers: the client's peer
  connections are with the host (its ICE candidates).
* **Failure**: every heartbeat reads the live workers.  An edge whose host is gone tells its
  clients (``bye``, ``worker_lost``: join again, the room is placed anew); a host whose edge
  is gone lets the participants of that edge leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable

from redis.exceptions import RedisError

from .. import protocol as m
from ..auth.access import Authenticator
from ..cluster.placement import least_loaded
from ..cluster.store import ClusterStore
from ..cluster.wire import Envelope, RoomEvent, WorkerInfo
from ..config import ClusterSettings
from ..rooms.room import RoomManager
from .cascade import Cascade
from .outbox import Outbox
from .session import SignalingSession

logger = logging.getLogger(__name__)

#: seconds a relayed message may wait to be published (Redis restarting) before it is
#: dropped (client to host) or the connection is given up (host to client)
RELAY_SEND_TIMEOUT = 5.0
#: seconds between tries to publish while Redis is unavailable
PUBLISH_RETRY = 0.2


class EdgeRelay:
    """Edge side: a WebSocket whose room another worker hosts."""

    def __init__(self, session_id: str, host: str, room: str) -> None:
        self.session_id = session_id
        self.host = host
        self.room = room


class ClusterWorker:
    """One worker of a cluster: started and stopped with the application."""

    def __init__(
        self,
        settings: ClusterSettings,
        worker_id: str,
        node: str,
        rooms: RoomManager,
        url: str,
        auth: Authenticator,
        send_queue: int = 256,
        relay_address: str = "127.0.0.1",
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.node = node
        self.rooms = rooms
        self.store = ClusterStore(url, settings.heartbeat_timeout)
        self.send_queue = send_queue
        #: what hosted sessions check joins with (the same keys on every worker)
        self.auth = auth
        #: edge side: relayed connections, by session id
        self.edges: dict[str, tuple[SignalingSession, EdgeRelay]] = {}
        self._relays: dict[SignalingSession, EdgeRelay] = {}
        #: host side: the sessions of clients whose WebSocket is on another worker
        self.hosted: dict[str, SignalingSession] = {}
        #: the live workers at the last heartbeat, by id
        self.live: dict[str, WorkerInfo] = {}
        self.draining = False
        #: Redis errors met (a Redis outage: calls in progress keep their media)
        self.errors = 0
        self.relayed_in = 0
        self.relayed_out = 0
        self._tasks: list[asyncio.Task[None]] = []
        #: when each worker was last seen alive (monotonic seconds)
        self._seen: dict[str, float] = {}
        #: rooms over several workers; its media link listens on relay_address
        self.cascade = Cascade(self, rooms)
        self.relay_address = relay_address
        self._relay: tuple[str, int] | None = None
        self._cpu = (time.monotonic(), time.process_time())
        self._forwarded: Callable[[], int] | None = None
        self._forwarded_at = (time.monotonic(), 0)

    # -- life --------------------------------------------------------------------------------
    async def start(self, forwarded: Callable[[], int] | None = None) -> None:
        """``forwarded``: the RTP packets this worker has forwarded so far (for its load)."""
        self._forwarded = forwarded
        try:
            self._relay = await self.cascade.start(self.relay_address)
        except OSError as exc:
            logger.warning(
                "cluster: no media link on %s (%s): no cascading", self.relay_address, exc
            )
        try:
            await self._heartbeat_once()
        except RedisError as exc:  # it comes up later: the heartbeat keeps trying
            self.errors += 1
            logger.warning("cluster: Redis unavailable at start (%s); retrying", exc)
        self._tasks = [
            asyncio.ensure_future(self._heartbeat()),
            asyncio.ensure_future(self._listen()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.cascade.stop()
        with contextlib.suppress(RedisError, OSError):
            for room in list(self.rooms.rooms):
                await self.store.release(room, self.worker_id)
            # gone for sure: the others drop what they hold of it at their next heartbeat
            await self.store.bury(self.worker_id)
        await self.store.close()

    async def begin_drain(self, timeout: float = 1.0) -> bool:
        """This worker stops: it takes no new room from now on (its record says so at
        once); whether a live worker of another node remains (then its clients move there:
        ``bye`` ``moved``; else the server shuts down: ``shutdown``)."""
        self.draining = True
        try:
            await asyncio.wait_for(self.store.register(self.info()), timeout)
            workers = await asyncio.wait_for(self.store.workers(), timeout)
        except (RedisError, OSError, TimeoutError):
            return False
        return any(w.node != self.node and not w.draining for w in workers)

    async def release(self, room: str) -> None:
        """The room has gone from this worker: its claim too."""
        try:
            await self.store.release(room, self.worker_id)
        except RedisError as exc:  # the claim expires by itself
            self.errors += 1
            logger.debug("cluster: releasing %r: %s", room, exc)

    # -- load and heartbeat --------------------------------------------------------------------
    def info(self) -> WorkerInfo:
        now, cpu = time.monotonic(), time.process_time()
        last_at, last_cpu = self._cpu
        self._cpu = (now, cpu)
        share = (cpu - last_cpu) / (now - last_at) if now > last_at else 0.0
        rate = 0.0
        if self._forwarded is not None:
            count = self._forwarded()
            at, before = self._forwarded_at
            self._forwarded_at = (now, count)
            rate = (count - before) / (now - at) if now > at else 0.0
        return WorkerInfo(
            worker=self.worker_id,
            node=self.node,
            pid=os.getpid(),
            rooms=len(self.rooms.rooms),
            participants=sum(
                1
                for room in self.rooms.rooms.values()
                for p in room.participants.values()
                if p.mirror_of is None  # a mirror's connections are another worker's
            ),
            forwarded_per_second=max(0.0, rate),
            cpu=max(0.0, share),
            draining=self.draining,
            relay_host=self._relay[0] if self._relay else None,
            relay_port=self._relay[1] if self._relay else None,
            relay_key=self.cascade.endpoint.key.hex() if self._relay else None,
        )

    async def _heartbeat_once(self) -> None:
        await self.store.register(self.info())
        lost = await self.store.renew(self.worker_id, list(self.rooms.rooms))
        for room in lost:
            # its claim is gone (Redis restarted empty, or this worker missed heartbeats):
            # claim it again; if another worker has taken it meanwhile, the room still runs
            # here and new joins go there
            holder = await self.store.claim(room, self.worker_id)
            if holder != self.worker_id and holder not in self.cascade.members.get(room, ()):
                logger.warning("cluster: room %r is now claimed by %s", room, holder)
        await self.refresh()
        await self._check_peers(time.monotonic())

    async def refresh(self) -> None:
        """Read the live workers (and their media links) from Redis."""
        self.live = {w.worker: w for w in await self.store.workers()}
        now = time.monotonic()
        for worker, info in self.live.items():
            self._seen[worker] = now
            if info.relay_host and info.relay_port and info.relay_key:
                self.cascade.learn(worker, info.relay_host, info.relay_port, info.relay_key)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await self._heartbeat_once()
            except RedisError as exc:
                self.errors += 1
                logger.warning("cluster: heartbeat failed: %s", exc)
            except Exception:
                logger.exception("cluster: heartbeat")

    async def _gone(self, now: float) -> set[str]:
        """The workers this one has connections with that are gone: missing from Redis and
        either buried by their supervisor (they exited) or missing for a heartbeat timeout
        (a Redis restarted empty misses everyone until their next heartbeat: that is no
        reason to drop calls)."""
        peers = {relay.host for _, relay in self.edges.values()}
        peers |= {s.edge_worker for s in self.hosted.values() if s.edge_worker is not None}
        for members in self.cascade.members.values():
            peers |= members
        missing = [w for w in peers if w not in self.live]
        if not missing:
            return set()
        timeout = self.settings.heartbeat_timeout
        gone = {w for w in missing if now - self._seen.setdefault(w, now) > timeout}
        gone |= await self.store.buried([w for w in missing if w not in gone])
        for worker in gone:
            self._seen.pop(worker, None)
        return gone

    async def _check_peers(self, now: float) -> None:
        """Connections whose other side's worker is gone."""
        gone = await self._gone(now)
        if not gone:
            return
        for worker in gone:
            await self.cascade.worker_gone(worker)
        for session_id, (session, relay) in list(self.edges.items()):
            if relay.host in gone:
                logger.warning("cluster: worker %s is gone; its clients here rejoin", relay.host)
                self._unrelay(session_id)
                asyncio.ensure_future(
                    session.send(
                        m.Bye(code="worker_lost", reason=f"the worker hosting {relay.room} is gone")
                    )
                )
                if session.on_left is not None:
                    session.on_left()
        for session_id, session in list(self.hosted.items()):
            edge = session.edge_worker
            if edge is not None and edge in gone:
                self.hosted.pop(session_id, None)
                asyncio.ensure_future(self._end_hosted(session))

    # -- placement (edge) --------------------------------------------------------------------
    async def place(self, room: str) -> str:
        """The worker hosting ``room``: a live holder, else the least loaded (claimed now)."""
        if room in self.rooms.rooms:
            holder = await self.store.holder(room)
            if holder in (None, self.worker_id):
                return await self.store.claim(room, self.worker_id)
        holder = await self.store.holder(room)
        if holder is not None and holder in self.live:
            return holder
        # a new room: the records as they are now (a room placed a moment ago counts)
        workers = await self.store.workers()
        if self.draining:
            workers = [w for w in workers if w.worker != self.worker_id]
        best = least_loaded(workers)
        candidate = best.worker if best is not None else self.worker_id
        return await self.store.claim(room, candidate)

    async def route_join(self, session: SignalingSession, message: m.Join, text: str) -> bool:
        """Place the room of a join; True if it went to another worker (relayed from now on),
        False to join here.  A join the token does not allow is answered here, never placed."""
        if await session.authorize(message) is None:
            return True
        try:
            host = await self.place(message.room)
        except RedisError as exc:
            self.errors += 1
            await session.error(
                "unavailable", f"the cluster cannot place the room now: {exc}", message.id
            )
            return True
        here = host == self.worker_id or await self._cascades(message.room, host)
        logger.info(
            "cluster: join %r: the room's worker is %s; %s",
            message.room,
            host,
            "joining here" if here else "relayed there",
        )
        if here:
            # here: a member of the room if other workers hold some of it (cascading)
            await self.cascade.enter(message.room)
            await session.handle_message(message)
            if session.participant is None:
                await self.cascade.leave_if_unused(message.room)
            return True
        session_id = uuid.uuid4().hex
        relay = EdgeRelay(session_id, host, message.room)
        self.edges[session_id] = (session, relay)
        self._relays[session] = relay
        session.relayed = True
        await self._send(relay, "open", text, address=session.address)
        return True

    async def _cascades(self, room: str, host: str) -> bool:
        """Whether a participant whose WebSocket reached this worker stays here though
        ``host`` holds ``room``: this worker holds participants of it already, or the host
        is on another node, or it holds room_participants_per_worker of them."""
        members = await self.store.members(room)
        if members.get(self.worker_id, 0) > 0:
            return True
        if self.draining:  # no new part of a room comes to a worker that stops
            return False
        info = self.live.get(host)
        if self.settings.cascade_across_nodes and info is not None and info.node != self.node:
            return True
        limit = self.settings.room_participants_per_worker
        return limit is not None and members.get(host, 0) >= limit

    async def forward(self, session: SignalingSession, text: str) -> None:
        """A message of a relayed connection, to its host."""
        relay = self._relays.get(session)
        if relay is not None:
            await self._send(relay, "message", text)

    async def connection_closed(self, session: SignalingSession) -> None:
        """The WebSocket of a (maybe) relayed connection ended."""
        relay = self._relays.get(session)
        if relay is not None:
            self._unrelay(relay.session_id)
            await self._send(relay, "closed")

    def _unrelay(self, session_id: str) -> None:
        entry = self.edges.pop(session_id, None)
        if entry is not None:
            entry[0].relayed = False
            self._relays.pop(entry[0], None)

    async def _send(
        self, relay: EdgeRelay, kind: str, text: str | None = None, address: str | None = None
    ) -> None:
        envelope = Envelope.model_validate(
            {
                "kind": kind,
                "session": relay.session_id,
                "edge": self.worker_id,
                "host": relay.host,
                "text": text,
                "address": address,
            }
        )
        if not await self._publish(relay.host, envelope, RELAY_SEND_TIMEOUT):
            logger.warning("cluster: cannot relay to %s: Redis unavailable", relay.host)

    async def _publish(self, worker: str, envelope: Envelope, timeout: float) -> bool:
        """Send ``envelope``, trying again through a short Redis outage (a restart) for up to
        ``timeout`` seconds; False if it could not."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await self.store.send(worker, envelope):
                    self.relayed_out += 1
                    return True
            except RedisError:
                self.errors += 1
            # Redis down, or the worker's inbox not subscribed (yet again)
            if time.monotonic() + PUBLISH_RETRY > deadline:
                return False
            await asyncio.sleep(PUBLISH_RETRY)

    # -- inbox -----------------------------------------------------------------------------
    async def _listen(self) -> None:
        while True:
            try:
                async for envelope in self.store.listen(self.worker_id):
                    self.relayed_in += 1
                    try:
                        await self._on_envelope(envelope)
                    except Exception:
                        logger.exception("cluster: envelope %s", envelope.kind)
            except RedisError as exc:
                self.errors += 1
                logger.warning("cluster: inbox lost (%s); subscribing again", exc)
            except Exception:  # whatever it was, the inbox must go on
                self.errors += 1
                logger.exception("cluster: inbox failed; subscribing again")
            await asyncio.sleep(min(1.0, self.settings.heartbeat_interval))

    async def _on_envelope(self, envelope: Envelope) -> None:
        if envelope.kind == "room":
            if envelope.host == self.worker_id and envelope.text is not None:
                try:
                    event = RoomEvent.model_validate_json(envelope.text)
                except ValueError:
                    logger.warning("cluster: a room event does not validate; dropped")
                    return
                await self.cascade.on_event(event)
            return
        if envelope.host == self.worker_id and envelope.kind in ("open", "message", "closed"):
            await self._on_hosted(envelope)
        elif envelope.edge == self.worker_id:
            await self._on_edge(envelope)

    async def _on_edge(self, envelope: Envelope) -> None:
        entry = self.edges.get(envelope.session)
        if entry is None:
            return
        session, relay = entry
        if envelope.kind == "message" and envelope.text is not None:
            if session.outbox is not None:
                session.outbox.put(envelope.text)
        elif envelope.kind == "left":
            self._unrelay(envelope.session)
            if session.on_left is not None:
                session.on_left()
        elif envelope.kind == "moved" and envelope.reason:
            # a placement race: the room is another worker's; that one gets the join
            relay.host = envelope.reason
            if envelope.text is not None:
                await self._send(relay, "open", envelope.text, address=session.address)
        elif envelope.kind == "close":
            self._unrelay(envelope.session)
            code = envelope.code if envelope.code and 1000 <= envelope.code < 5000 else 1000
            asyncio.ensure_future(session.close(code, (envelope.reason or "").encode()[:120], 3.0))

    async def _on_hosted(self, envelope: Envelope) -> None:
        if envelope.kind == "open":
            await self._open_hosted(envelope)
            return
        session = self.hosted.get(envelope.session)
        if session is None:
            return
        if envelope.kind == "closed":
            self.hosted.pop(envelope.session, None)
            await self._end_hosted(session)
        elif envelope.text is not None:
            message = await session.parse(envelope.text)
            if isinstance(message, m.Join):
                # placed for one room: another join is placed again by the edge, after the
                # participant has left (a join racing the ``left`` lands here)
                await session.error("already_joined", "leave first, then join", message.id)
            elif message is not None:
                await session.handle_message(message)

    async def _open_hosted(self, envelope: Envelope) -> None:
        if envelope.text is None or envelope.session in self.hosted:
            return
        try:
            message = m.client_message.validate_json(envelope.text)
        except ValueError:
            return
        if not isinstance(message, m.Join):
            return
        holder = await self.store.claim(message.room, self.worker_id)
        edge, session_id = envelope.edge, envelope.session
        if holder != self.worker_id:
            await self._publish(
                edge,
                Envelope(
                    kind="moved",
                    session=session_id,
                    edge=edge,
                    host=self.worker_id,
                    text=envelope.text,
                    reason=holder,
                ),
                RELAY_SEND_TIMEOUT,
            )
            return

        async def write(text: str) -> None:
            envelope = Envelope(
                kind="message", session=session_id, edge=edge, host=self.worker_id, text=text
            )
            # through a Redis outage of up to the outbox's send timeout; beyond, the outbox
            # gives the connection up (its participant leaves)
            if not await self._publish(edge, envelope, 2 * RELAY_SEND_TIMEOUT):
                raise ConnectionError("Redis unavailable")

        def stalled(reason: str) -> None:
            logger.warning("cluster: relayed connection %s stalled (%s)", session_id, reason)
            session_ = self.hosted.pop(session_id, None)
            if session_ is not None:
                asyncio.ensure_future(self._end_hosted(session_))

        outbox = Outbox(
            write, max_queue=self.send_queue, send_timeout=RELAY_SEND_TIMEOUT, on_stalled=stalled
        )
        session = SignalingSession(
            None, self.rooms, self.auth, outbox, envelope.address or "relayed"
        )
        session.edge_worker = edge

        async def close(code: int, reason: bytes, timeout: float) -> None:
            await outbox.flush(timeout)
            await self._publish(
                edge,
                Envelope(
                    kind="close",
                    session=session_id,
                    edge=edge,
                    host=self.worker_id,
                    code=code,
                    reason=reason.decode(errors="replace"),
                ),
                timeout,
            )
            self.hosted.pop(session_id, None)
            await self._end_hosted(session)

        def left() -> None:
            asyncio.ensure_future(self._send_left(session_id, edge, outbox))

        session.close_hook = close
        session.on_left = left
        self.hosted[session_id] = session
        await session.handle_message(message)
        if session.participant is None:  # refused: the edge places its next join afresh
            await self._send_left(session_id, edge, outbox)

    async def _send_left(self, session_id: str, edge: str, outbox: Outbox) -> None:
        await outbox.flush(RELAY_SEND_TIMEOUT)
        if self.hosted.pop(session_id, None) is None:
            return
        await self._publish(
            edge,
            Envelope(kind="left", session=session_id, edge=edge, host=self.worker_id),
            RELAY_SEND_TIMEOUT,
        )

    async def _end_hosted(self, session: SignalingSession) -> None:
        session.on_left = None
        if session.participant is not None:  # its WebSocket, on the edge worker, is gone
            session.participant.leave_reason = "disconnected"
        await session.leave()
        if session.outbox is not None:
            session.outbox.close()

    def stats(self) -> dict[str, object]:
        return {
            "worker": self.worker_id,
            "node": self.node,
            "live_workers": sorted(self.live),
            "relayed_connections": len(self.edges),
            "hosted_connections": len(self.hosted),
            "envelopes_in": self.relayed_in,
            "envelopes_out": self.relayed_out,
            "redis_errors": self.errors,
            "draining": self.draining,
            "cascade": self.cascade.stats(),
        }
