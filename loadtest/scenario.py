"""Load test scenarios: flags or a YAML file in ``loadtest/scenarios/``, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_DURATION = 300.0
MAX_PEERS = 400
CAPTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "captures"
VIDEO_CAPTURES = {
    "VP9": "vp9_L3T3_KEY.sfucap",
    "VP8": "vp8_L1T3.sfucap",
    "AV1": "av1_L3T3.sfucap",
}
AUDIO_CAPTURE = "opus.sfucap"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Profile(_Strict):
    """A kind of subscriber: the size it renders videos at and, optionally, its downlink."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    subscribers_per_room: int = Field(1, ge=0, le=MAX_PEERS)
    #: rendered size of each remote video (e.g. [426, 240] for a 3x3 grid); null: no report
    window: tuple[int, int] | None = None
    #: a real bottleneck (network namespace + tc) at this rate, kbit/s
    downlink_kbps: int | None = Field(None, ge=50, le=1_000_000)


class Scenario(_Strict):
    #: a running server (ws:// or http:// URL); null: start one for this run
    url: str | None = None
    rooms: int = Field(1, ge=1, le=100)
    publishers_per_room: int = Field(1, ge=0, le=16)
    codec: Literal["VP9", "VP8", "AV1"] = "VP9"
    audio: bool = True
    duration: float = Field(10.0, gt=0)
    #: peers started per second
    ramp_up: float = Field(10.0, gt=0)
    #: load generator processes for the subscribers without a downlink cap
    processes: int = Field(2, ge=1, le=16)
    profiles: list[Profile] = Field(
        default_factory=lambda: [Profile(name="speaker", window=(1280, 720))], min_length=1
    )
    output: str = "loadtest/results"

    @model_validator(mode="after")
    def _bounds(self) -> Scenario:
        if self.duration > MAX_DURATION:
            raise ValueError(f"duration is capped at {MAX_DURATION:.0f} s, got {self.duration}")
        if self.peers > MAX_PEERS:
            raise ValueError(f"at most {MAX_PEERS} peers in one run, got {self.peers}")
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"profile names must be unique: {names}")
        capped = sum(p.subscribers_per_room for p in self.profiles if p.downlink_kbps)
        if capped * self.rooms > 16:
            raise ValueError("at most 16 subscribers with a downlink cap (one namespace each)")
        return self

    @property
    def peers(self) -> int:
        per_room = self.publishers_per_room + sum(p.subscribers_per_room for p in self.profiles)
        return self.rooms * per_room

    @property
    def video_capture(self) -> Path:
        return CAPTURES / VIDEO_CAPTURES[self.codec]

    @property
    def audio_capture(self) -> Path | None:
        return CAPTURES / AUDIO_CAPTURE if self.audio else None


def load_scenario(path: str | Path) -> Scenario:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return Scenario.model_validate(data)
