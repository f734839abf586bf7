"""Recordings over HTTP (docs/recording.md "Serving"): the manifest and segment files of
each recording, live (the manifest grows while the room records) and after the fact; and
the operator's start and stop.

    GET    /recordings/ROOM/                    the room's recordings (JSON)
    GET    /recordings/ROOM/ID/manifest.json    the manifest
    GET    /recordings/ROOM/ID/FILE             a segment file (byte ranges)
    POST   /admin/rooms/ROOM/recording          start recording the room (admin)
    DELETE /admin/rooms/ROOM/recording          stop it (admin)

Every request costs the client address 1 of its request budget (``limits``, as WHIP/WHEP
do).  Reading needs a token with the ``recordings`` grant for the room (``Authorization:
Bearer``, or ``?token=``; none in development mode), or an admin credential.  Caching
follows HLS practice: a segment file never changes once it exists (``immutable``, a year);
a live manifest is re-fetched (``no-cache``), a finished one is final too.  ``private``
when a token was needed, so that a shared cache does not hand it to anyone; ``public``
otherwise.  Files are served by aiohttp's FileResponse: ETag, Last-Modified, conditional
requests and byte ranges.  Names are checked against fixed patterns and resolved inside the
recordings folder; anything else is 404.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from aiohttp import web

from .. import protocol as m
from ..auth.tokens import TokenError
from ..recording.writer import MANIFEST
from .access import is_admin, refuse_admin
from .http_media import admit
from .state import ROOMS_KEY, STATE_KEY

_ROOM = re.compile(m.ROOM_PATTERN)
_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
_FILE = re.compile(r"[A-Za-z0-9_-]{1,80}\.sls")
#: a segment file never changes: cached for a year
IMMUTABLE = "max-age=31536000, immutable"


def _folder(request: web.Request) -> Path:
    directory = request.app[STATE_KEY].settings.recording.dir
    if directory is None:
        raise web.HTTPNotFound(text="recording is off on this server (recording.dir)")
    return Path(directory)


def _token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.query.get("token") or None


def _check(request: web.Request, room: str) -> str:
    """Who may read: ``public`` (no token needed) or ``private``; raises 429 (the client
    address's request budget, shared with WHIP/WHEP and the WebSocket), 401 or 404."""
    refused = admit(request)
    if refused is not None:
        raise web.HTTPTooManyRequests(text=refused.text, headers={"Retry-After": "1"})
    if not _ROOM.fullmatch(room):
        raise web.HTTPNotFound()
    state = request.app[STATE_KEY]
    if is_admin(request):
        return "private"
    token = _token(request)
    try:
        state.auth.recordings(token, room, time.time())
    except TokenError as exc:
        state.refused["recordings"] += 1
        raise web.HTTPUnauthorized(
            text=f"unauthorized: {exc}", headers={"WWW-Authenticate": 'Bearer realm="sfu"'}
        ) from None
    return "private" if token is not None or not state.auth.development else "public"


async def list_recordings(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    scope = _check(request, room)
    base = _folder(request) / room
    items = []
    if base.is_dir():
        for folder in sorted(base.iterdir()):
            manifest = folder / MANIFEST
            if not _ID.fullmatch(folder.name) or not manifest.is_file():
                continue
            try:
                data = json.loads(manifest.read_bytes())
            except (OSError, ValueError):
                continue
            items.append(
                {
                    "id": folder.name,
                    "live": not data.get("endlist", False),
                    "started": _iso(folder.name),
                    "modified": _iso_time(manifest.stat().st_mtime),
                }
            )
    return web.json_response(
        {"room": room, "recordings": items}, headers={"Cache-Control": f"{scope}, no-cache"}
    )


async def recording_file(request: web.Request) -> web.StreamResponse:
    room, ident, name = (request.match_info[k] for k in ("room", "id", "name"))
    scope = _check(request, room)
    if not _ID.fullmatch(ident) or not (name == MANIFEST or _FILE.fullmatch(name)):
        raise web.HTTPNotFound()
    base = _folder(request).resolve()
    path = (base / room / ident / name).resolve()
    if base not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    if name == MANIFEST:
        live = not json.loads(path.read_bytes()).get("endlist", False)
        cache = f"{scope}, no-cache" if live else f"{scope}, max-age=60"
        return web.FileResponse(
            path, headers={"Cache-Control": cache, "Content-Type": "application/json"}
        )
    return web.FileResponse(
        path,
        headers={
            "Cache-Control": f"{scope}, {IMMUTABLE}",
            "Content-Type": "application/octet-stream",
        },
    )


async def start_recording(request: web.Request) -> web.Response:
    refused = await refuse_admin(request)
    if refused is not None:
        return refused
    room_name = request.match_info["room"]
    settings = request.app[STATE_KEY].settings.recording
    if settings.dir is None:
        return web.json_response(
            {"ok": False, "errors": ["recording is off: set recording.dir"]}, status=409
        )
    room = request.app[ROOMS_KEY].rooms.get(room_name)
    if room is None:
        return web.json_response({"ok": False, "errors": ["no such room here"]}, status=404)
    recording = room.start_recording(settings)
    return web.json_response({"ok": True, "recording": recording.id})


async def stop_recording(request: web.Request) -> web.Response:
    refused = await refuse_admin(request)
    if refused is not None:
        return refused
    room = request.app[ROOMS_KEY].rooms.get(request.match_info["room"])
    if room is None or room.recording is None:
        return web.json_response({"ok": False, "errors": ["not recording"]}, status=404)
    ident = room.recording.id
    await room.stop_recording()
    return web.json_response({"ok": True, "recording": ident})


def install(app: web.Application) -> None:
    app.router.add_get("/recordings/{room}/", list_recordings)
    app.router.add_get("/recordings/{room}/{id}/{name}", recording_file)
    app.router.add_post("/admin/rooms/{room}/recording", start_recording)
    app.router.add_delete("/admin/rooms/{room}/recording", stop_recording)


def _iso(ident: str) -> str:
    stamp = ident.split("-", 1)[0]
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"


def _iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
