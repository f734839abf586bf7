"""The signaling protocol: JSON messages over one WebSocket, each a pydantic model.

Every message has a ``type``.  Requests from the client may carry an ``id``; the reply (or
the ``error``) to that request carries the same ``id``.  See ``docs/signaling.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from .sdp.limits import PROTOCOL_MAX_SDP

ROOM_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
#: the largest SDP a message may carry (publish offers have their own, lower, configurable
#: bound: ``limits.max_sdp_bytes``)
MAX_SDP = PROTOCOL_MAX_SDP


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Request(_Message):
    id: int | str | None = None


# -- client -> server ------------------------------------------------------------------


class Join(_Request):
    type: Literal["join"]
    room: str = Field(pattern=ROOM_PATTERN)
    name: str = Field(min_length=1, max_length=64)
    #: a role named by the room's policy (e.g. "presenter"), or none
    role: str | None = Field(None, max_length=32)
    #: a signed access token (`sfu token create`), required where the policy says so
    token: str | None = Field(None, max_length=4096)


class Publish(_Request):
    """An offer for the publish connection (first one, or a renegotiation)."""

    type: Literal["publish"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP)
    #: the scalabilityMode the client encodes with (checked against the room's policy)
    scalability_mode: str | None = Field(None, max_length=16)
    #: what each video m-line (by mid) carries, for bandwidth priorities (default: camera)
    sources: dict[str, Literal["camera", "screen"]] | None = Field(None, max_length=16)


class SubscribeAnswer(_Request):
    """The answer to the server's last ``subscribe_offer``."""

    type: Literal["subscribe_answer"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP)


class RestartIce(_Request):
    """Ask for an ICE restart of the subscribe connection: the server sends a
    ``subscribe_offer`` with new ICE credentials.  (The publish connection restarts with a
    ``publish`` offer that carries new credentials.)"""

    type: Literal["restart_ice"]


class Leave(_Request):
    type: Literal["leave"]


class Ping(_Request):
    type: Literal["ping"]


class Window(_Request):
    """The size (in device pixels) the client renders a remote video at; 0x0 when hidden."""

    type: Literal["window"]
    track_id: str = Field(max_length=128)
    width: int = Field(ge=0, le=16384)
    height: int = Field(ge=0, le=16384)


class SetLevel(_Request):
    """Pin a remote video to a layer (the client API's ``setLevel(trackId, spatial, temporal)``)."""

    type: Literal["set_level"]
    track_id: str = Field(max_length=128)
    spatial: int = Field(ge=0, le=3)
    temporal: int = Field(ge=0, le=3)


class Auto(_Request):
    """Back to automatic layer selection (the client API's ``auto(trackId)``)."""

    type: Literal["auto"]
    track_id: str = Field(max_length=128)


#: a counter's ceiling in reports (2**53: what a JavaScript number holds exactly)
_COUNT = 2**53


class TrackReport(_Message):
    """What the viewer measured of one subscribed video, in the names of the browser's
    ``getStats()`` ``inbound-rtp`` entry (snake_case), plus what only the page knows.  The
    counters are cumulative since the track started; every field but ``track_id`` and the
    two frame counters may be left out."""

    track_id: str = Field(max_length=128)
    frames_decoded: int = Field(ge=0, le=_COUNT)
    frames_dropped: int = Field(ge=0, le=_COUNT)
    frames_per_second: float | None = Field(None, ge=0, le=1000)
    frame_width: int | None = Field(None, ge=0, le=16384)
    frame_height: int | None = Field(None, ge=0, le=16384)
    freeze_count: int | None = Field(None, ge=0, le=_COUNT)
    #: seconds
    total_freezes_duration: float | None = Field(None, ge=0, le=1e9)
    #: seconds, summed over ``jitter_buffer_emitted_count`` frames
    jitter_buffer_delay: float | None = Field(None, ge=0, le=1e9)
    jitter_buffer_emitted_count: int | None = Field(None, ge=0, le=_COUNT)
    #: the size the page renders the video at (device pixels)
    element_width: int | None = Field(None, ge=0, le=16384)
    element_height: int | None = Field(None, ge=0, le=16384)
    #: seconds from joining the room to the first painted frame of this track (in the first
    #: report after it is known; the server counts the first one it gets)
    first_frame: float | None = Field(None, ge=0, le=3600)
    #: seconds from each ``level_changed`` (of another size) to the first painted frame of
    #: the new size, since the last report
    switch_paints: list[Annotated[float, Field(ge=0, le=60)]] = Field(
        default_factory=list, max_length=16
    )


class ReceiverReport(_Request):
    """The viewer's own quality figures, every 1-2 s (see ``docs/signaling.md``).  They
    feed the receiver-CPU fit (a viewer dropping frames gets lower layers) and the
    operators' figures; they never raise a level beyond what the other inputs allow."""

    type: Literal["receiver_report"]
    tracks: list[TrackReport] = Field(max_length=32)


class Mute(_Request):
    """Mute (or unmute) one of the client's own published tracks: the server stops
    forwarding it and tells the room (``track_muted``)."""

    type: Literal["mute"]
    track_id: str = Field(max_length=128)
    muted: bool


class GetStats(_Request):
    type: Literal["stats"]


class GetLevels(_Request):
    type: Literal["levels"]
    track_id: str = Field(max_length=128)


ClientMessage = Annotated[
    Join
    | Publish
    | SubscribeAnswer
    | RestartIce
    | Leave
    | Ping
    | Window
    | SetLevel
    | Auto
    | GetLevels
    | GetStats
    | ReceiverReport
    | Mute,
    Field(discriminator="type"),
]
client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


# -- server -> client ------------------------------------------------------------------


class ParticipantInfo(_Message):
    participant_id: str
    name: str


class TrackInfo(_Message):
    track_id: str
    participant_id: str
    kind: Literal["audio", "video"]
    codec: str
    muted: bool = False
    #: what a video shows, as its publisher said (``publish`` ``sources``): a camera, or a
    #: shared screen; an audio track is a microphone
    source: Literal["camera", "screen", "microphone"] = "camera"


class IceServerInfo(_Message):
    """A W3C ``RTCIceServer``: a STUN or TURN server for the client's peer connections
    (``ice.servers``); ``username`` and ``credential`` are left out, not null, when unset."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class Joined(_Message):
    type: Literal["joined"] = "joined"
    id: int | str | None = None
    room: str
    participant_id: str
    participants: list[ParticipantInfo]
    tracks: list[TrackInfo]
    #: STUN/TURN servers for ``new RTCPeerConnection({iceServers})`` (possibly none)
    ice_servers: list[IceServerInfo] = Field(default_factory=list)
    #: what this participant may do: its role (the token's, or the join's without tokens),
    #: what its token grants (``publish``, ``subscribe``), and whether the room's policy
    #: for that role lets it publish
    role: str | None = None
    grants: list[str] = Field(default_factory=list)
    can_publish: bool = True


class ParticipantJoined(_Message):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo


class ParticipantLeft(_Message):
    type: Literal["participant_left"] = "participant_left"
    participant_id: str


class TrackPublished(_Message):
    type: Literal["track_published"] = "track_published"
    track: TrackInfo


class TrackMuted(_Message):
    """A publisher muted (or unmuted) one of its tracks."""

    type: Literal["track_muted"] = "track_muted"
    track_id: str
    participant_id: str
    muted: bool


class PublishLayers(_Message):
    """Dynacast: encode this many spatial layers of the track (its bottom ones, at their
    resolutions: one fewer on top is half the width), 0: none at all, until told otherwise.
    Sent to the track's publisher when no subscriber needs its top layer(s), and again as
    soon as one does.  A client that cannot change its encoding may ignore it."""

    type: Literal["publish_layers"] = "publish_layers"
    track_id: str
    spatial_layers: int = Field(ge=0, le=3)


class SpeakerInfo(_Message):
    participant_id: str
    #: dBov of its recent speech: 0 (loudest) to -127 (silence)
    level: int = Field(ge=-127, le=0)


class ActiveSpeakers(_Message):
    """Who speaks in the room, from the audio levels of its publishers; sent to everyone
    when it changes (at most twice a second), and to who joins.  ``dominant``: the dominant
    speaker (sticky through pauses: until another takes over; null before anyone spoke, or
    once it left), whose video goes first when bandwidth is short.  ``speakers``: who speaks
    now, the dominant first when it does, then the others loudest first (empty: silence)."""

    type: Literal["active_speakers"] = "active_speakers"
    dominant: str | None
    speakers: list[SpeakerInfo] = Field(max_length=10)


class TrackUnpublished(_Message):
    type: Literal["track_unpublished"] = "track_unpublished"
    track_id: str
    participant_id: str


class PublishAnswer(_Message):
    type: Literal["publish_answer"] = "publish_answer"
    id: int | str | None = None
    sdp: str


class SubscribeOffer(_Message):
    type: Literal["subscribe_offer"] = "subscribe_offer"
    sdp: str


class Left(_Message):
    type: Literal["left"] = "left"
    id: int | str | None = None


class Pong(_Message):
    type: Literal["pong"] = "pong"
    id: int | str | None = None


class LevelInfo(_Message):
    spatial: int
    temporal: int
    width: int
    height: int
    fps: float
    bitrate: int


class Levels(_Message):
    type: Literal["levels"] = "levels"
    id: int | str | None = None
    track_id: str
    levels: list[LevelInfo]
    spatial: int
    temporal: int
    paused: bool


class LevelChanged(_Message):
    type: Literal["level_changed"] = "level_changed"
    track_id: str
    spatial: int
    temporal: int
    width: int
    height: int
    paused: bool
    reason: Literal["window", "pin", "policy", "bandwidth", "cpu"]


class Stats(_Message):
    """A subscriber's downlink, in the client API's names (``downloadRate``, ``videoBitrate``)."""

    type: Literal["stats"] = "stats"
    id: int | str | None = None
    downloadRate: int | None  # noqa: N815 - the wire name
    videoBitrate: int  # noqa: N815
    loss: float
    rtt: float | None


class Ack(_Message):
    type: Literal["ok"] = "ok"
    id: int | str | None = None


class Error(_Message):
    type: Literal["error"] = "error"
    id: int | str | None = None
    code: str
    reason: str


class Bye(_Message):
    """The participant is out of its room, without having asked: the server shuts down (the
    WebSocket closes next), or one of its peer connections died (the WebSocket stays open:
    join again to come back), or its identity joined the room on another connection
    (``duplicate_identity``), or the worker hosting its room is gone (``worker_lost``: the
    WebSocket stays open, join again and the room is placed on a live worker), or this node
    stops while others of its cluster run (``moved``: the WebSocket closes next; connect
    and join again, another node takes the room)."""

    type: Literal["bye"] = "bye"
    code: Literal[
        "shutdown",
        "peer_timeout",
        "peer_failed",
        "peer_closed",
        "duplicate_identity",
        "worker_lost",
        "moved",
    ]
    reason: str


ServerMessage = (
    Joined
    | ParticipantJoined
    | ParticipantLeft
    | TrackPublished
    | TrackUnpublished
    | TrackMuted
    | PublishLayers
    | ActiveSpeakers
    | PublishAnswer
    | SubscribeOffer
    | Left
    | Pong
    | Levels
    | LevelChanged
    | Stats
    | Ack
    | Error
    | Bye
)
