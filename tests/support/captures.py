"""Real captures replayed into one :class:`~sfu.forwarding.source.MediaSource` with one
subscriber (lists stand in for transports): what was forwarded, and what went upstream."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.capturefile import Capture, read_capture, stream_parameters
from loadtest.looper import replay
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.rtp import rtcp
from sfu.rtp.packet import parse_rtp

__all__ = ["AV1", "CAPTURES", "VP8", "VP9", "Forwarded", "forward", "load"]

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captures"
VP9 = "vp9_L3T3_KEY.sfucap"
VP8 = "vp8_L1T3.sfucap"
AV1 = "av1_L3T3.sfucap"


@dataclass
class Forwarded:
    packets: list[bytes]
    upstream: list[bytes]
    source: MediaSource
    downtrack: DownTrack
    duration: float
    plis: int = 0
    layer_log: list[tuple[int, int, int]] = field(default_factory=list)


def load(name: str) -> Capture:
    """A capture cut after its last complete picture (the recording stopped mid-picture)."""
    capture = read_capture(CAPTURES / name)
    while capture.packets and not parse_rtp(capture.packets[-1][1]).marker:
        capture.packets.pop()
    return capture


def forward(
    capture: Capture,
    schedule: dict[int, tuple[int, int]],
    loops: int = 1,
    keep_lower_chain: bool = False,
    loss: float = 0.0,
    delay: int = 6,
    seed: int = 1,
    chain_from: int | None = None,
    restart_at: int | None = None,
) -> Forwarded:
    """Replay ``capture`` into a source with one subscriber.  With ``loss``, that share of the
    packets (after the first 50) is held back and delivered ``delay`` packets later, the way
    the publisher's retransmission of a NACKed packet arrives."""
    rng = random.Random(seed)
    held: list[tuple[int, bytes]] = []
    info = capture.info
    params = stream_parameters(info)
    upstream: list[bytes] = []
    sent: list[bytes] = []
    source = MediaSource("pub:1", params, send_rtcp=upstream.append, rtcp_ssrc=1)
    downtrack = DownTrack(source, ssrc=4242, payload_type=100, send=sent.append)
    source.attach(downtrack, 0.0)
    assert downtrack.selector is not None
    downtrack.keep_lower_chain = keep_lower_chain
    result = Forwarded(sent, upstream, source, downtrack, 0.0)
    assert downtrack.selector is not None
    t = 0.0
    for i, (t, packet) in enumerate(replay(capture, loops)):
        if i == chain_from:
            downtrack.keep_lower_chain = True
        if i == restart_at:
            downtrack.selector.restart()
            result.layer_log.append((len(sent), -1, -1))
        if i in schedule:
            downtrack.selector.set_target(*schedule[i])
            result.layer_log.append((len(sent), *schedule[i]))
        while held and held[0][0] <= i:
            late = held.pop(0)[1]
            source.on_rtp(late, parse_rtp(late), t)
        if loss and i > 50 and rng.random() < loss:
            held.append((i + delay, packet))
            continue
        source.on_rtp(packet, parse_rtp(packet), t)
    for _, late in held:
        source.on_rtp(late, parse_rtp(late), t)
    result.duration = t
    result.plis = sum(isinstance(p, rtcp.Pli) for d in upstream for p in rtcp.parse_rtcp(d))
    return result
