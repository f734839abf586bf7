"""Who may use the server: the token credentials a configuration allows, the client's
address, the origin of a page, the Host a development server answers, the admin credential."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from yarl import URL

from ..auth.access import Authenticator
from ..auth.keys import load_keys
from ..auth.tokens import TokenError
from ..cluster.wire import DEVELOPMENT_KEY_ENV
from ..config import ConfigError, Settings
from .limits import client_address
from .state import STATE_KEY

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


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
    shared = (environ if environ is not None else os.environ).get(DEVELOPMENT_KEY_ENV)
    development_key = None
    if shared:
        try:
            development_key = bytes.fromhex(shared)
        except ValueError:
            raise ConfigError([f"${DEVELOPMENT_KEY_ENV} is not hex"]) from None
    return Authenticator(keys, now=time.time(), development_key=development_key)


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


async def refuse_admin(request: web.Request) -> web.Response | None:
    """The reply that refuses an admin request, or None when it may go on."""
    state = request.app[STATE_KEY]
    if not origin_allowed(request, state.settings.http.allowed_origins):
        state.refused["origin"] += 1
        return web.json_response({"ok": False, "errors": ["origin not allowed"]}, status=403)
    if not is_admin(request):
        state.refused["admin"] += 1
        return web.json_response(
            {
                "ok": False,
                "errors": [
                    "needs an admin credential: a token with the admin grant "
                    "for every room (Authorization: Bearer ...)"
                ],
            },
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="sfu"'},
        )
    return None
