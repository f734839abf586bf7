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
    #: where its media link (cascading) takes datagrams, and the key of what it sends (hex)
    relay_host: str | None = Field(None, max_length=64)
    relay_port: int | None = Field(None, ge=1, le=65535)
    relay_key: str | None = Field(None, pattern=r"^[0-9a-f]{60}$")


#: edge -> host: ``open`` (the join, its ``text``), ``message``, ``closed`` (the WebSocket
#: ended); host -> edge: ``message``, ``close`` (close the WebSocket with ``code``,
#: ``reason``), ``left`` (the participant is out of the room, the WebSocket stays), ``moved``
#: (this worker does not host the room: ``reason`` names the one that does); between the
#: workers holding parts of a cascaded room: ``room`` (``text``: a :class:`RoomEvent`)
EnvelopeKind = Literal["open", "message", "closed", "close", "left", "moved", "room"]


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


def members_key(room: str) -> str:
    """The workers holding participants of ``room`` (a cascaded room has several): a hash,
    worker -> its participants there."""
    return f"{PREFIX}:members:{room}"


class TrackDescription(_Strict):
    """A published track, as another worker needs it to receive it over the media link."""

    track_id: str = Field(min_length=1, max_length=128)
    kind: Literal["audio", "video"]
    source_type: str = Field(max_length=32)
    mime_type: str = Field(max_length=64)
    clock_rate: int = Field(gt=0)
    payload_type: int = Field(ge=0, le=127)
    ssrc: int = Field(ge=0, lt=1 << 32)
    rtx_payload_type: int | None = Field(None, ge=0, le=127)
    rtx_ssrc: int | None = Field(None, ge=0, lt=1 << 32)
    extensions: dict[str, int] = Field(default_factory=dict, max_length=32)
    parameters: dict[str, str | int | None] = Field(default_factory=dict, max_length=32)
    #: its publisher muted it (nothing of it is forwarded)
    muted: bool = False


class MemberInfo(_Strict):
    """A participant of a cascaded room, on the worker that holds its connections."""

    participant_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    tracks: list[TrackDescription] = Field(default_factory=list, max_length=64)


#: ``hello`` (``worker`` holds participants of the room now: tell it yours, ``state``),
#: ``joined``/``left`` (a participant there), ``published`` (a track there), ``want``/
#: ``unwant`` (send me that track / stop), ``muted`` (a track there muted or unmuted:
#: ``track``), ``unpublished`` (a track there stopped), ``goodbye`` (no participant there
#: any more)
RoomEventKind = Literal[
    "hello",
    "state",
    "joined",
    "left",
    "published",
    "unpublished",
    "want",
    "unwant",
    "muted",
    "goodbye",
]


class RoomEvent(_Strict):
    kind: RoomEventKind
    room: str = Field(min_length=1, max_length=64)
    worker: str = Field(min_length=1, max_length=128)
    participants: list[MemberInfo] = Field(default_factory=list, max_length=10_000)
    participant: MemberInfo | None = None
    participant_id: str | None = Field(None, max_length=64)
    track: TrackDescription | None = None
    track_id: str | None = Field(None, max_length=128)
