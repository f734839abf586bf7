"""What the aiohttp application holds: the rooms, and the server state that changes while it
runs (settings, credentials, open connections, refusals)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from ..auth.access import Authenticator
from ..config import Settings
from ..metrics import Metrics
from ..rooms.room import RoomManager
from .limits import AddressLimits
from .relay import ClusterWorker
from .session import SignalingSession

ROOMS_KEY = web.AppKey("rooms", RoomManager)
#: the Prometheus metrics (``/metrics``): the room manager's own (``RoomManager.metrics``)
METRICS_KEY = web.AppKey("metrics", Metrics)
#: this worker's part in a cluster (absent: a single process, no Redis)
CLUSTER_KEY = web.AppKey("cluster", ClusterWorker)


@dataclass
class ServerState:
    """What changes while the server runs (aiohttp apps are frozen once started)."""

    settings: Settings
    config_path: str | None
    auth: Authenticator
    #: the open WebSocket connections
    sessions: set[SignalingSession] = field(default_factory=set)
    addresses: AddressLimits = field(default_factory=lambda: AddressLimits(100, 200, 1000))
    #: refusals at the edge, by reason (for /stats)
    refused: Counter[str] = field(default_factory=Counter)
    #: ``log`` settings given on the command line (``--log-level``): a reload keeps them
    log_overrides: dict[str, str] = field(default_factory=dict)


STATE_KEY = web.AppKey("state", ServerState)
