"""Server settings: one pydantic schema, validated once when the server starts."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class IceSettings(_Strict):
    #: addresses to gather host candidates on; 127.0.0.1 must be listed to be used
    listen_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1)
    #: address announced in candidates instead of the bound one (behind 1:1 NAT)
    announced_address: str | None = None
    #: inclusive UDP port range, e.g. [40000, 40999]; null for any free port
    port_range: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> IceSettings:
        if self.port_range is not None:
            low, high = self.port_range
            if not (1 <= low <= high <= 65535):
                raise ValueError(f"port_range must be 1 <= low <= high <= 65535, got {low}-{high}")
        return self


class MediaSettings(_Strict):
    #: x-google-start-bitrate written in answers and offers (kbps)
    start_bitrate_kbps: int = Field(1500, ge=30, le=100_000)
    #: the most a publisher may send, signalled with REMB (bits/s)
    publisher_max_bitrate: int = Field(10_000_000, ge=30_000)
    #: at most one keyframe request per source per interval (seconds)
    keyframe_min_interval: float = Field(0.5, ge=0.05, le=10)


class RoomPolicy(_Strict):
    """What any subscriber in a room may get (the lowest of all inputs wins)."""

    max_spatial_layer: int = Field(2, ge=0, le=2)
    max_temporal_layer: int = Field(2, ge=0, le=2)
    max_width: int | None = Field(None, ge=1)
    max_height: int | None = Field(None, ge=1)
    max_fps: float | None = Field(None, gt=0)
    #: window fit: a spatial layer fits when its width <= tolerance x the rendered width
    window_tolerance: float = Field(1.2, ge=1.0, le=4.0)


class Settings(_Strict):
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    ice: IceSettings = Field(default_factory=IceSettings)
    media: MediaSettings = Field(default_factory=lambda: MediaSettings())
    room: RoomPolicy = Field(default_factory=lambda: RoomPolicy())
    log_level: str = "INFO"


def load_settings(path: str | Path | None) -> Settings:
    """The embedded defaults, or the file's settings validated against them."""
    if path is None:
        return Settings()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return Settings.model_validate(data)
