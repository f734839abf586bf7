"""Server settings and room policies: one pydantic schema, validated once, at the edge.

``load_settings(path)`` reads a YAML file and returns :class:`Settings`, or raises
:class:`ConfigError` whose lines name the file, the line, the key path and what was expected:

    configs/rooms.yaml:14 rooms.policies.webinar.max_spatial_layer: must be 0..2, got 5
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import math
import re
import reprlib
import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from ..sdp.limits import PROTOCOL_MAX_SDP, SdpLimits

#: the shortest token secret accepted, wherever it comes from
MIN_SECRET = 32


class ConfigError(ValueError):
    """An invalid settings file; ``str()`` is one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def _short(value: Any) -> str:
    """``repr`` cut short: a value built from YAML aliases may expand enormously."""
    return _REPR.repr(value)


def _layer(value: int) -> int:
    if not 0 <= value <= 2:
        raise ValueError(f"must be 0..2, got {value}")
    return value


_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bps|b/s)?\s*$")
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_bitrate(value: Any) -> Any:
    """Bits per second from an int or a string with a unit: ``2.5M``, ``500k``, ``800kbps``."""
    if isinstance(value, bool):
        raise ValueError(f"must be a bitrate like 2.5M or 500k, got {_short(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        match = _BITRATE.match(value)
        if match:
            number = float(match.group(1)) * _UNITS[match.group(2).lower()]
            if math.isfinite(number):
                return int(number)
    raise ValueError(f"must be a bitrate like 2.5M or 500k, got {_short(value)}")


def _positive_bitrate(value: int) -> int:
    if value < 10_000:
        raise ValueError(f"must be at least 10k bits/s, got {value}")
    return value


Layer = Annotated[int, AfterValidator(_layer)]
Bitrate = Annotated[int, BeforeValidator(parse_bitrate), AfterValidator(_positive_bitrate)]
Codec = Literal["VP9", "AV1", "VP8", "H264"]
Source = Literal["camera", "screen"]
_DEFAULT_CODECS: tuple[Codec, ...] = ("VP9", "AV1", "VP8", "H264")
_DEFAULT_PRIORITIES: dict[Source, int] = {"screen": 2, "camera": 1}
ScalabilityMode = Literal[
    "L1T1", "L1T2", "L1T3", "L2T1", "L2T2", "L2T3", "L3T1", "L3T2", "L3T3",
    "L2T1_KEY", "L2T2_KEY", "L2T3_KEY", "L3T1_KEY", "L3T2_KEY", "L3T3_KEY",
    "S2T1", "S2T2", "S2T3", "S3T1", "S3T2", "S3T3",
]  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: origins (``https://meet.example.com``) whose pages may open the WebSocket or call the
    #: admin endpoints, beside the server's own origin; ``"*"``: any.  Requests without an
    #: Origin header (not from a browser page) are not affected
    allowed_origins: list[str] = Field(default_factory=list)
    #: addresses of reverse proxies whose ``X-Forwarded-For`` names the client (for the
    #: per-address limits); from anyone else the header is ignored
    trusted_proxies: list[str] = Field(default_factory=list)
    #: a Unix socket path served beside the TCP port; requests on it are admin (its file
    #: permissions are the credential)
    admin_socket: str | None = None


#: bounds on ``ice.servers``: entries, and URLs of one entry
MAX_ICE_SERVERS, MAX_ICE_URLS = 8, 8
#: RFC 7064 ``stun:``/``stuns:`` and RFC 7065 ``turn:``/``turns:`` URLs: a host (a name, an
#: IPv4 address or a bracketed IPv6 one), a port, and for TURN a transport
_ICE_URL = re.compile(
    r"^(?:stuns?:H(?::(\d{1,5}))?|turns?:H(?::(\d{1,5}))?(?:\?transport=(?:udp|tcp))?)$".replace(
        "H", r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
    )
)
#: what a username or credential may hold: printable ASCII (they go into HTTP Link headers)
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


class IceServer(_Strict):
    """A STUN or TURN server the clients are told to use: a W3C ``RTCIceServer`` in
    ``joined``, RFC 9725 ``Link`` headers for WHIP/WHEP (sfu/signaling/ice_servers.py)."""

    #: ``stun:``, ``stuns:``, ``turn:`` or ``turns:`` URLs of one server
    urls: list[str] = Field(min_length=1, max_length=MAX_ICE_URLS)
    #: both required with a ``turn:``/``turns:`` URL, else not allowed
    username: str | None = Field(None, min_length=1, max_length=512)
    credential: str | None = Field(None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def _check(self) -> IceServer:
        for i, url in enumerate(self.urls):
            match = _ICE_URL.fullmatch(url)
            if match is None or not all(1 <= int(p) <= 65535 for p in match.groups() if p):
                raise ValueError(
                    f"urls[{i}]: must be stun:HOST[:PORT], stuns:HOST[:PORT], "
                    f"turn:HOST[:PORT][?transport=udp|tcp] or turns:..., got {_short(url)}"
                )
        for name, value in (("username", self.username), ("credential", self.credential)):
            if value is not None and not _PRINTABLE.fullmatch(value):
                raise ValueError(f"{name}: printable ASCII characters only")
        turn = any(url.startswith("turn") for url in self.urls)
        if turn and (self.username is None or self.credential is None):
            raise ValueError("username: a turn: or turns: URL needs a username and a credential")
        if not turn and (self.username is not None or self.credential is not None):
            raise ValueError("username: username and credential are for turn(s): URLs only")
        return self


def _ip_address(value: str | None) -> str | None:
    try:
        address = None if value is None else ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"must be an IP address (not a host name), got {_short(value)}") from None
    if address is not None and (address.is_unspecified or address.is_multicast):
        raise ValueError(f"must be a unicast address, got {value}")
    return None if address is None else str(address)


class IceSettings(_Strict):
    #: addresses to gather host candidates on; 127.0.0.1 must be listed to be used
    listen_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1)
    #: the IP address candidates give instead of the bound one, on the listen addresses of
    #: its family (a host behind 1:1 NAT: its public address)
    announced_address: Annotated[str | None, AfterValidator(_ip_address)] = None
    #: inclusive UDP port range, e.g. [40000, 40999]; null for any free port
    port_range: tuple[int, int] | None = None
    #: STUN/TURN servers for the clients (``joined.ice_servers``, WHIP/WHEP ``Link``
    #: headers); the server's own connections gather host candidates only
    servers: list[IceServer] = Field(default_factory=list, max_length=MAX_ICE_SERVERS)

    @model_validator(mode="after")
    def _check_range(self) -> IceSettings:
        if self.port_range is not None:
            low, high = self.port_range
            if not (1 <= low <= high <= 65535):
                raise ValueError(f"port_range must be 1 <= low <= high <= 65535, got {low}-{high}")
        announced = self.announced_address
        if announced is not None and not any(
            (":" in a) == (":" in announced) for a in self.listen_addresses
        ):
            raise ValueError(
                f"announced_address: {announced} replaces listen addresses of its family "
                "(IPv4 or IPv6), and no listen address is of it"
            )
        return self


class MediaSettings(_Strict):
    #: x-google-start-bitrate written in answers and offers (kbps)
    start_bitrate_kbps: int = Field(1500, ge=30, le=100_000)
    #: negotiate transport-wide-cc with publishers and send them feedback
    publisher_transport_cc: bool = False


class LimitSettings(_Strict):
    """Bounds on signaling: a misbehaving client loses its own connection, nothing else."""

    max_rooms: int = Field(1000, ge=1)
    #: messages per second per connection on average, and at once
    messages_per_second: float = Field(20.0, gt=0)
    message_burst: int = Field(50, ge=1)
    #: seconds a connection may stay without joining a room
    join_timeout: float = Field(10.0, gt=0)
    #: error replies (bad messages, rate limited) before the connection is closed
    max_errors: int = Field(50, ge=1)
    #: seconds without any packet from a client's peer connection (RTP, RTCP or ICE check)
    #: before it is declared dead and the participant leaves its room; 0: off
    peer_timeout: float = Field(5.0, ge=0)
    #: messages waiting to be written to one connection; beyond, it is closed (slow_consumer)
    send_queue: int = Field(256, ge=8)
    #: seconds one write to a connection may stall (its reader stopped reading) before the
    #: connection is closed (slow_consumer)
    send_timeout: float = Field(10.0, gt=0)
    #: WebSocket connections open at once from one client address
    max_connections_per_address: int = Field(100, ge=1)
    #: work per client address, all its connections together, in message cost units (see
    #: docs/security.md: a join costs 5, an offer 10, most messages 1) per second, and at once
    address_cost_per_second: float = Field(200.0, gt=0)
    address_cost_burst: int = Field(1000, ge=10)
    #: seconds from a publish offer accepted (or the server's first subscribe offer) until
    #: that peer connection is connected (ICE and DTLS), and from each subscribe offer until
    #: it is answered; past it the participant gets ``bye`` (peer_failed), leaves its room
    setup_timeout: float = Field(20.0, gt=0, le=300)
    #: peer connections of all rooms setting up at once (offered or answered, not yet
    #: connected); a join or a first publish offer beyond it is refused (``busy``)
    max_peers_in_setup: int = Field(256, ge=1)
    #: bytes of a publish offer (a subscribe answer may also reach twice the server's offer)
    max_sdp_bytes: int = Field(32 * 1024, ge=1024, le=PROTOCOL_MAX_SDP)
    #: m-lines of a publish offer (a subscribe answer has those of the server's offer)
    max_m_lines: int = Field(16, ge=1, le=1024)
    #: distinct UDP ICE candidates one peer connection is given (all m-lines, all offers
    #: or answers until an ICE restart): the server sends STUN checks to each
    max_candidates: int = Field(32, ge=1, le=1000)

    def sdp_limits(self) -> SdpLimits:
        return SdpLimits(
            max_bytes=self.max_sdp_bytes,
            max_m_lines=self.max_m_lines,
            max_candidates=self.max_candidates,
        )


class AuthSettings(_Strict):
    """Who may do what comes from signed tokens.  With a secret (here, in ``secret_file``,
    or in ``$SFU_TOKEN_SECRET`` / ``$SFU_TOKEN_SECRET_FILE``) every join needs a valid token;
    without one the server runs in development mode: tokenless, loopback only."""

    #: HMAC key for access tokens (at least 32 characters)
    secret: str | None = Field(None, min_length=32)
    #: a file holding the key (``sfu secret`` writes one)
    secret_file: str | None = None
    #: keys that signed tokens still in use, accepted until those tokens expire (rotation)
    previous_secrets: list[str] = Field(default_factory=list)
    #: run without a secret (tokenless joins) on a non-loopback address: only for a closed
    #: network of test machines (also ``sfu serve --insecure``)
    insecure_off_loopback: bool = False

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "require_token_off_loopback" in data:
            raise ValueError(
                "require_token_off_loopback: removed; with a secret every join needs a "
                "token, without one the server is loopback-only (see docs/security.md)"
            )
        return data

    @model_validator(mode="after")
    def _check_previous(self) -> AuthSettings:
        for i, old in enumerate(self.previous_secrets):
            if len(old) < MIN_SECRET:
                raise ValueError(f"previous_secrets[{i}]: at least {MIN_SECRET} characters")
        return self


class LogSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


#: what happens in rooms, as logged and as webhooks report it (docs/events.md)
EventName = Literal[
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
]
#: the prefix of a Standard Webhooks secret: ``whsec_`` and the key in base64
WHSEC_PREFIX = "whsec_"


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: the base64 key of a ``whsec_...`` secret (at least
    24 bytes), else the secret's own bytes (at least ``MIN_SECRET`` characters); raises
    ValueError."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            key = base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except ValueError:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
        if len(key) < 24:
            raise ValueError(f"a whsec_ secret must hold at least 24 bytes, got {len(key)}")
        return key
    if len(secret) < MIN_SECRET:
        raise ValueError(f"at least {MIN_SECRET} characters, got {len(secret)}")
    return secret.encode()


class WebhookSettings(_Strict):
    """Room events POSTed, signed, to the operator's HTTP service (docs/events.md); off
    without a ``url``."""

    #: where the events are POSTed (http:// or https://); null: no webhooks
    url: str | None = None
    #: the signing key: at least 32 characters, or a Standard Webhooks ``whsec_<base64>``
    secret: str | None = None
    #: a file holding it (read at start)
    secret_file: str | None = None
    #: seconds one POST may take, connecting included
    timeout: float = Field(10.0, gt=0, le=300)
    #: events waiting for delivery; beyond, the oldest is dropped (counted and logged)
    max_queue: int = Field(1000, ge=1, le=1_000_000)
    #: tries per event, the first included, on connection errors, timeouts, 5xx and 429
    max_attempts: int = Field(5, ge=1, le=100)
    #: seconds before the first retry, doubled for each next one (at most 60)
    retry_delay: float = Field(1.0, gt=0, le=60)
    #: the events sent (null: all of them)
    events: list[EventName] | None = None

    @model_validator(mode="after")
    def _check(self) -> WebhookSettings:
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname or " " in self.url:
                raise ValueError(
                    f"url: must be an http:// or https:// URL with a host, got {_short(self.url)}"
                )
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("secret_file: give secret or secret_file, not both")
        if self.secret is not None:
            try:
                webhook_key(self.secret)
            except ValueError as exc:
                raise ValueError(f"secret: {exc}") from None
        if self.url is not None and self.secret is None and self.secret_file is None:
            raise ValueError(
                "secret: webhooks.url is set, so a secret signs the events: give secret or "
                f"secret_file (at least {MIN_SECRET} characters; docs/events.md)"
            )
        return self


class RolePolicy(_Strict):
    """Overrides for participants joining with a role (e.g. webinar presenters)."""

    max_spatial_layer: Layer | None = None
    max_temporal_layer: Layer | None = None
    max_width: int | None = Field(None, ge=1)
    max_height: int | None = Field(None, ge=1)
    max_fps: float | None = Field(None, gt=0)
    subscriber_max_bitrate: Bitrate | None = None
    can_publish: bool | None = None


class RoomPolicy(_Strict):
    """What a room allows, and what any subscriber in it may get (the lowest input wins)."""

    max_participants: int = Field(100, ge=1, le=10_000)
    max_publishers: int = Field(100, ge=0, le=10_000)
    #: allowed video codecs, in order of preference
    codecs: list[Codec] = Field(default_factory=lambda: list(_DEFAULT_CODECS), min_length=1)
    #: allowed scalability modes (null: any)
    scalability_modes: list[ScalabilityMode] | None = None
    max_spatial_layer: Layer = 2
    max_temporal_layer: Layer = 2
    max_width: int | None = Field(None, ge=1)
    max_height: int | None = Field(None, ge=1)
    max_fps: float | None = Field(None, gt=0)
    #: cap of what one subscriber receives (bits/s; "2.5M", "500k")
    subscriber_max_bitrate: Bitrate | None = None
    #: cap of what one publisher sends, signalled with REMB
    publisher_max_bitrate: Bitrate = 10_000_000
    #: record every track published in the room (layered segments, recording.dir)
    record: bool = False
    #: dynacast: the publisher is told to encode only the spatial layers some subscriber
    #: needs (``publish_layers``); off: whatever it sends
    dynacast: bool = True
    #: track priorities by source when bandwidth is shared (higher first)
    priorities: dict[Source, int] = Field(default_factory=lambda: dict(_DEFAULT_PRIORITIES))
    #: window fit: a spatial layer fits when its width <= tolerance x the rendered width
    window_tolerance: float = Field(1.2, ge=1.0, le=4.0)
    #: fit each subscriber's layers to its estimated downlink (transport-cc / REMB); off:
    #: estimate and report only, the subscriber_max_bitrate cap still applies (on by
    #: default since 2026-11-21, see docs/bandwidth.md)
    bandwidth_estimation: bool = True
    #: a level is chosen only if its bitrate <= headroom x the available bandwidth
    bandwidth_headroom: float = Field(0.9, gt=0.0, le=1.0)
    #: receiver-CPU fit: a viewer that drops more than ``dropped_frame_threshold`` x the
    #: frames it decodes over ``dropped_frame_window`` seconds (its own ``receiver_report``)
    #: gets one step lower (spatial first), tried one step up again after
    #: ``cpu_fit_hold`` seconds without overload (doubled after an up-step that failed)
    receiver_cpu_fit: bool = True
    dropped_frame_threshold: float = Field(0.25, gt=0.0, le=1.0)
    dropped_frame_window: float = Field(4.0, ge=1.0, le=60.0)
    cpu_fit_hold: float = Field(8.0, ge=1.0, le=600.0)
    #: at most one keyframe request per source per interval (seconds)
    keyframe_min_interval: float = Field(0.5, ge=0.05, le=10)
    #: retransmissions answering a subscriber's NACKs take at most this share of the media
    #: bytes forwarded to it, over any second, with or without transport-cc (0: none)
    retransmission_ratio: float = Field(1.0, ge=0.0, le=10.0)
    #: NACK items (lost sequence numbers) handled per RTCP packet from a subscriber; the
    #: rest are counted, not looked at
    nack_items_per_packet: int = Field(256, ge=1, le=100_000)
    #: NACK items handled per second per subscriber (on average; as many at once)
    nack_items_per_second: int = Field(1000, ge=1, le=1_000_000)
    require_token: bool = False
    #: whether participants (without a role saying otherwise) may publish
    can_publish: bool = True
    #: per-role overrides (the join message or the token names the role)
    roles: dict[str, RolePolicy] = Field(default_factory=dict)

    def for_role(self, role: str | None) -> RoomPolicy:
        """This policy with the role's overrides applied."""
        override = self.roles.get(role or "")
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        return self.model_copy(update=changes)

    def may_publish(self, role: str | None) -> bool:
        override = self.roles.get(role or "")
        if override is not None and override.can_publish is not None:
            return override.can_publish
        return self.can_publish and self.max_publishers > 0


class RoomRule(_Strict):
    #: a room name, or a glob pattern (``webinar-*``, ``class-??``)
    match: str = Field(min_length=1)
    policy: str


class RoomsSettings(_Strict):
    default: RoomPolicy = Field(default_factory=lambda: RoomPolicy())
    policies: dict[str, RoomPolicy] = Field(default_factory=dict)
    #: first match wins; no match: the default policy
    rules: list[RoomRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_rules(self) -> RoomsSettings:
        for i, rule in enumerate(self.rules):
            if rule.policy != "default" and rule.policy not in self.policies:
                known = ", ".join(["default", *self.policies]) or "default"
                raise ValueError(
                    f"rules[{i}].policy: unknown policy {rule.policy!r} (known: {known})"
                )
        return self

    def policy_for(self, room: str) -> tuple[str, RoomPolicy]:
        """The (name, policy) that applies to ``room``: the first matching rule's."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(room, rule.match):
                if rule.policy == "default":
                    return "default", self.default
                return rule.policy, self.policies[rule.policy]
        return "default", self.default


class ClusterSettings(_Strict):
    """Several worker processes, and several machines (docs/scaling.md).  The default is one
    process, no Redis."""

    #: worker processes on this machine, each with its own event loop and media ports,
    #: behind the same HTTP port; "auto": one per core
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = 1
    #: the Redis that coordinates workers and nodes (redis://host:port/db or
    #: unix:///path); with more than one worker and none set, `sfu serve` starts a private
    #: redis-server for this machine's workers
    redis_url: str | None = None
    #: this machine's name in the cluster (default: the host name)
    node: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    #: seconds between a worker's heartbeats (its load, its rooms' claims renewed)
    heartbeat_interval: float = Field(1.0, gt=0, le=60)
    #: a worker silent this long is taken out: its rooms are placed again
    heartbeat_timeout: float = Field(5.0, gt=0, le=600)
    #: worker i also serves HTTP on this port + i (to reach one worker: tests, debugging);
    #: null: only the shared port
    worker_ports_from: int | None = Field(None, ge=1, le=65535)
    #: cascading: a room's worker that holds this many of its participants takes no more;
    #: the next ones stay on the worker their WebSocket reached, which receives the room's
    #: tracks over the media link (null: a room lives on one worker)
    room_participants_per_worker: int | None = Field(None, ge=1, le=100_000)
    #: cascading: a participant whose WebSocket reached another node than the room's stays
    #: on that node (its media does not cross to the room's node; the tracks do, once)
    cascade_across_nodes: bool = True
    #: the address of this node's media link between workers (other nodes must reach it);
    #: null: the first of ice.listen_addresses
    relay_address: str | None = None
    #: SIGTERM: seconds the calls in progress may go on (no new room) before the shutdown
    drain_timeout: float = Field(0.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _check_heartbeat(self) -> ClusterSettings:
        if self.heartbeat_timeout < 2 * self.heartbeat_interval:
            raise ValueError(
                "heartbeat_timeout must be at least twice heartbeat_interval, got "
                f"{self.heartbeat_timeout:g} and {self.heartbeat_interval:g}"
            )
        return self

    def worker_count(self, cores: int | None) -> int:
        return max(1, cores or 1) if self.workers == "auto" else self.workers


class RecordingSettings(_Strict):
    """Layered recording (docs/recording.md): where, and how long a segment is."""

    #: the folder recordings are written to (a folder per room, one per recording in it);
    #: null: recording is off (a policy's ``record`` and the admin's request are refused)
    dir: str | None = None
    #: target seconds per segment (cut at the first keyframe at or after it)
    segment_duration: float = Field(2.0, ge=0.5, le=30.0)
    #: fsync each file before its rename (off: faster on slow disks, not crash-safe)
    fsync: bool = True


class Settings(_Strict):
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    ice: IceSettings = Field(default_factory=lambda: IceSettings())
    media: MediaSettings = Field(default_factory=lambda: MediaSettings())
    log: LogSettings = Field(default_factory=lambda: LogSettings())
    auth: AuthSettings = Field(default_factory=lambda: AuthSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    rooms: RoomsSettings = Field(default_factory=lambda: RoomsSettings())
    cluster: ClusterSettings = Field(default_factory=lambda: ClusterSettings())
    webhooks: WebhookSettings = Field(default_factory=lambda: WebhookSettings())
    recording: RecordingSettings = Field(default_factory=lambda: RecordingSettings())
