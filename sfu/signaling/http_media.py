"""What WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) sessions share: the session
resources (``/whip/ROOM/ID``, ``/whep/ROOM/ID``), their bearer tokens, CORS, the PATCH
requests (trickle ICE and ICE restarts, RFC 9725 section 4.3) and DELETE.

A session is a participant of its room with no WebSocket: what the room would tell it is
dropped; it leaves on DELETE, when its peer connection fails or times out, or when it is
not set up within ``limits.setup_timeout``.  Each open session counts as a connection of
its client's address (``limits.max_connections_per_address``), and every request costs
from that address's budget, as WebSocket messages do.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from .. import protocol as m
from ..adapters import aiortc_plane as plane
from ..auth.access import Access
from ..auth.tokens import TokenError
from ..rooms.participant import Participant
from ..rooms.room import Room, RoomError, RoomManager
from ..sdp.fragment import FragmentError, parse_fragment, restart_answer
from .access import origin_allowed, request_address
from .ice_servers import link_headers
from .state import CLUSTER_KEY, ROOMS_KEY, STATE_KEY, ServerState

logger = logging.getLogger(__name__)

SDP = "application/sdp"
FRAGMENT = "application/trickle-ice-sdpfrag"
#: what each request costs from the client address's budget (a WebSocket message costs 1)
COSTS = {"POST": 10, "PATCH": 2, "DELETE": 1, "OPTIONS": 1}
#: RoomError codes -> HTTP status
STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "room_full": 503,
    "too_many_rooms": 503,
    "draining": 503,
    "busy": 503,
    "not_allowed": 400,
    "bad_sdp": 400,
}
_ROOM = re.compile(m.ROOM_PATTERN)

Kind = Literal["whip", "whep"]


@dataclass
class MediaSession:
    """One WHIP or WHEP session: its resource and the participant behind it."""

    id: str
    kind: Kind
    room: str
    participant: Participant
    address: str
    #: the bearer token it was created with: its resource answers that token only
    token: str | None
    etag: str = field(default_factory=lambda: f'"{secrets.token_hex(8)}"')
    #: remote candidates trickled so far (bounded as an offer's are: each one is a
    #: destination for our connectivity checks)
    trickled: int = 0
    created: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        return f"/{self.kind}/{self.room}/{self.id}"


class MediaSessions:
    """The open sessions, by id."""

    def __init__(self) -> None:
        self.sessions: dict[str, MediaSession] = {}
        #: sessions by outcome, for /stats
        self.counts: dict[str, int] = {"created": 0, "deleted": 0, "ended": 0, "refused": 0}

    def __len__(self) -> int:
        return len(self.sessions)

    def add(self, session: MediaSession) -> None:
        self.sessions[session.id] = session
        self.counts["created"] += 1

    def get(self, session_id: str, kind: Kind, room: str) -> MediaSession | None:
        session = self.sessions.get(session_id)
        if session is None or session.kind != kind or session.room != room:
            return None
        return session

    def discard(self, session_id: str) -> MediaSession | None:
        return self.sessions.pop(session_id, None)


SESSIONS_KEY = web.AppKey("media_sessions", MediaSessions)


def install(app: web.Application) -> None:
    app[SESSIONS_KEY] = MediaSessions()


# -- HTTP details -------------------------------------------------------------------------


def cors(request: web.Request) -> dict[str, str]:
    """CORS for browser clients on other origins: the page's origin is echoed (a request
    from a foreign page must carry a bearer token to get anywhere: see ``authorize``)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch",
    }


def reply(
    request: web.Request, status: int, text: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An error (or empty) reply: a plain-text reason, CORS headers."""
    all_headers = {**cors(request), **(headers or {})}
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="sfu"')
    if status == 503:
        all_headers.setdefault("Retry-After", "5")
    body = text if not text or text.endswith("\n") else text + "\n"
    return web.Response(status=status, text=body or None, headers=all_headers)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        return None
    return token


def valid_room(room: str) -> bool:
    return _ROOM.match(room) is not None


async def options(request: web.Request) -> web.Response:
    """CORS preflight (and plain OPTIONS) of an endpoint or a session resource."""
    resource = "id" in request.match_info
    methods = "PATCH, DELETE, OPTIONS" if resource else "POST, OPTIONS"
    if request.path.startswith("/whep/") and resource:
        methods = "PATCH, DELETE, POST, OPTIONS"  # POST: the layer extension
    headers = {
        **cors(request),
        "Allow": methods,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
        "Access-Control-Max-Age": "600",
    }
    if resource:
        headers["Accept-Patch"] = FRAGMENT
    else:
        headers["Accept-Post"] = SDP
    return web.Response(status=204, headers=headers)


def admit(request: web.Request) -> web.Response | None:
    """The address's request budget; a refusal (429) when it is spent."""
    state = request.app[STATE_KEY]
    address = request_address(request)
    if not state.addresses.allow(address, time.monotonic(), COSTS.get(request.method, 1)):
        state.refused["rate_limited"] += 1
        return reply(request, 429, f"too many requests from {address}", {"Retry-After": "1"})
    return None


def authorize(request: web.Request, room: str, grant: str) -> Access | web.Response:
    """The rights of the request's bearer token in ``room`` (``grant``: publish or
    subscribe), or the refusal: 401 without a valid token where one is needed, 403 for a
    token without the grant or a tokenless request from a foreign page."""
    state = request.app[STATE_KEY]
    rooms = request.app[ROOMS_KEY]
    token = bearer_token(request)
    if token is None and not origin_allowed(request, state.settings.http.allowed_origins):
        state.refused["origin"] += 1
        return reply(request, 403, "a request from another origin needs a bearer token")
    _, policy = rooms.settings.policy_for(room)
    try:
        access = state.auth.bearer(
            token=token, room=room, policy_requires=policy.require_token, now=time.time()
        )
    except TokenError as exc:
        return reply(request, 401, f"unauthorized: {exc}")
    if grant not in access.grants:
        return reply(request, 403, f"the access token does not grant {grant}")
    return access


async def read_sdp(request: web.Request, limit: int) -> str | web.Response:
    """The request's SDP offer, or the refusal: 415 (not application/sdp), 413 (over
    ``limit`` bytes), 400 (not UTF-8, empty)."""
    if request.content_type != SDP:
        return reply(request, 415, f"the offer must be {SDP}", {"Accept-Post": SDP})
    if request.content_length is not None and request.content_length > limit:
        return reply(request, 413, f"the offer is over {limit} bytes (limits.max_sdp_bytes)")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        return reply(request, 413, f"the offer is over {limit} bytes (limits.max_sdp_bytes)")
    try:
        sdp = body.decode()
    except UnicodeDecodeError:
        return reply(request, 400, "the offer is not UTF-8")
    if not sdp.strip():
        return reply(request, 400, "the offer is empty")
    return sdp


async def enter_room(request: web.Request, room: str) -> web.Response | None:
    """In a cluster, the session's participant is hosted by the worker that accepted the
    request: the room is placed (claimed if new) and cascaded to this worker, as for a
    WebSocket participant that stays on its edge; 503 when the cluster cannot place it."""
    cluster = request.app.get(CLUSTER_KEY)
    if cluster is None:
        return None
    try:
        await cluster.place(room)
        await cluster.cascade.enter(room)
    except Exception as exc:  # redis-py's errors, a worker gone meanwhile
        logger.warning("cluster: cannot place room %r for an HTTP session: %s", room, exc)
        return reply(request, 503, f"the cluster cannot place the room now: {exc}")
    return None


async def leave_room(app: web.Application, room: str) -> None:
    """After a session's participant left (or never joined): the cascade lets the room go
    from this worker if nobody of it is left here."""
    cluster = app.get(CLUSTER_KEY)
    if cluster is not None:
        try:
            await cluster.cascade.leave_if_unused(room)
        except Exception:  # the cluster's own cleanup catches up at its next heartbeat
            logger.warning("cluster: cannot release room %r", room, exc_info=True)


async def _discard(message: m.ServerMessage) -> None:
    """What the room tells an HTTP session: it has no channel to hear it."""


def new_participant(rooms: RoomManager, name: str, access: Access, grant: str) -> Participant:
    participant = Participant(
        name,
        _discard,
        rooms.start_bitrate_kbps,
        role=access.role,
        publisher_transport_cc=rooms.publisher_transport_cc,
        peer_timeout=rooms.peer_timeout,
        setup_timeout=rooms.setup_timeout,
        sdp_limits=rooms.sdp_limits,
    )
    participant.identity = access.identity
    # the one thing this session does: a WHIP client never subscribes, a WHEP one never
    # publishes (and is never sent an offer it could not answer)
    participant.grants = frozenset({grant})
    return participant


@dataclass(frozen=True)
class Offer:
    """A POST to an endpoint that may go on: its room, rights and SDP offer."""

    room: str
    access: Access
    sdp: str


async def receive_offer(request: web.Request, grant: str) -> Offer | web.Response:
    """The checks of a POST to an endpoint, in order: the address's budget, the room name,
    the token (``grant``), the offer."""
    refused = admit(request)
    if refused is not None:
        return refused
    room = request.match_info["room"]
    if not valid_room(room):
        return reply(request, 404, "no such room name: 1-64 of A-Z a-z 0-9 _ . -")
    access = authorize(request, room, grant)
    if isinstance(access, web.Response):
        return access
    sdp = await read_sdp(request, request.app[ROOMS_KEY].sdp_limits.max_bytes)
    if isinstance(sdp, web.Response):
        return sdp
    return Offer(room, access, sdp)


async def join_session(
    request: web.Request,
    kind: Kind,
    room_name: str,
    participant: Participant,
    check: Callable[[Room, Participant], None] | None = None,
) -> MediaSession | web.Response:
    """``participant`` in its room (``check``: what the room must allow it) and its
    session's resource; the refusal, with nothing left behind, otherwise."""
    refused = await enter_room(request, room_name)
    if refused is not None:
        await participant.close()
        return refused
    rooms = request.app[ROOMS_KEY]
    try:
        rooms.check_setup_room()
        room = await rooms.join(room_name, participant)
        if check is not None:
            check(room, participant)
    except RoomError as exc:
        if participant.room is not None:
            await participant.room.leave(participant, "refused")
        else:
            await participant.close()
        await leave_room(request.app, room_name)
        return room_error(request, exc)
    session = register(request, kind, room_name, participant)
    if isinstance(session, web.Response):
        await room.leave(participant, "refused")
        await leave_room(request.app, room_name)
    return session


def room_error(request: web.Request, exc: RoomError) -> web.Response:
    return reply(request, STATUS.get(exc.code, 400), f"{exc.code}: {exc.reason}")


def created(
    request: web.Request, session: MediaSession, answer: str, extra_links: Sequence[str] = ()
) -> web.Response:
    """201 Created: the answer, the session's Location and ETag, the ICE servers."""
    state: ServerState = request.app[STATE_KEY]
    links = [*link_headers(state.settings.ice.servers), *extra_links]
    headers = {
        **cors(request),
        "Location": session.path,
        "ETag": session.etag,
        "Accept-Patch": FRAGMENT,
        "Content-Type": SDP,
    }
    response = web.Response(status=201, body=answer.encode(), headers=headers)
    for link in links:
        response.headers.add("Link", link)
    return response


def register(
    request: web.Request, kind: Kind, room: str, participant: Participant
) -> MediaSession | web.Response:
    """The new session's resource; 429 when its address has too many connections open."""
    state = request.app[STATE_KEY]
    sessions = request.app[SESSIONS_KEY]
    address = request_address(request)
    if not state.addresses.connect(address):
        state.refused["connections_per_address"] += 1
        return reply(
            request, 429, f"too many connections from {address} (max_connections_per_address)"
        )
    session = MediaSession(
        secrets.token_urlsafe(16), kind, room, participant, address, bearer_token(request)
    )
    sessions.add(session)

    def removed(_: Participant) -> None:
        if sessions.discard(session.id) is not None:
            sessions.counts["ended"] += 1
            state.addresses.disconnect(address)
            asyncio.ensure_future(leave_room(request.app, room))

    participant.on_removed = removed
    return session


def lookup(request: web.Request, kind: Kind) -> MediaSession | web.Response:
    """The session a resource request names, if the request carries its token."""
    sessions = request.app[SESSIONS_KEY]
    session = sessions.get(request.match_info["id"], kind, request.match_info["room"])
    if session is None:
        return reply(request, 404, "no such session")
    token = bearer_token(request)
    if session.token is not None and (
        token is None or not hmac.compare_digest(token.encode(), session.token.encode())
    ):
        return reply(request, 401, "unauthorized: the session's token is needed")
    if (
        session.token is None
        and token is None
        and not origin_allowed(request, request.app[STATE_KEY].settings.http.allowed_origins)
    ):
        return reply(request, 403, "a request from another origin needs a bearer token")
    return session


async def end(request: web.Request, session: MediaSession) -> None:
    sessions = request.app[SESSIONS_KEY]
    if sessions.discard(session.id) is not None:
        sessions.counts["deleted"] += 1
        request.app[STATE_KEY].addresses.disconnect(session.address)
    participant = session.participant
    participant.on_removed = None
    room = participant.room
    if room is not None:
        await room.leave(participant, "left")
    await leave_room(request.app, session.room)


def resource_handlers(kind: Kind) -> tuple[Callable[..., object], Callable[..., object]]:
    """The PATCH and DELETE handlers of ``kind``'s session resources."""

    async def delete(request: web.Request) -> web.Response:
        found = admit(request) or lookup(request, kind)
        if isinstance(found, web.Response):
            return found
        await end(request, found)
        return reply(request, 200, "")

    async def patch(request: web.Request) -> web.Response:
        found = admit(request) or lookup(request, kind)
        if isinstance(found, web.Response):
            return found
        return await patch_session(request, found)

    return patch, delete


async def patch_session(request: web.Request, session: MediaSession) -> web.Response:
    """Trickle ICE (If-Match: the session's ETag; 204) or an ICE restart (If-Match: *;
    200 with our new credentials and candidates, and a new ETag), RFC 9725 4.3."""
    if request.content_type != FRAGMENT:
        return reply(request, 415, f"a PATCH must be {FRAGMENT}", {"Accept-Patch": FRAGMENT})
    condition = request.headers.get("If-Match")
    if condition is None:
        return reply(request, 428, "If-Match is required: the session's ETag, or * to restart")
    restart = condition.strip() == "*"
    if not restart and condition.strip() != session.etag:
        return reply(request, 412, "the ETag does not match: the session restarted ICE since")
    body = await request.content.read(16 * 1024 + 1)
    try:
        fragment = parse_fragment(body.decode())
    except (FragmentError, UnicodeDecodeError) as exc:
        return reply(request, 400, f"bad fragment: {exc}")
    participant = session.participant
    peer = participant.publisher if session.kind == "whip" else participant.subscriber
    if peer is None or peer.closed:
        return reply(request, 404, "the session has no connection any more")
    limit = request.app[ROOMS_KEY].sdp_limits.max_candidates
    if restart:
        if len(fragment.candidates) > limit:
            return reply(request, 422, f"at most {limit} candidates (limits.max_candidates)")
        session.trickled = len(fragment.candidates)
        try:
            local = await plane.restart_from_fragment(peer.pc, peer.ice, fragment)
        except ValueError as exc:
            return reply(request, 422, f"cannot restart ICE: {exc}")
        session.etag = f'"{secrets.token_hex(8)}"'
        body_text = restart_answer(local.ufrag, local.pwd, local.mid, local.candidates)
        return web.Response(
            status=200,
            body=body_text.encode(),
            headers={**cors(request), "ETag": session.etag, "Content-Type": FRAGMENT},
        )
    if fragment.ufrag is not None and not peer.ice.restarting:
        ufrag = plane.remote_ufrag(peer.pc)
        if ufrag is not None and fragment.ufrag != ufrag:
            return reply(request, 422, "the fragment's ice-ufrag is not the session's")
    if session.trickled + len(fragment.candidates) > limit:
        return reply(
            request, 422, f"at most {limit} candidates per session (limits.max_candidates)"
        )
    session.trickled += len(fragment.candidates)
    try:
        await plane.add_candidates(peer.pc, fragment)
    except ValueError as exc:
        return reply(request, 400, str(exc))
    return reply(request, 204, "")
