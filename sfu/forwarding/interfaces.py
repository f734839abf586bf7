"""What a down track needs from its source, and what a source needs from its down tracks.

:class:`~sfu.forwarding.source.MediaSource` and :class:`~sfu.forwarding.downtrack.DownTrack`
know each other only through these two protocols: a down track asks its source for a
keyframe through :meth:`Upstream.want_keyframe` (coalesced, acted on after the packet's
fan-out) or :meth:`Upstream.request_keyframe` (now), and never writes its source's fields.
"""

from __future__ import annotations

from typing import Protocol

from .extension_writer import ExtensionWriter
from .layers import LayerInfo, LayerParser
from .track import StreamParameters


class Upstream(Protocol):
    """A published track, as one of its down tracks sees it."""

    kind: str
    params: StreamParameters
    #: the layer structure learned from the stream (video), None for audio
    layers: LayerParser | None
    #: the header extensions of the forwarded packets
    writer: ExtensionWriter

    def want_keyframe(self) -> None:
        """A subscriber needs a keyframe: asked for once the packet in hand is fanned out."""

    def request_keyframe(self, now: float) -> None:
        """Ask the publisher for a keyframe now (rate-limited per source)."""

    def clock_mapping(self, now: float) -> tuple[int, int] | None:
        """The publisher's (NTP, RTP) clock pair at ``now``, from its last sender report."""


class Downstream(Protocol):
    """One subscriber's copy of a published track, as the source fans packets out to it."""

    #: whose copy this is, for logs
    context: str
    #: exceptions contained while writing to it
    faults: int

    def write(
        self,
        marker: bool,
        seq: int,
        ts: int,
        elements: list[tuple[int, bytes]],
        block: bytes,
        head: bytes,
        tail: bytes,
        payload: bytes,
        info: LayerInfo | None,
        now: float,
        late: bool = False,
    ) -> None:
        """Forward (or not) one packet of the source."""

    def resume_after(self, seconds: float) -> None:
        """The source forwarded nothing for ``seconds`` (muted): go on after the gap."""
