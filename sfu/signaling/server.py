"""The aiohttp edge: WebSocket signaling at ``/ws``, the demo client, health and stats."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from ..adapters import aiortc_plane
from ..auth.tokens import GRANTS, TokenError, verify_token
from ..config import ConfigError, Settings, load_settings
from ..rooms.room import Participant, RoomError, RoomManager
from . import messages as m
from .limits import TokenBucket

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024

ROOMS_KEY = web.AppKey("rooms", RoomManager)


@dataclass
class ServerState:
    """What changes while the server runs (aiohttp apps are frozen once started)."""

    settings: Settings
    config_path: str | None
    auth: Authenticator


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
            logger.exception("signaling: %s failed", message.type)
            await self.error("internal_error", f"{message.type} failed: {exc}", message.id)

    async def dispatch(self, message: m.ClientMessage) -> None:
        if isinstance(message, m.Ping):
            await self.send(m.Pong(id=message.id))
        elif isinstance(message, m.Join):
            if self.participant is not None:
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
        deadline.cancel()
        await session.leave()
    return ws


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
    out: dict[str, Any] = {"time": time.time(), "rooms": {}}
    for name, room in rooms.rooms.items():
        participants = []
        for p in room.participants.values():
            entry: dict[str, Any] = {
                "participant_id": p.id,
                "name": p.name,
                "published": [],
                "subscribed": [],
            }
            for source in p.sources.values():
                entry["published"].append(
                    {
                        "track_id": source.track_id,
                        "kind": source.kind,
                        "codec": source.params.codec,
                        "packets_received": source.stats.packets_received,
                        "packets_lost": source.stats.packets_lost,
                        "keyframes_received": source.keyframes_received,
                        "keyframe_requests_sent": source.keyframes.sent,
                        "nacks_sent": source.nacks_sent,
                        "subscribers": len(source.downtracks),
                    }
                )
            if p.subscriber is not None:
                entry["downlink"] = p.subscriber.metrics()
                for track_id, dt in p.subscriber.downtracks.items():
                    entry["subscribed"].append(
                        {
                            "track_id": track_id,
                            "packets_sent": dt.packets_sent,
                            "bytes_sent": dt.bytes_sent,
                            "retransmitted": dt.retransmitted,
                            "keyframe_requests": dt.keyframe_requests,
                            "spatial": dt.selector.current_spatial if dt.selector else None,
                            "temporal": dt.selector.current_temporal if dt.selector else None,
                            "paused": dt.selector.paused if dt.selector else False,
                            "rtt": dt.rtt,
                        }
                    )
            participants.append(entry)
        out["rooms"][name] = {"policy": room.policy_name, "participants": participants}
    return web.json_response(out)


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
    app.router.add_get("/", index)
    app.router.add_get("/client.js", client_js)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_post("/admin/reload", admin_reload)

    async def on_shutdown(app: web.Application) -> None:
        await app[ROOMS_KEY].close()

    app.on_shutdown.append(on_shutdown)
    return app
