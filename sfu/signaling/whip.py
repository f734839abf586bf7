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

from ..rooms.participant import Participant
from ..rooms.room import Room
from . import http_media as hm
from .state import ROOMS_KEY

logger = logging.getLogger(__name__)


async def whip_post(request: web.Request) -> web.Response:
    offer = await hm.receive_offer(request, "publish")
    if isinstance(offer, web.Response):
        return offer
    rooms = request.app[ROOMS_KEY]
    participant = hm.new_participant(
        rooms, offer.access.identity or "whip", offer.access, "publish"
    )

    def may_publish(room: Room, participant: Participant) -> None:
        room.check_publish(participant, None)

    session = await hm.join_session(request, "whip", offer.room, participant, may_publish)
    if isinstance(session, web.Response):
        return session
    try:
        answer = await participant.publisher_peer().answer(
            offer.sdp, list(participant.policy.codecs)
        )
    except Exception as exc:
        await hm.end(request, session)
        return hm.reply(request, 400, f"cannot answer the offer: {exc}")
    logger.info(
        "WHIP session %s: %s publishes in room %r", session.id, participant.context, offer.room
    )
    return hm.created(request, session, answer)


def install(app: web.Application) -> None:
    patch, delete = hm.resource_handlers("whip")
    app.router.add_post("/whip/{room}", whip_post)
    app.router.add_route("OPTIONS", "/whip/{room}", hm.options)
    app.router.add_patch("/whip/{room}/{id}", patch)  # type: ignore[arg-type]
    app.router.add_delete("/whip/{room}/{id}", delete)  # type: ignore[arg-type]
    app.router.add_route("OPTIONS", "/whip/{room}/{id}", hm.options)
