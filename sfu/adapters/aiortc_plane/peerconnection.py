"""Peer connections and transceivers: created, closed, and taken over so that aiortc starts
no decoder or encoder (``RTCRtpReceiver.receive`` and ``RTCRtpSender.send`` replaced per
transceiver); the negotiated parameters go to the SFU instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters

from ...forwarding.track import StreamParameters
from .codecs import codec_preferences


class _NoTransport:
    """Stands in for the transport of a transceiver that was left without one."""

    def __init__(self) -> None:
        self.transport = self

    async def stop(self) -> None:
        return None


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """``pc.close()``, also when a description (or a bug) left a transceiver without a
    transport: aiortc 1.16 would raise ``AttributeError`` there and stop nothing after it,
    leaving ICE sockets open."""
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.transport is None:
            transceiver.receiver.setTransport(_NoTransport())
    await pc.close()


def create_peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN/TURN server (host candidates only), max-bundle.

    max-bundle matters: with aiortc's default (balanced) policy a transceiver added in a
    later offer shares the transport of an earlier one of its kind, is marked bundled, and
    keeps that transport when BUNDLE discards it: its media is never sent.
    """
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


def dtls_transport_of(pc: RTCPeerConnection) -> RTCDtlsTransport | None:
    for transceiver in pc.getTransceivers():
        return transceiver.receiver.transport  # BUNDLE: one transport for all
    return None


def stream_parameters_from_receive(
    kind: str, params: RTCRtpReceiveParameters
) -> StreamParameters | None:
    """What the SFU needs of a publisher's negotiated stream."""
    if not params.codecs or not params.encodings:
        return None
    codec = params.codecs[0]
    encoding = next((e for e in params.encodings if e.payloadType == codec.payloadType), None)
    if encoding is None or encoding.ssrc is None or codec.payloadType is None:
        return None
    rtx_pt = next(
        (
            c.payloadType
            for c in params.codecs
            if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == codec.payloadType
        ),
        None,
    )
    return StreamParameters(
        kind=kind,
        mime_type=codec.mimeType,
        clock_rate=codec.clockRate,
        payload_type=codec.payloadType,
        ssrc=encoding.ssrc,
        rtx_payload_type=rtx_pt,
        rtx_ssrc=encoding.rtx.ssrc if encoding.rtx is not None and rtx_pt is not None else None,
        extensions={e.uri: e.id for e in params.headerExtensions},
        parameters=dict(codec.parameters),
    )


@dataclass
class SendBinding:
    """What a subscriber's sender negotiated."""

    ssrc: int
    payload_type: int
    rtx_ssrc: int | None
    rtx_payload_type: int | None
    extensions: dict[str, int]
    cname: str | None


def take_over_receiver(
    receiver: RTCRtpReceiver,
    on_receive: Callable[[RTCRtpReceiveParameters], None],
) -> None:
    """Replace ``receiver.receive`` so that aiortc starts no decoder thread and no RTCP
    task: the SFU receives this stream's packets raw through the transport sink."""
    started = False

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        nonlocal started
        if not started:
            started = True
            on_receive(parameters)

    async def stop() -> None:
        return None

    receiver.receive = receive  # type: ignore[method-assign]
    receiver.stop = stop  # type: ignore[method-assign]


def take_over_sender(sender: RTCRtpSender, on_send: Callable[[SendBinding], None]) -> None:
    """Replace ``sender.send`` so that aiortc starts no encoder loop and no RTCP task: the
    SFU writes this sender's RTP itself, with the sender's SSRCs."""
    started = False

    async def send(parameters: RTCRtpSendParameters) -> None:
        nonlocal started
        if started:
            return
        started = True
        codec = parameters.codecs[0]
        assert codec.payloadType is not None
        rtx_pt = next(
            (
                c.payloadType
                for c in parameters.codecs
                if c.mimeType.lower().endswith("/rtx")
                and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        on_send(
            SendBinding(
                ssrc=sender._ssrc,
                payload_type=codec.payloadType,
                rtx_ssrc=sender._rtx_ssrc if rtx_pt is not None else None,
                rtx_payload_type=rtx_pt,
                extensions={e.uri: e.id for e in parameters.headerExtensions},
                cname=parameters.rtcp.cname,
            )
        )

    async def stop() -> None:
        return None

    sender.send = send  # type: ignore[method-assign]
    sender.stop = stop  # type: ignore[method-assign]


def add_send_transceiver(
    pc: RTCPeerConnection,
    kind: str,
    mime_type: str,
    parameters: dict[str, Any],
    stream_id: str,
    track_id: str,
    on_send: Callable[[SendBinding], None],
) -> RTCRtpTransceiver:
    transceiver = pc.addTransceiver(kind, direction="sendonly")
    transceiver.setCodecPreferences(codec_preferences(kind, mime_type, parameters))
    sender = transceiver.sender
    sender._stream_id = stream_id  # becomes the a=msid of the m-line
    sender._track_id = track_id
    take_over_sender(sender, on_send)
    return transceiver
