"""The aiohttp edge: WebSocket signaling at ``/ws``, the demo client, health and stats.

The application is assembled here (:func:`create_app`); its parts are modules of their own:
:mod:`.state` (what the application holds), :mod:`.access` (credentials, addresses, origins,
the development Host check, admin), :mod:`.session` (one connection's messages),
:mod:`.websocket` (the ``/ws`` endpoint), :mod:`.stats`, :mod:`.metrics` (``/metrics``),
:mod:`.loop_lag` (the event loop's lateness, in ``/stats``), :mod:`.reload` (reload and
limits), :mod:`.draining` (SIGTERM with a drain timeout), :mod:`.shutdown` and
:mod:`.webhooks` (room events POSTed, signed; off by default).
The names the rest of the project uses are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources

from aiohttp import web

from ..adapters import aiortc_plane
from ..auth.access import Authenticator
from ..cluster.wire import REDIS_URL_ENV, WORKER_INDEX_ENV
from ..config import Settings
from ..metrics import Metrics
from ..protocol import IceServerInfo
from ..rooms.room import RoomManager
from . import http_media, recordings, whep, whip
from .access import InsecureSettings, development_host_check, make_authenticator
from .draining import DRAIN_KEY, Drain
from .draining import install as install_drain
from .ice_servers import for_client
from .loop_lag import LOOP_LAG_KEY, LoopLag, loop_lag_context
from .metrics import EdgeCollector, metrics
from .relay import ClusterWorker
from .reload import admin_reload, apply_limits, reload_settings
from .session import SignalingSession
from .shutdown import SHUTDOWN_TIMEOUT, drain
from .state import CLUSTER_KEY, METRICS_KEY, ROOMS_KEY, STATE_KEY, ServerState
from .stats import stats
from .webhooks import install_webhooks
from .websocket import websocket_handler

__all__ = [
    "METRICS_KEY",
    "ROOMS_KEY",
    "SHUTDOWN_TIMEOUT",
    "STATE_KEY",
    "InsecureSettings",
    "ServerState",
    "SignalingSession",
    "create_app",
    "reload_settings",
]


def _static(name: str, content_type: str) -> web.Response:
    body = resources.files("sfu.web").joinpath(name).read_bytes()
    return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.Response:
    return _static("index.html", "text/html")


async def player(request: web.Request) -> web.Response:
    """The recording player (``?room=ROOM&recording=ID``; docs/recording.md "Player")."""
    return _static("player.html", "text/html")


async def client_js(request: web.Request) -> web.Response:
    return _static("client.js", "application/javascript")


#: the demo page's ES modules (sfu/web/js/): served by name, from that folder only
_MODULE_NAME = re.compile(r"[a-z][a-z0-9-]*\.js")


def _web_modules() -> frozenset[str]:
    """The names of the files in sfu/web/js/ that may be served: read once, at start."""
    folder = resources.files("sfu.web").joinpath("js")
    if not folder.is_dir():
        return frozenset()
    return frozenset(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file() and _MODULE_NAME.fullmatch(entry.name)
    )


def web_modules_handler() -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /js/NAME``: one of the demo's modules, by a name on the fixed list (anything
    else, ``..`` and encoded slashes included, is 404)."""
    allowed = _web_modules()

    async def web_module(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in allowed:
            raise web.HTTPNotFound()
        return _static(f"js/{name}", "text/javascript")

    return web_module


async def healthz(request: web.Request) -> web.Response:
    if request.app[DRAIN_KEY].draining:  # a load balancer sends no new client here
        return web.json_response({"status": "draining"}, status=503)
    return web.json_response({"status": "ok"})


def create_app(
    settings: Settings, config_path: str | None = None, environ: Mapping[str, str] | None = None
) -> web.Application:
    """The application; raises ConfigError (a bad token or webhook secret) or
    InsecureSettings (no secret beyond loopback)."""
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
        settings.rooms,
        settings.media.start_bitrate_kbps,
        settings.media.publisher_transport_cc,
        metrics=Metrics(),
    )
    app[METRICS_KEY] = app[ROOMS_KEY].metrics
    # STUN/TURN for the clients (joined.ice_servers); the server's own pcs stay host-only
    app[ROOMS_KEY].ice_servers = [
        IceServerInfo.model_validate(server) for server in for_client(settings.ice.servers)
    ]
    app[LOOP_LAG_KEY] = LoopLag()
    edge = EdgeCollector(app[STATE_KEY], app[LOOP_LAG_KEY])
    app[METRICS_KEY].registry.register(edge)
    apply_limits(app, settings)
    app.router.add_get("/", index)
    app.router.add_get("/player", player)
    app.router.add_get("/client.js", client_js)
    app.router.add_get("/js/{name}", web_modules_handler())
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/reload", admin_reload)
    http_media.install(app)
    whip.install(app)
    whep.install(app)
    recordings.install(app)
    app[ROOMS_KEY].recording = settings.recording

    app.cleanup_ctx.append(loop_lag_context)
    app[DRAIN_KEY] = Drain(app)
    app.on_startup.append(install_drain)
    app.on_shutdown.append(drain)
    cluster = cluster_worker(
        settings, app[ROOMS_KEY], auth, os.environ if environ is None else environ
    )
    if cluster is not None:
        app[CLUSTER_KEY] = cluster
        app.cleanup_ctx.append(_cluster_context)
        # node:index, without the pid: one series per worker across restarts
        app[METRICS_KEY].set_worker(cluster.worker_id.rsplit(":", 1)[0], cluster.node)
    # after the cluster's: stopped before it at cleanup, with the rooms' last events queued
    edge.webhooks = install_webhooks(
        app, settings, app[ROOMS_KEY], cluster.worker_id if cluster else None
    )
    return app


def cluster_worker(
    settings: Settings, rooms: RoomManager, auth: Authenticator, environ: Mapping[str, str]
) -> ClusterWorker | None:
    """This process's part in a cluster, if it is in one (a Redis to coordinate through)."""
    url = environ.get(REDIS_URL_ENV) or settings.cluster.redis_url
    if not url:
        return None
    node = settings.cluster.node or socket.gethostname()
    index = environ.get(WORKER_INDEX_ENV, "0")
    # the pid in the name: a restarted worker is another worker (its predecessor's
    # connections are not its own)
    worker_id = f"{node}:{index}:{os.getpid()}"
    worker = ClusterWorker(
        settings.cluster,
        worker_id,
        node,
        rooms,
        url,
        auth,
        settings.limits.send_queue,
        relay_address=settings.cluster.relay_address or settings.ice.listen_addresses[0],
    )

    def released(room: str) -> None:
        asyncio.ensure_future(worker.release(room))

    rooms.on_room_removed = released
    return worker


async def _cluster_context(app: web.Application) -> AsyncIterator[None]:
    cluster = app[CLUSTER_KEY]
    rooms = app[ROOMS_KEY]

    def forwarded() -> int:
        """RTP packets forwarded so far to this worker's subscribers (its load)."""
        return sum(
            downtrack.packets_sent
            for room in list(rooms.rooms.values())
            for participant in list(room.participants.values())
            if participant.subscriber is not None
            for downtrack in list(participant.subscriber.downtracks.values())
        )

    await cluster.start(forwarded)
    yield
    with contextlib.suppress(Exception):
        await cluster.stop()
