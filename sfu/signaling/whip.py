"""WHIP ingest (RFC 9725): ``POST /whip/ROOM`` with an SDP offer publishes into ROOM.

The publisher is a participant of the room like any other (named by its token's identity,
``whip`` without one): its scalable stream is forwarded with layer selection to every
subscriber.  The session resource (``Location``) takes PATCH (trickle ICE, ICE restarts)
and DELETE (see :mod:`.http_media`).  Statuses: 201 with the answer; 400 a bad offer; 401
no valid token where one is needed; 403 a token without the publish grant; 413 an offer
over ``limits.max_sdp_bytes``; 415 not ``application/sdp``; 429 too many requests or
sessions from one address; 503 (with Retry-After) a full room or server.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..rooms.room import RoomError
from . import http_media as hm
from .state import ROOMS_KEY

logger = logging.getLogger(__name__)


async def whip_post(request: web.Request) -> web.Response:
    refused = hm.admit(request)
    if refused is not None:
        return refused
    room_name = request.match_info["room"]
    if not hm.valid_room(room_name):
        return hm.reply(request, 404, "no such room name: 1-64 of A-Z a-z 0-9 _ . -")
    rooms = request.app[ROOMS_KEY]
    access = hm.authorize(request, room_name, "publish")
    if isinstance(access, web.Response):
        return access
    sdp = await hm.read_sdp(request, rooms.sdp_limits.max_bytes)
    if isinstance(sdp, web.Response):
        return sdp
    participant = hm.new_participant(rooms, access.identity or "whip", access, "publish")
    refused = await hm.enter_room(request, room_name)
    if refused is not None:
        return refused
    try:
        rooms.check_setup_room()
        room = await rooms.join(room_name, participant)
        room.check_publish(participant, None)
    except RoomError as exc:
        if participant.room is not None:
            await participant.room.leave(participant, "refused")
        await hm.leave_room(request.app, room_name)
        return hm.room_error(request, exc)
    session = hm.register(request, "whip", room_name, participant)
    if isinstance(session, web.Response):
        await room.leave(participant, "refused")
        await hm.leave_room(request.app, room_name)
        return session
    try:
        answer = await participant.publisher_peer().answer(sdp, list(participant.policy.codecs))
    except Exception as exc:
        await hm.end(request, session)
        return hm.reply(request, 400, f"cannot answer the offer: {exc}")
    logger.info(
        "WHIP session %s: %s publishes in room %r", session.id, participant.context, room_name
    )
    return hm.created(request, session, answer)


def install(app: web.Application) -> None:
    patch, delete = hm.resource_handlers("whip")
    app.router.add_post("/whip/{room}", whip_post)
    app.router.add_route("OPTIONS", "/whip/{room}", hm.options)
    app.router.add_patch("/whip/{room}/{id}", patch)  # type: ignore[arg-type]
    app.router.add_delete("/whip/{room}/{id}", delete)  # type: ignore[arg-type]
    app.router.add_route("OPTIONS", "/whip/{room}/{id}", hm.options)
