"""WHEP playback (draft-ietf-wish-whep): ``POST /whep/ROOM`` with an SDP offer plays ROOM.

The viewer's offer has an audio and a video receive-only m-line; they play one publisher:
``?participant=NAME`` (a participant id, identity or name) follows that one, else the one
that published last, switched when it leaves.  The viewer gets layer selection as any
subscriber does: by its bandwidth estimate (transport-wide feedback) automatically, and on
request through the WHEP layer extension (``Link: <...>;
rel="urn:ietf:params:whep:ext:core:layer"``: POST a JSON layer choice, DELETE it for
automatic again) or, at creation, query parameters ``spatial``, ``temporal`` (a pinned
layer) and ``max_width``, ``max_height`` (the size it renders at).  See docs/whip-whep.md.
"""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..adapters.peers.viewer import ViewerPeer
from ..rooms.participant import Participant
from . import http_media as hm
from .state import ROOMS_KEY

logger = logging.getLogger(__name__)

LAYER_EXTENSION = "urn:ietf:params:whep:ext:core:layer"


class LayerChoice(BaseModel):
    """The WHEP layer extension's request body (field names as the draft gives them)."""

    model_config = ConfigDict(extra="ignore")

    mediaId: str | None = Field(None, max_length=64)  # noqa: N815 - the wire names
    encodingId: str | None = Field(None, max_length=64)  # noqa: N815
    spatialLayerId: int | None = Field(None, ge=0, le=3)  # noqa: N815
    temporalLayerId: int | None = Field(None, ge=0, le=3)  # noqa: N815
    maxSpatialLayerId: int | None = Field(None, ge=0, le=3)  # noqa: N815
    maxTemporalLayerId: int | None = Field(None, ge=0, le=3)  # noqa: N815
    maxWidth: int | None = Field(None, ge=1, le=16384)  # noqa: N815
    maxHeight: int | None = Field(None, ge=1, le=16384)  # noqa: N815

    def pin(self) -> tuple[int, int] | None:
        spatial = self.spatialLayerId if self.spatialLayerId is not None else self.maxSpatialLayerId
        temporal = (
            self.temporalLayerId if self.temporalLayerId is not None else self.maxTemporalLayerId
        )
        if spatial is None and temporal is None:
            return None
        return (3 if spatial is None else spatial, 3 if temporal is None else temporal)

    def max_size(self) -> tuple[int, int] | None:
        if self.maxWidth is None and self.maxHeight is None:
            return None
        return (self.maxWidth or 16384, self.maxHeight or 16384)


def _query_choice(request: web.Request) -> LayerChoice | web.Response:
    query = request.query
    names = {
        "spatial": "spatialLayerId",
        "temporal": "temporalLayerId",
        "max_width": "maxWidth",
        "max_height": "maxHeight",
    }
    raw = {wire: query[name] for name, wire in names.items() if name in query}
    try:
        return LayerChoice.model_validate(raw)
    except ValidationError as exc:
        return hm.reply(request, 400, f"bad layer parameters: {exc.errors()[0]['msg']}")


def _follower(participant: Participant, named: str | None) -> object:
    if named is None:
        return None

    def follows(publisher_id: str) -> bool:
        room = participant.room
        publisher = room.participants.get(publisher_id) if room is not None else None
        return publisher is not None and named in (
            publisher.id,
            publisher.identity,
            publisher.name,
        )

    return follows


async def whep_post(request: web.Request) -> web.Response:
    offer = await hm.receive_offer(request, "subscribe")
    if isinstance(offer, web.Response):
        return offer
    choice = _query_choice(request)
    if isinstance(choice, web.Response):
        return choice
    named = request.query.get("participant")
    if named is not None and not 1 <= len(named) <= 64:
        return hm.reply(request, 400, "participant: 1-64 characters")
    rooms = request.app[ROOMS_KEY]
    participant = hm.new_participant(
        rooms, offer.access.identity or "whep", offer.access, "subscribe"
    )
    follows = _follower(participant, named)
    viewer = ViewerPeer(participant.settings, participant.context, follows)  # type: ignore[arg-type]
    viewer.pin, viewer.max_size = choice.pin(), choice.max_size()
    participant.use_subscriber(viewer)
    session = await hm.join_session(request, "whep", offer.room, participant)
    if isinstance(session, web.Response):
        return session
    try:
        answer = await viewer.answer_offer(offer.sdp, list(participant.policy.codecs))
    except Exception as exc:
        await hm.end(request, session)
        return hm.reply(request, 400, f"cannot answer the offer: {exc}")
    logger.info("WHEP session %s: %s plays room %r", session.id, participant.context, offer.room)
    layer = f'<{session.path}/layer>; rel="{LAYER_EXTENSION}"'
    return hm.created(request, session, answer, [layer])


async def _layer(request: web.Request, choice: LayerChoice | None) -> web.Response:
    found = hm.admit(request) or hm.lookup(request, "whep")
    if isinstance(found, web.Response):
        return found
    viewer = found.participant.subscriber
    if not isinstance(viewer, ViewerPeer):
        return hm.reply(request, 404, "the session has no connection any more")
    pin = choice.pin() if choice is not None else None
    size = choice.max_size() if choice is not None else None
    viewer.select_layer(pin, size, time.monotonic())
    return hm.reply(request, 204, "")


async def layer_post(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return hm.reply(request, 415, "a layer choice is application/json")
    body = await request.content.read(4097)
    if len(body) > 4096:
        return hm.reply(request, 413, "a layer choice is at most 4096 bytes")
    try:
        choice = LayerChoice.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        return hm.reply(request, 400, f"bad layer choice: {exc}")
    return await _layer(request, choice)


async def layer_delete(request: web.Request) -> web.Response:
    return await _layer(request, None)


def install(app: web.Application) -> None:
    patch, delete = hm.resource_handlers("whep")
    app.router.add_post("/whep/{room}", whep_post)
    app.router.add_route("OPTIONS", "/whep/{room}", hm.options)
    app.router.add_patch("/whep/{room}/{id}", patch)  # type: ignore[arg-type]
    app.router.add_delete("/whep/{room}/{id}", delete)  # type: ignore[arg-type]
    app.router.add_route("OPTIONS", "/whep/{room}/{id}", hm.options)
    app.router.add_post("/whep/{room}/{id}/layer", layer_post)
    app.router.add_delete("/whep/{room}/{id}/layer", layer_delete)
    app.router.add_route("OPTIONS", "/whep/{room}/{id}/layer", hm.options)
