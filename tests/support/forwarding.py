"""A :class:`~sfu.forwarding.source.MediaSource` and its
:class:`~sfu.forwarding.downtrack.DownTrack` s fed exact packets, with lists standing in for
transports."""

from __future__ import annotations

from typing import Any

from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.forwarding.track import StreamParameters
from sfu.rtp import extensions as ext
from sfu.rtp.packet import build_rtp, parse_rtp

PUB_IDS = {ext.AUDIO_LEVEL: 1, ext.ABS_SEND_TIME: 2, ext.DEPENDENCY_DESCRIPTOR: 11, ext.MID: 4}


def make_source(kind: str = "video") -> tuple[MediaSource, list[bytes]]:
    params = StreamParameters(
        kind=kind,
        mime_type="video/VP8" if kind == "video" else "audio/opus",
        clock_rate=90000 if kind == "video" else 48000,
        payload_type=96,
        ssrc=1111,
        rtx_payload_type=97,
        rtx_ssrc=2222,
        extensions=dict(PUB_IDS),
    )
    upstream: list[bytes] = []
    return MediaSource("p:1", params, send_rtcp=upstream.append, rtcp_ssrc=99), upstream


def feed(
    source: MediaSource,
    seq: int,
    ts: int = 0,
    marker: bool = False,
    payload: bytes = b"\x10\x00frame",
    extensions: Any = None,
    now: float = 0.0,
) -> None:
    data = build_rtp(
        payload_type=96,
        sequence_number=seq,
        timestamp=ts,
        ssrc=1111,
        payload=payload,
        marker=marker,
        extensions=extensions,
    )
    source.on_rtp(data, parse_rtp(data), now)


def attach(source: MediaSource, ssrc: int, pt: int = 100) -> tuple[DownTrack, list[bytes]]:
    sent: list[bytes] = []
    dt = DownTrack(
        source,
        ssrc=ssrc,
        payload_type=pt,
        send=sent.append,
        rtx_ssrc=ssrc + 1,
        rtx_payload_type=pt + 1,
    )
    source.attach(dt, 0.0)
    return dt, sent
