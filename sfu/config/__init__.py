"""Server settings and room policies: one pydantic schema, validated once, at the edge.

``load_settings(path)`` reads a YAML file and returns :class:`Settings`, or raises
:class:`ConfigError` whose lines name the file, the line, the key path and what was expected:

    configs/rooms.yaml:14 rooms.policies.webinar.max_spatial_layer: must be 0..2, got 5
"""

from .loading import load_settings, parse_settings
from .models import (
    MIN_SECRET,
    WHSEC_PREFIX,
    AuthSettings,
    Bitrate,
    ClusterSettings,
    Codec,
    ConfigError,
    EventName,
    HttpSettings,
    IceServer,
    IceSettings,
    Layer,
    LimitSettings,
    LogSettings,
    MediaSettings,
    RecordingSettings,
    RolePolicy,
    RoomPolicy,
    RoomRule,
    RoomsSettings,
    ScalabilityMode,
    Settings,
    Source,
    WebhookSettings,
    parse_bitrate,
    webhook_key,
)

__all__ = [
    "AuthSettings",
    "Bitrate",
    "ClusterSettings",
    "Codec",
    "ConfigError",
    "EventName",
    "HttpSettings",
    "IceServer",
    "IceSettings",
    "Layer",
    "LimitSettings",
    "LogSettings",
    "MIN_SECRET",
    "MediaSettings",
    "RolePolicy",
    "RoomPolicy",
    "RecordingSettings",
    "RoomRule",
    "RoomsSettings",
    "ScalabilityMode",
    "Settings",
    "Source",
    "WHSEC_PREFIX",
    "WebhookSettings",
    "load_settings",
    "parse_bitrate",
    "parse_settings",
    "webhook_key",
]
