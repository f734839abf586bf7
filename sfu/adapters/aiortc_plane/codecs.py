"""Codecs and header extensions: what aiortc's tables offer and accept, and the codecs of
a transceiver.

:func:`register_codecs` edits aiortc's module-level tables (``aiortc.codecs.CODECS`` and
``HEADER_EXTENSIONS``, ``aiortc.rtp.DYNAMIC_PAYLOAD_TYPES``) and replaces
``aiortc.rtcpeerconnection.is_codec_compatible``; the transceiver helpers set or filter
``RTCRtpTransceiver._codecs`` and ``_headerExtensions``.
"""

from __future__ import annotations

from typing import Any

import aiortc.codecs
import aiortc.rtcpeerconnection
import aiortc.rtp
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)

from ...rtp import extensions as ext

#: payload types we accept from a remote offer as they are (RFC 3551 leaves 35-63 unassigned,
#: and browsers use them once 96-127 are exhausted)
DYNAMIC_PAYLOAD_TYPES = frozenset(range(35, 64)) | frozenset(range(96, 128))

VIDEO_FEEDBACK = [
    RTCRtcpFeedback(type="nack"),
    RTCRtcpFeedback(type="nack", parameter="pli"),
    RTCRtcpFeedback(type="goog-remb"),
    RTCRtcpFeedback(type="transport-cc"),
]


def _add_video_codec(mime_type: str, parameters: dict[str, Any]) -> None:
    codecs = aiortc.codecs.CODECS["video"]
    if any(c.mimeType.lower() == mime_type.lower() and c.parameters == parameters for c in codecs):
        return
    used = {c.payloadType for c in codecs} | {c.payloadType for c in aiortc.codecs.CODECS["audio"]}
    pt = next(p for p in range(96, 128) if p not in used and p + 1 not in used)
    codecs.append(
        RTCRtpCodecParameters(
            mimeType=mime_type,
            clockRate=90000,
            payloadType=pt,
            rtcpFeedback=list(VIDEO_FEEDBACK),
            parameters=parameters,
        )
    )
    codecs.append(
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=pt + 1, parameters={"apt": pt}
        )
    )


def _profile(mime_type: str, parameters: Any) -> str:
    name = mime_type.lower()
    if name == "video/vp9":
        return str(parameters.get("profile-id", 0))
    if name == "video/av1":
        return str(parameters.get("profile", 0))
    return ""


def _codec_profile(codec: RTCRtpCodecParameters) -> str:
    return _profile(codec.mimeType, codec.parameters)


_aiortc_is_codec_compatible = aiortc.rtcpeerconnection.is_codec_compatible


def _is_codec_compatible(a: RTCRtpCodecParameters, b: RTCRtpCodecParameters) -> bool:
    """aiortc's codec matching plus the VP9 ``profile-id`` and AV1 ``profile``: we forward
    what we receive, so a subscriber must be able to decode exactly that profile."""
    if not _aiortc_is_codec_compatible(a, b):
        return False
    return _codec_profile(a) == _codec_profile(b)


def _header_extensions() -> dict[str, list[RTCRtpHeaderExtensionParameters]]:
    ids = ext.SUBSCRIBER_EXTENSION_IDS
    # transport-wide-cc: the SFU generates feedback for publishers and runs a send-side
    # estimator on it for subscribers (Chromium's estimate collapses if nobody answers)
    audio = [ext.MID, ext.AUDIO_LEVEL, ext.TRANSPORT_WIDE_CC]
    video = [
        ext.MID,
        ext.ABS_SEND_TIME,
        ext.DEPENDENCY_DESCRIPTOR,
        ext.VIDEO_LAYERS_ALLOCATION,
        ext.TRANSPORT_WIDE_CC,
    ]
    # VLA is accepted from publishers (answer side keeps their ids); it needs an id for
    # our own offers too, though we never send it to subscribers.
    all_ids = dict(ids)
    all_ids.setdefault(ext.VIDEO_LAYERS_ALLOCATION, 6)
    return {
        "audio": [RTCRtpHeaderExtensionParameters(id=all_ids[u], uri=u) for u in audio],
        "video": [RTCRtpHeaderExtensionParameters(id=all_ids[u], uri=u) for u in video],
    }


def register_codecs() -> None:
    """Make aiortc negotiate what the SFU forwards (idempotent)."""
    # codecs: keep aiortc's VP8/H264/Opus, add VP9 profile 0 and AV1, all with RTX + feedback
    _add_video_codec("video/VP9", {"profile-id": "0"})
    _add_video_codec("video/AV1", {"level-idx": "5", "profile": "0", "tier": "0"})
    for codec in aiortc.codecs.CODECS["video"]:
        if codec.mimeType.lower() != "video/rtx":
            codec.rtcpFeedback = list(VIDEO_FEEDBACK)
    for codec in aiortc.codecs.CODECS["audio"]:
        codec.rtcpFeedback = [RTCRtcpFeedback(type="transport-cc")]
    aiortc.codecs.HEADER_EXTENSIONS.clear()
    aiortc.codecs.HEADER_EXTENSIONS.update(_header_extensions())
    aiortc.rtp.DYNAMIC_PAYLOAD_TYPES = DYNAMIC_PAYLOAD_TYPES  # type: ignore[assignment]
    aiortc.rtcpeerconnection.is_codec_compatible = _is_codec_compatible


def codec_preferences(kind: str, mime_type: str, parameters: dict[str, Any]) -> list[Any]:
    """The capability list that makes a transceiver offer exactly one codec (and RTX)."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    profile = _profile(mime_type, parameters)
    chosen = [
        c
        for c in caps
        if c.mimeType.lower() == mime_type.lower() and _profile(c.mimeType, c.parameters) == profile
    ][:1]
    if not chosen:
        raise ValueError(f"codec {mime_type} {parameters} is not registered")
    if kind == "video":
        chosen += [c for c in caps if c.mimeType.lower() == "video/rtx"]
    return chosen


def video_codec_preferences(names: list[str]) -> list[Any]:
    """Video capabilities for the codecs named (VP9 profile 0 only), in that order, + RTX."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = []
    for name in names:
        for c in caps:
            if c.mimeType.lower() == f"video/{name.lower()}" and _profile(
                c.mimeType, c.parameters
            ) in ("", "0"):
                chosen.append(c)
    if not chosen:
        raise ValueError(f"none of the codecs {names} is registered")
    return chosen + [c for c in caps if c.mimeType.lower() == "video/rtx"]


def restrict_answer_codecs(transceiver: RTCRtpTransceiver, names: list[str]) -> None:
    """Keep, in the answer about to be created, only the video codecs named, in that order.

    aiortc applies codec preferences when the remote offer is set, before the transceiver
    exists for us to configure, so the negotiated list is filtered here instead."""
    prefs = video_codec_preferences(names)
    kept = aiortc.rtcpeerconnection.filter_preferred_codecs(transceiver._codecs, prefs)
    if not any(c.mimeType.lower() != "video/rtx" for c in kept):
        raise ValueError(f"the offer has none of the allowed video codecs {names}")
    transceiver._codecs = kept


def drop_transport_cc(transceiver: RTCRtpTransceiver) -> None:
    """Answer without transport-wide-cc (header extension and feedback): the publisher then
    estimates from REMB and losses.  Like ``restrict_answer_codecs``, it edits what aiortc
    computed when the offer was applied."""
    transceiver._headerExtensions = [
        e for e in transceiver._headerExtensions if e.uri != ext.TRANSPORT_WIDE_CC
    ]
    for codec in transceiver._codecs:
        codec.rtcpFeedback = [f for f in codec.rtcpFeedback if f.type != "transport-cc"]
