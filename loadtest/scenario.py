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


class Thresholds(_Strict):
    """What a run must meet, per profile (``loadtest.thresholds``); a key left out (or
    null) is not checked.  In a scenario: ``thresholds:`` for every profile, and a profile's
    own ``thresholds:`` over those, key by key; ``run``'s ``--max-...`` flags over both."""

    #: p99 publisher-to-subscriber latency, ms (over the steady window when there is one)
    max_p99_latency_ms: float | None = Field(None, gt=0)
    #: packets missing at first sight, % (over the steady window when there is one)
    max_loss_percent: float | None = Field(None, ge=0, le=100)
    #: freezes (the W3C definition, loadtest.viewer) per minute of video
    max_freezes_per_minute: float | None = Field(None, ge=0)
    #: p95 time to first frame, seconds; every video must have painted one
    max_first_frame_s: float | None = Field(None, gt=0)
    #: dropped pictures over decoded + dropped, 0..1
    max_dropped_share: float | None = Field(None, ge=0, le=1)
    #: p95 switch-paint latency, ms (no switch: met)
    max_switch_paint_ms: float | None = Field(None, gt=0)

    def over(self, base: Thresholds | None) -> Thresholds:
        """These thresholds, with ``base``'s where these leave a key unset."""
        if base is None:
            return self
        mine = self.model_dump(exclude_none=True)
        return Thresholds.model_validate({**base.model_dump(exclude_none=True), **mine})


class Profile(_Strict):
    """A kind of subscriber: the size it renders videos at and, optionally, its downlink."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    subscribers_per_room: int = Field(1, ge=0, le=MAX_PEERS)
    #: rendered size of each remote video (e.g. [426, 240] for a 3x3 grid); null: no report
    window: tuple[int, int] | None = None
    #: a real bottleneck (network namespace + tc) at this rate, kbit/s
    downlink_kbps: int | None = Field(None, ge=50, le=1_000_000)
    #: this profile's own thresholds, over the scenario's
    thresholds: Thresholds | None = None


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
    #: what every profile must meet (``run`` exits 3 when a profile misses one)
    thresholds: Thresholds = Field(default_factory=Thresholds)

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

    def thresholds_for(self, profile: Profile, flags: Thresholds | None = None) -> Thresholds:
        """``profile``'s thresholds: ``flags`` over its own over the scenario's."""
        own = profile.thresholds.over(self.thresholds) if profile.thresholds else self.thresholds
        return flags.over(own) if flags is not None else own

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
