"""The aiohttp edge: WebSocket signaling at ``/ws``, the demo client, health and stats."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError
from yarl import URL

from .. import faults
from .. import protocol as m
from ..adapters import aiortc_plane
from ..auth.access import Authenticator
from ..auth.keys import TokenKeys, load_keys
from ..auth.tokens import TokenError
from ..config import ConfigError, Settings, load_settings
from ..rooms.room import Participant, RoomError, RoomManager
from .limits import AddressLimits, TokenBucket, client_address, message_cost
from .outbox import Outbox

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024
#: seconds the shutdown may spend telling clients, closing peers and WebSockets
SHUTDOWN_TIMEOUT = 5.0
#: seconds a close handshake with a stalled client may take before the socket is dropped
CLOSE_TIMEOUT = 1.0
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

ROOMS_KEY = web.AppKey("rooms", RoomManager)



@dataclass
class ServerState:
    """What changes while the server runs (aiohttp apps are frozen once started)."""

    settings: Settings
    config_path: str | None
    auth: Authenticator
    #: the open WebSocket connections
    sessions: set[SignalingSession] = field(default_factory=set)
    addresses: AddressLimits = field(default_factory=lambda: AddressLimits(100, 200, 1000))
    #: refusals at the edge, by reason (for /stats)
    refused: Counter[str] = field(default_factory=Counter)


STATE_KEY = web.AppKey("state", ServerState)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(x) for x in error["loc"]) or "message"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class InsecureSettings(ValueError):
    """Settings that would run a tokenless server beyond loopback."""


def make_authenticator(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> Authenticator:
    """The token keys of ``settings`` (and the environment); raises ConfigError for a bad
    secret, InsecureSettings for a server without a secret listening beyond loopback."""
    keys = load_keys(settings.auth, environ)
    if (
        keys.current is None
        and not is_loopback(settings.http.host)
        and not settings.auth.insecure_off_loopback
    ):
        raise InsecureSettings(
            f"refusing to listen on {settings.http.host} without a token secret: anyone "
            "could join any room.  Make one with `sfu secret` and pass it (auth.secret_file, "
            "or $SFU_TOKEN_SECRET_FILE), or, on a closed test network only, --insecure"
        )
    return Authenticator(keys, now=time.time())


class SignalingSession:
    """One WebSocket: one participant at most."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
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

    async def send(self, message: m.ServerMessage) -> None:
        text = message.model_dump_json()
        if self.outbox is not None:
            self.outbox.put(text)
        elif not self.ws.closed:
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
            _, policy = self.rooms.settings.policy_for(message.room)
            try:
                access = self.auth.join(
                    token=message.token,
                    room=message.room,
                    name=message.name,
                    role=message.role,
                    policy_requires=policy.require_token,
                    now=time.time(),
                )
            except TokenError as exc:
                await self.error("unauthorized", str(exc), message.id)
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
            try:
                sdp = await participant.publisher_peer().answer(
                    message.sdp,
                    list(participant.policy.codecs),
                    dict(message.sources) if message.sources else None,
                )
            except Exception as exc:
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


def request_address(request: web.Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For, else the TCP peer's)."""
    state = request.app[STATE_KEY]
    return client_address(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        state.settings.http.trusted_proxies,
    )


def origin_allowed(request: web.Request, allowed: list[str]) -> bool:
    """A browser page may use the WebSocket and admin endpoints when it is of the server's
    own origin (the request's Host, or a trusted proxy's X-Forwarded-Host) or of one of
    ``allowed``; a request without Origin is not from a page."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    try:
        parsed = URL(origin)
    except ValueError:
        return False
    if parsed.scheme not in ("http", "https"):
        return False
    hosts = [request.host]
    proxies = request.app[STATE_KEY].settings.http.trusted_proxies
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded and request.remote in proxies:
        hosts.append(forwarded.split(",")[0].strip())
    return parsed.raw_authority.lower() in (h.lower() for h in hosts)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    limits = state.settings.limits
    if not origin_allowed(request, state.settings.http.allowed_origins):
        state.refused["origin"] += 1
        return web.Response(status=403, text="origin not allowed (http.allowed_origins)\n")
    address = request_address(request)
    if not state.addresses.connect(address):
        state.refused["connections_per_address"] += 1
        return web.Response(
            status=429,
            text=f"too many connections from {address} (limits.max_connections_per_address)\n",
        )
    try:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
        await ws.prepare(request)
    except BaseException:
        state.addresses.disconnect(address)
        raise
    transport = request.transport
    bound_buffers(transport)

    def stalled(reason: str) -> None:
        """The client stopped reading: close its connection (whatever it still had to get
        is dropped); its reader loop below then ends and the participant leaves."""
        state.refused["slow_consumer"] += 1
        logger.warning("%s: slow consumer (%s); closing", session.context, reason)
        close_stalled(transport)

    outbox = Outbox(
        ws.send_str,
        max_queue=limits.send_queue,
        send_timeout=limits.send_timeout,
        on_stalled=stalled,
    )
    session = SignalingSession(ws, request.app[ROOMS_KEY], state.auth, outbox, address)
    state.sessions.add(session)
    bucket = TokenBucket(limits.messages_per_second, limits.message_burst)
    session.bucket = bucket
    deadline: asyncio.Future[None] | None = None

    async def join_deadline() -> None:
        timeout = state.settings.limits.join_timeout
        await asyncio.sleep(timeout)
        if session.participant is None and not ws.closed:
            await session.error("join_timeout", f"no join within {timeout:g} s")
            await outbox.flush(CLOSE_TIMEOUT)
            await ws.close(code=4008, message=b"join timeout")

    def arm_deadline() -> None:
        """A connection that is in no room (just opened, or left) has join_timeout to join."""
        nonlocal deadline
        if deadline is not None:
            deadline.cancel()
        deadline = asyncio.ensure_future(join_deadline())

    session.on_left = arm_deadline
    arm_deadline()
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                now = time.monotonic()
                # one unit before parsing (whatever the message), the rest of its cost after
                if not bucket.allow(now) or not state.addresses.allow(address, now, 1):
                    state.refused["rate_limited"] += 1
                    await session.error("rate_limited", "too many messages; slow down")
                else:
                    message = await session.parse(msg.data)
                    if message is not None:
                        extra = message_cost(message.type) - 1
                        if extra and not (
                            bucket.allow(now, extra) and state.addresses.allow(address, now, extra)
                        ):
                            state.refused["rate_limited"] += 1
                            await session.error(
                                "rate_limited",
                                f"too many {message.type} requests; slow down",
                                message.id,
                            )
                        else:
                            await session.handle_message(message)
                            if session.participant is not None and deadline is not None:
                                deadline.cancel()
                                deadline = None
            elif msg.type == WSMsgType.BINARY:
                await session.error("bad_request", "binary messages are not supported")
            elif msg.type == WSMsgType.ERROR:
                break
            if session.errors >= state.settings.limits.max_errors:
                await outbox.flush(CLOSE_TIMEOUT)
                await ws.close(code=4029, message=b"too many bad messages")
                break
    finally:
        state.sessions.discard(session)
        state.addresses.disconnect(address)
        if deadline is not None:
            deadline.cancel()
        session.on_left = None
        await session.leave()
        outbox.close()
    return ws


#: what one signaling connection may hold unread in the kernel and in its transport: a
#: client that stops reading fills this in a few hundred messages (not the megabytes the
#: kernel would otherwise grant it), so its stall is seen in ``send_timeout`` and the memory
#: it pins is bounded; the outbox still queues ``send_queue`` messages above it
SOCKET_SEND_BUFFER = 64 * 1024


def bound_buffers(transport: Any) -> None:
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        except OSError:
            pass
    transport.set_write_buffer_limits(high=SOCKET_SEND_BUFFER)


def close_stalled(transport: Any) -> None:
    """Drop a connection whose client does not read: no close frame (it would wait behind
    what the client does not read, forever), the socket closed at once; the reader loop of
    its handler then ends and its participant leaves."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # a reset, not a FIN behind megabytes the client will never read: the kernel
            # frees the socket's buffers now instead of retrying them for minutes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def drain(app: web.Application, timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Shut down gracefully: tell every connection (``bye``), close every peer connection,
    then close the WebSockets (1001 going away); bounded by ``timeout``."""
    sessions = list(app[STATE_KEY].sessions)
    logger.info("shutting down: %d connections, %d rooms", len(sessions), len(app[ROOMS_KEY].rooms))
    bye = m.Bye(code="shutdown", reason="server shutting down")

    async def tell(session: SignalingSession) -> None:
        try:
            await session.send(bye)
        except Exception as exc:  # a dead socket: nothing to tell
            logger.debug("shutdown: %s: %s", session.context, exc)

    async def close(session: SignalingSession) -> None:
        try:
            await session.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        except Exception as exc:
            logger.debug("shutdown: %s: %s", session.context, exc)

    async def flush(session: SignalingSession) -> None:
        if session.outbox is not None:
            await session.outbox.flush(CLOSE_TIMEOUT)

    async def run() -> None:
        await asyncio.gather(*(tell(s) for s in sessions))
        await asyncio.gather(*(flush(s) for s in sessions))
        await app[ROOMS_KEY].close()
        await asyncio.gather(*(close(s) for s in sessions))

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        logger.warning("shutdown: not done within %g s, going anyway", timeout)


def _static(name: str, content_type: str) -> web.Response:
    body = resources.files("sfu.web").joinpath(name).read_bytes()
    return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.Response:
    return _static("index.html", "text/html")


async def client_js(request: web.Request) -> web.Response:
    return _static("client.js", "application/javascript")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _admin_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_admin(request: web.Request) -> bool:
    """A request on the admin Unix socket, or with a valid admin token."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family == socket.AF_UNIX:
        return True
    try:
        request.app[STATE_KEY].auth.admin(_admin_token(request), time.time())
    except TokenError:
        return False
    return True


async def _refuse_admin(request: web.Request) -> web.Response | None:
    """The reply that refuses an admin request, or None when it may go on."""
    state = request.app[STATE_KEY]
    if not origin_allowed(request, state.settings.http.allowed_origins):
        state.refused["origin"] += 1
        return web.json_response({"ok": False, "errors": ["origin not allowed"]}, status=403)
    if not is_admin(request):
        state.refused["admin"] += 1
        return web.json_response(
            {"ok": False, "errors": ["needs an admin credential: a token with the admin grant "
                                     "for every room (Authorization: Bearer ...)"]},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="sfu"'},
        )
    return None


def public_stats(app: web.Application) -> dict[str, Any]:
    """What anyone may see: counts, nothing that names a room or a participant."""
    rooms = app[ROOMS_KEY]
    state = app[STATE_KEY]
    participants = [p for room in list(rooms.rooms.values()) for p in room.participants.values()]
    return {
        "time": time.time(),
        "rooms": len(rooms.rooms),
        "participants": len(participants),
        "published_tracks": sum(len(p.sources) for p in participants),
        "connections": len(state.sessions),
        "faults": dict(faults.counts),
    }


async def stats(request: web.Request) -> web.Response:
    """Every room and participant for an admin; counts only for anyone else."""
    state = request.app[STATE_KEY]
    if not is_admin(request) or not origin_allowed(request, state.settings.http.allowed_origins):
        return web.json_response(public_stats(request.app))
    rooms = request.app[ROOMS_KEY]
    out: dict[str, Any] = {
        "time": time.time(),
        "faults": dict(faults.counts),
        "refused": dict(state.refused),
        "development": state.auth.development,
        "rooms": {},
    }
    for name, room in list(rooms.rooms.items()):
        participants = []
        for p in list(room.participants.values()):
            try:
                participants.append(_participant_stats(p))
            except Exception:  # a broken participant must not hide the others
                faults.record("stats", p.context)
                participants.append({"participant_id": p.id, "name": p.name, "error": True})
        out["rooms"][name] = {"policy": room.policy_name, "participants": participants}
    return web.json_response(out)


def _participant_stats(p: Participant) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "participant_id": p.id,
        "name": p.name,
        "identity": p.identity,
        "role": p.role,
        "published": [],
        "subscribed": [],
    }
    if p.publisher is not None:
        # what the publisher sent that was not forwarded: another SSRC than the ones it
        # negotiated, garbage, or (per track, "packets_dropped") a payload type not negotiated
        entry["ingress"] = {
            "unknown_ssrc": p.publisher.unknown_ssrc,
            "malformed_rtp": p.publisher.malformed_rtp,
            "malformed_rtcp": p.publisher.malformed_rtcp,
        }
    for source in p.sources.values():
        entry["published"].append(
            {
                "track_id": source.track_id,
                "kind": source.kind,
                "codec": source.params.codec,
                "packets_received": source.stats.packets_received,
                "packets_lost": source.stats.packets_lost,
                "packets_dropped": source.packets_dropped,
                "duplicate_packets": source.duplicate_packets,
                "keyframes_received": source.keyframes_received,
                "keyframe_requests_sent": source.keyframes.sent,
                "nacks_sent": source.nacks_sent,
                "subscribers": len(source.downtracks),
            }
        )
    if p.subscriber is not None:
        entry["downlink"] = p.subscriber.metrics()
        entry["estimator"] = p.subscriber.estimator_state()
        now = time.monotonic()
        for track_id, dt in list(p.subscriber.downtracks.items()):
            sub = p.subscriber.subscriptions.get(track_id)
            target = sub.target if sub is not None else None
            allocated = sub.bandwidth if sub is not None else None
            entry["subscribed"].append(
                {
                    "track_id": track_id,
                    **dt.stats(),
                    "target": None
                    if target is None
                    else [target.spatial, target.temporal, target.paused, target.reason],
                    "allocated": None
                    if allocated is None
                    else [allocated.spatial, allocated.temporal, allocated.paused],
                    "up_hold": sub.up_hold if sub is not None else None,
                    "level_bitrate": None if sub is None else sub.level_bitrate(now),
                }
            )
    return entry


def reload_settings(
    app: web.Application, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Re-read the settings file; a valid one applies its room policies to running rooms,
    its ``auth`` (secret, previous secrets) and its ``limits`` at once; sections that need a
    restart are named; an invalid one changes nothing."""
    state = app[STATE_KEY]
    path = state.config_path
    if not path:
        return {"ok": False, "errors": ["the server runs on its embedded defaults: no file"]}
    try:
        new = load_settings(path)
    except ConfigError as exc:
        logger.error("reload of %s rejected, the old settings stay:\n%s", path, exc)
        return {"ok": False, "errors": exc.problems}
    old = state.settings
    restart = [
        name for name in ("http", "ice", "media") if getattr(old, name) != getattr(new, name)
    ]
    # the http section stays the running one: the address decides what auth must be
    new = new.model_copy(update={name: getattr(old, name) for name in restart})
    try:
        auth = make_authenticator(new, environ)
    except (ConfigError, InsecureSettings) as exc:
        errors = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        logger.error("reload of %s rejected, the old settings stay:\n%s", path, "\n".join(errors))
        return {"ok": False, "errors": errors}
    if auth.development != state.auth.development:
        errors = [
            "auth: a reload cannot switch between development mode (no secret) and tokens; "
            "restart the server"
        ]
        return {"ok": False, "errors": errors}
    if not state.auth.development:
        # a development server keeps its admin token (printed at start)
        state.auth = auth
        for session in list(state.sessions):
            session.auth = auth
    applied = app[ROOMS_KEY].apply(new.rooms)
    apply_limits(app, new)
    state.settings = new
    logging.getLogger().setLevel(new.log.level)
    logger.info(
        "reloaded %s: rooms %s%s", path, applied, f"; needs a restart: {restart}" if restart else ""
    )
    return {"ok": True, "rooms": applied, "restart_required": restart}


def apply_limits(app: web.Application, settings: Settings) -> None:
    """``limits`` in force: for the connections and participants to come and, where a value
    is per connection or per peer, for the running ones too."""
    limits = settings.limits
    state = app[STATE_KEY]
    rooms = app[ROOMS_KEY]
    rooms.max_rooms = limits.max_rooms
    rooms.peer_timeout = limits.peer_timeout
    rooms.setup_timeout = limits.setup_timeout
    rooms.sdp_limits = limits.sdp_limits()
    state.addresses.reconfigure(
        limits.max_connections_per_address,
        limits.address_cost_per_second,
        limits.address_cost_burst,
    )
    for session in list(state.sessions):
        if session.bucket is not None:
            session.bucket.reconfigure(limits.messages_per_second, limits.message_burst)
        if session.outbox is not None:
            session.outbox.max_queue = limits.send_queue
            session.outbox.send_timeout = limits.send_timeout
    for room in list(rooms.rooms.values()):
        for participant in list(room.participants.values()):
            participant.settings.peer_timeout = limits.peer_timeout
            participant.settings.setup_timeout = limits.setup_timeout
            participant.settings.sdp_limits = rooms.sdp_limits


async def admin_reload(request: web.Request) -> web.Response:
    refusal = await _refuse_admin(request)
    if refusal is not None:
        return refusal
    result = reload_settings(request.app)
    return web.json_response(result, status=200 if result["ok"] else 400)


@web.middleware
async def development_host_check(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A development server (no secret) answers only requests addressed to a loopback name:
    a proxy in front, or a page whose DNS name was rebound to 127.0.0.1, gets 403."""
    state = request.app[STATE_KEY]
    if state.auth.development and not state.settings.auth.insecure_off_loopback:
        host = URL(f"http://{request.host}").host or ""
        if not is_loopback(host.strip("[]")):
            state.refused["development_host"] += 1
            return web.Response(
                status=403,
                text="this server runs in development mode (no token secret) and serves "
                "loopback only; see docs/security.md\n",
            )
    return await handler(request)


def create_app(
    settings: Settings, config_path: str | None = None, environ: Mapping[str, str] | None = None
) -> web.Application:
    """The application; raises ConfigError (a bad secret) or InsecureSettings (no secret
    beyond loopback)."""
    auth = make_authenticator(settings, environ)
    aiortc_plane.install(
        aiortc_plane.IceOptions(
            listen_addresses=list(settings.ice.listen_addresses),
            announced_address=settings.ice.announced_address,
            port_range=settings.ice.port_range,
        )
    )
    app = web.Application(middlewares=[development_host_check])
    app[STATE_KEY] = ServerState(settings, config_path, auth)
    app[ROOMS_KEY] = RoomManager(
        settings.rooms, settings.media.start_bitrate_kbps, settings.media.publisher_transport_cc
    )
    apply_limits(app, settings)
    app.router.add_get("/", index)
    app.router.add_get("/client.js", client_js)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_post("/admin/reload", admin_reload)

    app.on_shutdown.append(drain)
    return app
