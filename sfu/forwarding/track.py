"""What the SFU knows of one negotiated RTP stream: codec, payload types, SSRCs, extensions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class StreamParameters:
    kind: str  # "audio" or "video"
    mime_type: str  # e.g. "video/VP9"
    clock_rate: int
    payload_type: int
    ssrc: int
    rtx_payload_type: int | None = None
    rtx_ssrc: int | None = None
    #: header extension id by URI, as negotiated on this transport
    extensions: dict[str, int] = field(default_factory=dict)
    #: codec format parameters (fmtp)
    parameters: dict[str, str | int | None] = field(default_factory=dict)

    @property
    def codec(self) -> str:
        return self.mime_type.split("/", 1)[-1].upper()
