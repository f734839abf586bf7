"""What workers keep in Redis and send each other: key names, the worker record, the
envelopes of relayed signaling (pydantic, validated once when read)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: what ``sfu serve --workers N`` tells each worker: its index, the cluster's Redis, and the
#: key development mode signs its admin token with (hex; the same on every worker)
WORKER_INDEX_ENV = "SFU_WORKER_INDEX"
REDIS_URL_ENV = "SFU_CLUSTER_REDIS_URL"
DEVELOPMENT_KEY_ENV = "SFU_DEVELOPMENT_KEY"

#: prefix of every key and channel (one Redis may serve several clusters: a prefix each)
PREFIX = "sfu"
#: a signaling message relayed between workers is at most this long (the WebSocket's bound)
MAX_TEXT = 128 * 1024


def worker_key(worker: str) -> str:
    """The worker's record (a :class:`WorkerInfo`), expiring unless its heartbeat renews it."""
    return f"{PREFIX}:worker:{worker}"


def tombstone_key(worker: str) -> str:
    """Set by the supervisor when it saw the worker exit: gone for sure, not just late."""
    return f"{PREFIX}:dead:{worker}"


def worker_pattern() -> str:
    return f"{PREFIX}:worker:*"


def room_key(room: str) -> str:
    """The worker hosting ``room`` (claimed atomically, renewed by its heartbeat)."""
    return f"{PREFIX}:room:{room}"


def inbox(worker: str) -> str:
    """The pub/sub channel a worker reads envelopes from."""
    return f"{PREFIX}:inbox:{worker}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerInfo(_Strict):
    """One worker as the cluster sees it: where it is and how loaded."""

    worker: str = Field(min_length=1, max_length=128)
    node: str = Field(min_length=1, max_length=64)
    pid: int
    rooms: int = Field(ge=0)
    participants: int = Field(ge=0)
    #: RTP packets/s it forwarded over the last heartbeat interval
    forwarded_per_second: float = Field(ge=0)
    #: share of one core its process used over the last heartbeat interval
    cpu: float = Field(ge=0)
    #: it takes no new rooms (it is draining)
    draining: bool = False


#: edge -> host: ``open`` (the join, its ``text``), ``message``, ``closed`` (the WebSocket
#: ended); host -> edge: ``message``, ``close`` (close the WebSocket with ``code``,
#: ``reason``), ``left`` (the participant is out of the room, the WebSocket stays), ``moved``
#: (this worker does not host the room: ``reason`` names the one that does)
EnvelopeKind = Literal["open", "message", "closed", "close", "left", "moved"]


class Envelope(_Strict):
    kind: EnvelopeKind
    #: the connection, named by its edge worker
    session: str = Field(min_length=1, max_length=64)
    #: the worker holding the client's WebSocket
    edge: str = Field(min_length=1, max_length=128)
    #: the worker hosting the room
    host: str = Field(min_length=1, max_length=128)
    text: str | None = Field(None, max_length=MAX_TEXT)
    code: int | None = None
    reason: str | None = Field(None, max_length=1024)
    #: the client's address (for logs and per-address limits at the host)
    address: str | None = Field(None, max_length=256)
