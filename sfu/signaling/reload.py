"""Settings applied to a running server: a reload (SIGHUP or ``/admin/reload``), and the
``limits`` wired into the rooms, connections and participants."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..config import ConfigError, Settings, load_settings
from ..events.logs import apply_level
from .access import InsecureSettings, make_authenticator, refuse_admin
from .state import ROOMS_KEY, STATE_KEY

logger = logging.getLogger(__name__)


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
        name
        for name in ("http", "ice", "media", "webhooks")
        if getattr(old, name) != getattr(new, name)
    ]
    # the http section stays the running one: the address decides what auth must be
    new = new.model_copy(update={name: getattr(old, name) for name in restart})
    log = new.log.model_copy(update=state.log_overrides)  # the command line's flags win
    if log.format != old.log.format:
        restart.append("log.format")
        log = log.model_copy(update={"format": old.log.format})
    new = new.model_copy(update={"log": log})
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
    app[ROOMS_KEY].recording = new.recording
    applied = app[ROOMS_KEY].apply(new.rooms)
    apply_limits(app, new)
    state.settings = new
    apply_level(new.log.level)
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
    rooms.max_peers_in_setup = limits.max_peers_in_setup
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
    refusal = await refuse_admin(request)
    if refusal is not None:
        return refusal
    result = reload_settings(request.app)
    return web.json_response(result, status=200 if result["ok"] else 400)
