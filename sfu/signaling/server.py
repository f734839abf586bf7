"""The aiohttp edge: WebSocket signaling at ``/ws``, the demo client, health and stats."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError

from .. import faults
from ..adapters import aiortc_plane
from ..auth.tokens import GRANTS, TokenError, verify_token
from ..config import ConfigError, Settings, load_settings
from ..rooms.room import Participant, RoomError, RoomManager
from . import messages as m
from .limits import TokenBucket

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024
#: seconds the shutdown may spend telling clients, closing peers and WebSockets
SHUTDOWN_TIMEOUT = 5.0

ROOMS_KEY = web.AppKey("rooms", RoomManager)


@dataclass
class ServerState:
    """What changes while the server runs (aiohttp apps are frozen once started)."""

    settings: Settings
    config_path: str | None
    auth: Authenticator
    #: the open WebSocket connections
    sessions: set[SignalingSession] = field(default_factory=set)


STATE_KEY = web.AppKey("state", ServerState)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(x) for x in error["loc"]) or "message"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


@dataclass
class Authenticator:
    """Who may join: tokens signed with ``secret``; required in every room when
    ``everywhere`` (a server listening beyond loopback), else where the policy says so."""

    secret: bytes
    everywhere: bool = False

    def grants(self, token: str | None, room: str, policy_requires: bool) -> frozenset[str]:
        """The grants of a joining participant; raises TokenError if it may not join."""
        if token is None:
            if policy_requires or self.everywhere:
                raise TokenError("this room requires an access token")
            return GRANTS
        claims = verify_token(self.secret, token, room=room, now=time.time())
        if not claims.grants & {"publish", "subscribe"}:
            raise TokenError("the token grants neither publish nor subscribe")
        return claims.grants


def make_authenticator(settings: Settings) -> Authenticator:
    secret = settings.auth.secret or os.environ.get("SFU_TOKEN_SECRET")
    loopback = settings.http.host in ("127.0.0.1", "::1", "localhost")
    return Authenticator(
        secret=secret.encode() if secret else secrets.token_bytes(32),
        everywhere=settings.auth.require_token_off_loopback and not loopback,
    )


class SignalingSession:
    """One WebSocket: one participant at most."""

    def __init__(
        self, ws: web.WebSocketResponse, rooms: RoomManager, auth: Authenticator | None = None
    ) -> None:
        self.ws = ws
        self.rooms = rooms
        self.auth = auth or Authenticator(secrets.token_bytes(32))
        self.participant: Participant | None = None
        self.errors = 0

    async def send(self, message: m.ServerMessage) -> None:
        if not self.ws.closed:
            await self.ws.send_str(message.model_dump_json())

    async def error(self, code: str, reason: str, request_id: Any = None) -> None:
        self.errors += 1
        await self.send(m.Error(id=request_id, code=code, reason=reason))

    async def handle(self, text: str) -> None:
        try:
            message = m.client_message.validate_json(text)
        except ValidationError as exc:
            request_id = None
            try:
                raw = json.loads(text)
                if isinstance(raw, dict) and isinstance(raw.get("id"), (int, str)):
                    request_id = raw["id"]
            except (ValueError, RecursionError):  # RecursionError: deep nesting
                pass
            await self.error("bad_request", _describe(exc), request_id)
            return
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
                grants = self.auth.grants(message.token, message.room, policy.require_token)
            except TokenError as exc:
                await self.error("unauthorized", str(exc), message.id)
                return
            participant = Participant(
                message.name,
                self.send,
                self.rooms.start_bitrate_kbps,
                role=message.role,
                publisher_transport_cc=self.rooms.publisher_transport_cc,
                peer_timeout=self.rooms.peer_timeout,
                setup_timeout=self.rooms.setup_timeout,
                sdp_limits=self.rooms.sdp_limits,
            )
            participant.grants = grants
            try:
                await self.rooms.get_or_create(message.room).join(participant, message.id)
            except RoomError as exc:
                await self.error(exc.code, exc.reason, message.id)
                return
            self.participant = participant
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


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
    await ws.prepare(request)
    state = request.app[STATE_KEY]
    limits = state.settings.limits
    session = SignalingSession(ws, request.app[ROOMS_KEY], state.auth)
    state.sessions.add(session)
    bucket = TokenBucket(limits.messages_per_second, limits.message_burst)

    async def join_deadline() -> None:
        await asyncio.sleep(limits.join_timeout)
        if session.participant is None and not ws.closed:
            await session.error("join_timeout", f"no join within {limits.join_timeout:g} s")
            await ws.close(code=4008, message=b"join timeout")

    deadline = asyncio.ensure_future(join_deadline())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if bucket.allow(time.monotonic()):
                    await session.handle(msg.data)
                else:
                    await session.error("rate_limited", "too many messages; slow down")
            elif msg.type == WSMsgType.BINARY:
                await session.error("bad_request", "binary messages are not supported")
            elif msg.type == WSMsgType.ERROR:
                break
            if session.errors >= limits.max_errors:
                await ws.close(code=4029, message=b"too many bad messages")
                break
    finally:
        state.sessions.discard(session)
        deadline.cancel()
        await session.leave()
    return ws


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

    async def run() -> None:
        await asyncio.gather(*(tell(s) for s in sessions))
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


async def stats(request: web.Request) -> web.Response:
    rooms = request.app[ROOMS_KEY]
    out: dict[str, Any] = {"time": time.time(), "faults": dict(faults.counts), "rooms": {}}
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
                    "packets_sent": dt.packets_sent,
                    "bytes_sent": dt.bytes_sent,
                    "retransmitted": dt.retransmitted,
                    "retransmissions_skipped": dt.retransmissions_skipped,
                    "keyframe_requests": dt.keyframe_requests,
                    "spatial": dt.selector.current_spatial if dt.selector else None,
                    "temporal": dt.selector.current_temporal if dt.selector else None,
                    "paused": dt.selector.paused if dt.selector else False,
                    "target": None
                    if target is None
                    else [target.spatial, target.temporal, target.paused, target.reason],
                    "allocated": None
                    if allocated is None
                    else [allocated.spatial, allocated.temporal, allocated.paused],
                    "up_hold": sub.up_hold if sub is not None else None,
                    "level_bitrate": None if sub is None else sub.level_bitrate(now),
                    "rtt": dt.rtt,
                }
            )
    return entry


def reload_settings(app: web.Application) -> dict[str, Any]:
    """Re-read the settings file; a valid one applies its room policies to running rooms
    (sections that need a restart are named), an invalid one changes nothing."""
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
    applied = app[ROOMS_KEY].apply(new.rooms)
    state.settings = new.model_copy(update={name: getattr(old, name) for name in restart})
    logging.getLogger().setLevel(new.log.level)
    logger.info(
        "reloaded %s: rooms %s%s", path, applied, f"; needs a restart: {restart}" if restart else ""
    )
    return {"ok": True, "rooms": applied, "restart_required": restart}


def _is_local(request: web.Request) -> bool:
    return request.remote in ("127.0.0.1", "::1")


async def admin_reload(request: web.Request) -> web.Response:
    if not _is_local(request):
        return web.json_response({"ok": False, "errors": ["admin is loopback-only"]}, status=403)
    result = reload_settings(request.app)
    return web.json_response(result, status=200 if result["ok"] else 400)


def create_app(settings: Settings, config_path: str | None = None) -> web.Application:
    aiortc_plane.install(
        aiortc_plane.IceOptions(
            listen_addresses=list(settings.ice.listen_addresses),
            announced_address=settings.ice.announced_address,
            port_range=settings.ice.port_range,
        )
    )
    app = web.Application()
    app[STATE_KEY] = ServerState(settings, config_path, make_authenticator(settings))
    app[ROOMS_KEY] = RoomManager(
        settings.rooms, settings.media.start_bitrate_kbps, settings.media.publisher_transport_cc
    )
    app[ROOMS_KEY].max_rooms = settings.limits.max_rooms
    app[ROOMS_KEY].peer_timeout = settings.limits.peer_timeout
    app[ROOMS_KEY].setup_timeout = settings.limits.setup_timeout
    app[ROOMS_KEY].sdp_limits = settings.limits.sdp_limits()
    app.router.add_get("/", index)
    app.router.add_get("/client.js", client_js)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_post("/admin/reload", admin_reload)

    app.on_shutdown.append(drain)
    return app
