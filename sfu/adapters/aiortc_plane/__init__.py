"""aiortc as a forwarding plane.

This is the ONLY module of the project that reaches into aiortc's and aioice's internals.
aiortc is built as an endpoint: it decodes what it receives and encodes what it sends.  An
SFU needs its ICE, DTLS, SRTP and SDP machinery but none of its media pipeline, so this
module:

* registers the codecs and header extensions an SFU negotiates (VP9 profile 0, AV1, the
  dependency descriptor, ...) in aiortc's module-level tables, widens the payload types it
  accepts as "dynamic" to 35-63 (Chromium offers AV1 as 45 with RTX 46), and makes codec
  matching look at the VP9/AV1 profile;
* hooks :class:`aiortc.rtcdtlstransport.RTCDtlsTransport` so that the decrypted RTP and
  RTCP of a transport the SFU owns go, raw and synchronously, to a sink object instead of
  aiortc's parser, jitter buffer and decoder;
* replaces, per transceiver, ``RTCRtpReceiver.receive`` and ``RTCRtpSender.send`` so that no
  decoder thread or encoder loop is started: the negotiated parameters are handed to the SFU;
* sends RTP/RTCP synchronously: SRTP protect, then ``sendto`` on the nominated ICE pair's
  socket, with no task or await in between;
* controls which host candidates aioice gathers (aioice leaves 127.0.0.1 out), on which
  UDP ports, and which address is announced;
* notes when the remote last sent an authenticated ICE connectivity check, a sign of life
  that does not depend on media, and sends one itself to a remote that has gone quiet (the
  SFU's peer timeout uses both);
* restarts ICE in place (:class:`IceRestarter`), which aiortc does not do: new local
  credentials, a fresh check list on the same sockets, while DTLS, SRTP, the transceivers and
  the sink stay as they are.

It is pinned to the versions below; ``check_versions`` (called by :func:`install`) refuses
other versions and ``tests/test_aiortc_plane.py`` fails loudly if the internals it relies on
move.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aioice.candidate
import aioice.ice
import aioice.stun
import aioice.utils
import aiortc.codecs
import aiortc.rtcpeerconnection
import aiortc.rtp
import aiortc.sdp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcicetransport import RTCIceCandidate, RTCIceTransport, candidate_to_aioice
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)

from ... import faults
from ...forwarding.track import StreamParameters
from ...rtp import extensions as ext
from ...sdp import limits as sdp_limits
from ...sdp.limits import Candidate, SdpLimits, check_candidates, check_sdp

logger = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"

#: payload types we accept from a remote offer as they are (RFC 3551 leaves 35-63 unassigned,
#: and browsers use them once 96-127 are exhausted)
DYNAMIC_PAYLOAD_TYPES = frozenset(range(35, 64)) | frozenset(range(96, 128))

VIDEO_FEEDBACK = [
    RTCRtcpFeedback(type="nack"),
    RTCRtcpFeedback(type="nack", parameter="pli"),
    RTCRtcpFeedback(type="goog-remb"),
    RTCRtcpFeedback(type="transport-cc"),
]

_installed = False


def check_versions() -> None:
    for package, wanted in (("aiortc", AIORTC_VERSION), ("aioice", AIOICE_VERSION)):
        found = importlib.metadata.version(package)
        if found != wanted:
            raise RuntimeError(
                f"sfu.adapters.aiortc_plane is written against {package} {wanted}, "
                f"found {found}: review the adapter before changing the pin"
            )


# --------------------------------------------------------------------------------------
# ICE host candidates


@dataclass
class IceOptions:
    #: addresses to gather host candidates on (127.0.0.1 included if listed)
    listen_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    #: address written in the candidates instead of the bound one (1:1 NAT)
    announced_address: str | None = None
    #: inclusive UDP port range for the host candidates, or None for any port
    port_range: tuple[int, int] | None = None


_ice_options = IceOptions()
_next_port = 0


def configure_ice(options: IceOptions) -> None:
    global _ice_options
    _ice_options = options


def _bind_udp(address: str) -> socket.socket:
    """A UDP socket bound to ``address`` within the configured port range."""
    global _next_port
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    port_range = _ice_options.port_range
    if port_range is None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        return sock
    low, high = port_range
    count = high - low + 1
    for i in range(count):
        port = low + (_next_port + i) % count
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        _next_port = (port - low + 1) % count
        return sock
    raise OSError(f"no free UDP port in {low}-{high} on {address}")


async def _get_component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: int = 5
) -> list[aioice.Candidate]:
    """Replaces ``aioice.ice.Connection.get_component_candidates``: host candidates only
    (the SFU has a reachable address and uses no STUN/TURN), on the configured addresses,
    ports and announced address."""
    loop = asyncio.get_running_loop()
    candidates = []
    for address in _ice_options.listen_addresses:
        try:
            sock = _bind_udp(address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(self), sock=sock
            )
        except OSError as exc:
            logger.warning("ICE: cannot bind to %s: %s", address, exc)
            continue
        bound = protocol.transport.get_extra_info("sockname")
        host = _ice_options.announced_address or bound[0]
        protocol.local_candidate = aioice.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", bound[0]),
            component=component,
            transport="udp",
            priority=aioice.candidate.candidate_priority(component, "host"),
            host=host,
            port=bound[1],
            type="host",
        )
        self._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    return candidates


# --------------------------------------------------------------------------------------
# codecs, header extensions and SDP


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


def install(ice: IceOptions | None = None) -> None:
    """Turn aiortc into a forwarding plane (idempotent)."""
    global _installed
    if ice is not None:
        configure_ice(ice)
    if _installed:
        return
    check_versions()

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

    # raw RTP/RTCP delivery to the SFU's sink
    original_rtp = RTCDtlsTransport._handle_rtp_data
    original_rtcp = RTCDtlsTransport._handle_rtcp_data

    async def _handle_rtp_data(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        sink: TransportSink | None = getattr(self, "_sfu_sink", None)
        if sink is None:
            await original_rtp(self, data, arrival_time_ms)
            return
        now = time.monotonic()
        try:
            sink.on_rtp(data, now)
        except Exception:  # one bad packet or peer must never stop the transport
            faults.record("rtp", repr(sink), now)

    async def _handle_rtcp_data(self: RTCDtlsTransport, data: bytes) -> None:
        sink: TransportSink | None = getattr(self, "_sfu_sink", None)
        if sink is None:
            await original_rtcp(self, data)
            return
        now = time.monotonic()
        try:
            sink.on_rtcp(data, now)
        except Exception:
            faults.record("rtcp", repr(sink), now)

    # liveness: when the remote last sent an (authenticated) ICE connectivity check
    original_check_incoming = aioice.ice.Connection.check_incoming

    def _check_incoming(
        self: aioice.ice.Connection,
        message: Any,
        addr: tuple[str, int],
        protocol: aioice.ice.StunProtocol,
    ) -> None:
        self._sfu_checked_at = time.monotonic()  # type: ignore[attr-defined]
        original_check_incoming(self, message, addr, protocol)

    RTCDtlsTransport._handle_rtp_data = _handle_rtp_data  # type: ignore[method-assign]
    RTCDtlsTransport._handle_rtcp_data = _handle_rtcp_data  # type: ignore[method-assign]
    aioice.ice.Connection.check_incoming = _check_incoming  # type: ignore[method-assign]
    aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]
    _installed = True


_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/]+)/")


def munge_sdp(sdp: str, start_bitrate_kbps: int | None = None) -> str:
    """Adds what aiortc's SDP writer cannot express.

    * ``a=extmap-allow-mixed`` at session level: without it Chromium negotiates the
      dependency descriptor but never sends it (it needs the two-byte header form);
    * ``x-google-start-bitrate`` on video codecs, so Chromium sends every spatial layer from
      the first second instead of ramping up for 15-30 s.
    """
    lines = sdp.rstrip("\r\n").split("\r\n")
    out: list[str] = []
    video_pts: list[str] = []
    fmtp_seen: set[str] = set()
    section: list[str] = []

    def flush(section: list[str]) -> None:
        if not section:
            return
        if section[0].startswith("m=video") and start_bitrate_kbps:
            for line in section:
                m = _RTPMAP.match(line)
                if m and m.group(2).lower() not in ("rtx", "red", "ulpfec", "flexfec-03"):
                    video_pts.append(m.group(1))
            for i, line in enumerate(section):
                m = _FMTP.match(line)
                if m and m.group(1) in video_pts:
                    fmtp_seen.add(m.group(1))
                    if "x-google-start-bitrate" not in line:
                        section[i] = f"{line};x-google-start-bitrate={start_bitrate_kbps}"
            for pt in video_pts:
                if pt not in fmtp_seen:
                    idx = max(i for i, ln in enumerate(section) if ln.startswith(f"a=rtpmap:{pt} "))
                    section.insert(
                        idx + 1, f"a=fmtp:{pt} x-google-start-bitrate={start_bitrate_kbps}"
                    )
            video_pts.clear()
            fmtp_seen.clear()
        out.extend(section)

    in_session = True
    for line in lines:
        if line.startswith("m="):
            if in_session:
                in_session = False
                if "a=extmap-allow-mixed" not in out:
                    out.append("a=extmap-allow-mixed")
            else:
                flush(section)
            section = [line]
        elif in_session:
            out.append(line)
        else:
            section.append(line)
    flush(section)
    if in_session and "a=extmap-allow-mixed" not in out:
        out.append("a=extmap-allow-mixed")
    return "\r\n".join(out) + "\r\n"


def _parse_remote_description(sdp: str) -> aiortc.sdp.SessionDescription:
    """Parse a peer's SDP, refusing what would leave aiortc in a broken state.

    A BUNDLE group naming a mid that no m-section has makes aiortc 1.16 give the bundled
    transceivers no transport at all (``None``): answering then fails, and so does
    ``RTCPeerConnection.close()``, before it stops the other transports.
    """
    try:
        description = aiortc.sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises assorted errors on garbage
        raise ValueError(f"unparsable SDP: {exc}") from exc
    mids = [media.rtp.muxId for media in description.media]
    if len(set(mids)) != len(mids):
        raise ValueError(f"m-sections share a mid: {mids}")
    for group in description.group:
        if group.semantic == "BUNDLE":
            unknown = [mid for mid in group.items if mid not in mids]
            if unknown:
                raise ValueError(f"BUNDLE names mids without an m-section: {unknown}")
    return description


def _known_candidates(pc: RTCPeerConnection | None, ufrag: str | None) -> frozenset[Candidate]:
    """The remote candidates the peer connection's (bundled) ICE transport holds, as
    :mod:`sfu.sdp.limits` counts them; none if a description with ``ufrag``
    restarts ICE (the restart drops them)."""
    dtls = dtls_transport_of(pc) if pc is not None else None
    if dtls is None:
        return frozenset()
    connection = dtls.transport._connection
    if connection.remote_username is not None and connection.remote_username != ufrag:
        return frozenset()
    return frozenset(
        (c.host.lower(), str(c.port))
        for c in connection._remote_candidates
        if c.transport.lower() == "udp"
    )


def check_publish_offer(
    sdp: str, limits: SdpLimits | None = None, pc: RTCPeerConnection | None = None
) -> None:
    """Refuse offers the SFU cannot use, with a reason (raises ``ValueError``): over the
    bounds (``limits``: size, m-lines, and candidates with those ``pc`` was given before,
    checked on the text before aiortc sees it), or unusable."""
    limits = limits or SdpLimits()
    counts = check_sdp(sdp, limits, "offer")
    check_candidates(counts, limits, "offer", _known_candidates(pc, counts.ice_ufrag))
    description = _parse_remote_description(sdp)
    kinds = [media.kind for media in description.media]
    if not any(kind in ("audio", "video") for kind in kinds):
        raise ValueError("the offer has no audio or video section")
    if any(kind not in ("audio", "video") for kind in kinds):
        raise ValueError(f"unsupported media sections: {kinds}")


def check_subscribe_answer(
    sdp: str, limits: SdpLimits | None = None, pc: RTCPeerConnection | None = None
) -> None:
    """Refuse answers that would break the subscriber's connection, or are over the bounds
    (raises ``ValueError``): no more m-lines than ``pc``'s offer, at most twice its size
    (or ``limits.max_bytes``), and the candidate bound as for offers."""
    limits = limits or SdpLimits()
    offer = pc.localDescription if pc is not None else None
    max_bytes = max_m_lines = None
    if offer is not None:
        offered = sdp_limits.count(offer.sdp)
        max_bytes = max(limits.max_bytes, 2 * offered.size)
        max_m_lines = offered.m_lines
    counts = check_sdp(sdp, limits, "answer", max_bytes=max_bytes, max_m_lines=max_m_lines)
    check_candidates(counts, limits, "answer", _known_candidates(pc, counts.ice_ufrag))
    _parse_remote_description(sdp)


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


# --------------------------------------------------------------------------------------
# raw media plane


class TransportSink(Protocol):
    def on_rtp(self, data: bytes, now: float) -> None: ...

    def on_rtcp(self, data: bytes, now: float) -> None: ...


#: attribute of an aioice Connection: the pair selected before an ICE restart, which carries
#: what we send until the restart nominates a new pair
_FALLBACK = "_sfu_fallback_pair"


class RawTransport:
    """Synchronous SRTP send on a connected DTLS transport, and the raw receive hook."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.packets_sent = 0
        self.bytes_sent = 0
        self.send_errors = 0
        #: connectivity checks sent by :meth:`probe`, and answered
        self.probes_sent = 0
        self.probes_answered = 0
        self._probe: asyncio.Task[None] | None = None

    def attach_sink(self, sink: TransportSink) -> None:
        self.dtls._sfu_sink = sink  # type: ignore[attr-defined]  # read by the hooks

    def detach_sink(self) -> None:
        self.dtls._sfu_sink = None  # type: ignore[attr-defined]

    @property
    def checked_at(self) -> float:
        """When the remote's last authenticated ICE connectivity check (consent freshness,
        RFC 7675), or answer to :meth:`probe`, arrived (``time.monotonic()``), or 0."""
        connection = self.dtls.transport._connection
        return float(getattr(connection, "_sfu_checked_at", 0.0))

    def probe(self) -> None:
        """Send the remote an ICE connectivity check (a STUN binding request on the nominated
        pair, as consent freshness does, without retransmission); an authenticated answer
        counts as a check received (:attr:`checked_at`). Any ICE agent answers at once, so a
        client that sends nothing else (no media to acknowledge, no RTCP) is still heard.
        One probe at a time."""
        if self._probe is not None and not self._probe.done():
            return
        connection = self.dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None or connection.remote_password is None:
            return
        request = connection.build_request(pair, nominate=False)
        key = connection.remote_password.encode("utf8")
        self.probes_sent += 1

        async def run() -> None:
            try:
                await pair.protocol.request(
                    request, pair.remote_addr, integrity_key=key, retransmissions=0
                )
            except (aioice.stun.TransactionError, OSError, AttributeError, AssertionError):
                return  # no answer (or the connection is closing): the timeout decides
            self.probes_answered += 1
            connection._sfu_checked_at = time.monotonic()  # type: ignore[attr-defined]

        self._probe = asyncio.ensure_future(run())

    def stop_probing(self) -> None:
        if self._probe is not None:
            self._probe.cancel()

    @property
    def connected(self) -> bool:
        return bool(self.dtls._state == State.CONNECTED)

    def send_rtp(self, data: bytes) -> None:
        dtls = self.dtls
        if dtls._state != State.CONNECTED:
            return
        connection = dtls.transport._connection
        pair = connection._nominated.get(1) or getattr(connection, _FALLBACK, None)
        if pair is None:
            return
        packet = dtls._tx_srtp.protect(data)
        try:
            pair.protocol.transport.sendto(packet, pair.remote_addr)
        except (OSError, AttributeError):
            self.send_errors += 1
            return
        self.packets_sent += 1
        self.bytes_sent += len(packet)

    def send_rtcp(self, data: bytes) -> None:
        dtls = self.dtls
        if dtls._state != State.CONNECTED:
            return
        connection = dtls.transport._connection
        pair = connection._nominated.get(1) or getattr(connection, _FALLBACK, None)
        if pair is None:
            return
        try:
            pair.protocol.transport.sendto(dtls._tx_srtp.protect_rtcp(data), pair.remote_addr)
        except (OSError, AttributeError):
            self.send_errors += 1


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


def dtls_transport_of(pc: RTCPeerConnection) -> RTCDtlsTransport | None:
    for transceiver in pc.getTransceivers():
        return transceiver.receiver.transport  # BUNDLE: one transport for all
    return None


# --------------------------------------------------------------------------------------
# ICE restart
#
# What aiortc 1.16 does with a re-offer (or answer) carrying a new ice-ufrag/ice-pwd:
# ``setRemoteDescription`` stores the new credentials in ``__remoteIce`` but nothing reads
# them again: ``RTCIceTransport.start`` returns at once when it has run before, so the aioice
# Connection keeps the old remote credentials and its finished check list; the new candidates
# are dropped (after an ``a=end-of-candidates``) or paired but never checked; and the answer
# repeats the old local ufrag/pwd.  Chromium then runs its new checks against credentials we
# reject (401) and stays on the pre-restart pair as long as that pair works: no restart.
#
# ``IceRestarter`` restarts the one (BUNDLE) ICE transport of a peer connection in place:
# new local credentials, the remote ones from the new SDP, a fresh check list over the same
# host sockets, and ``Connection.connect()`` run again (consent freshness restarts with it).
# The RTCIceTransport, the RTCDtlsTransport and its SRTP sessions, the transceivers and the
# SFU's sink are untouched, so published streams keep their SSRCs and MediaSources and
# nobody downstream renegotiates.  During the checks, what we send goes on the pre-restart
# pair, and what arrives on any pair is received.  A restart that does not nominate a pair
# within ``ICE_RESTART_TIMEOUT`` closes the connection (the peer connection fails).

#: seconds an ICE restart may take, from our new credentials to a nominated pair
ICE_RESTART_TIMEOUT = 20.0


@dataclass(frozen=True)
class RemoteIce:
    """The ICE parameters of a remote SDP (its first media section: we bundle)."""

    ufrag: str
    pwd: str
    candidates: list[RTCIceCandidate]
    complete: bool


def remote_ice(sdp: str) -> RemoteIce | None:
    try:
        description = aiortc.sdp.SessionDescription.parse(sdp)
    except Exception:
        return None
    for media in description.media:
        if media.ice is not None and media.ice.usernameFragment and media.ice.password:
            return RemoteIce(
                media.ice.usernameFragment,
                media.ice.password,
                list(media.ice_candidates),
                bool(media.ice_candidates_complete),
            )
    return None


class IceRestarter:
    """ICE restarts of one peer connection (see above)."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        #: restarts that nominated a new pair
        self.restarts = 0
        #: a restart failed (and closed the connection)
        self.failed = False
        self._task: asyncio.Task[None] | None = None
        self._remote: asyncio.Future[RemoteIce] | None = None

    def _ice(self) -> RTCIceTransport | None:
        dtls = dtls_transport_of(self.pc)
        return dtls.transport if dtls is not None else None

    @property
    def connected(self) -> bool:
        """ICE has completed once and the transport is not closed or failed."""
        ice = self._ice()
        return ice is not None and ice.state == "completed"

    @property
    def restarting(self) -> bool:
        return self._task is not None and not self._task.done()

    def local_ufrag(self) -> str | None:
        ice = self._ice()
        return ice._connection.local_username if ice is not None else None

    def is_restart(self, remote: RemoteIce | None) -> bool:
        """Whether a remote offer restarts ICE (new credentials); ``ValueError`` if it does
        before ICE ever completed (nothing to keep yet: the client should start over)."""
        ice = self._ice()
        if remote is None or ice is None:
            return False
        connection = ice._connection
        if connection.remote_username is None:
            return False  # the first offer, or our own restart waiting for the answer
        changed = (remote.ufrag, remote.pwd) != (
            connection.remote_username,
            connection.remote_password,
        )
        if changed and ice.state != "completed":
            raise ValueError(f"ICE restart while ICE is {ice.state}")
        return changed

    async def begin(self, remote: RemoteIce | None = None) -> None:
        """New local credentials (the next local SDP carries them) and a fresh check list;
        the checks start once the remote credentials are known: now, or at ``set_remote``."""
        ice = self._ice()
        if ice is None or ice.state != "completed":
            raise ValueError("ICE has not completed: there is nothing to restart")
        await self._cancel_checks()
        connection = ice._connection
        _detach_from_nomination(ice)
        previous = connection._nominated.get(1) or getattr(connection, _FALLBACK, None)
        setattr(connection, _FALLBACK, previous)
        consent = connection._query_consent_task
        if consent is not None and not consent.done():
            consent.cancel()
        connection._query_consent_task = None
        for pair in connection._check_list:
            if pair.task is not None:
                pair.task.cancel()
        connection._local_username = aioice.utils.random_string(4)
        connection._local_password = aioice.utils.random_string(22)
        connection.remote_username = None
        connection.remote_password = None
        connection._check_list = []
        connection._check_list_done = False
        connection._check_list_state = asyncio.Queue()
        connection._early_checks.clear()
        connection._early_checks_done = False
        connection._nominated.clear()
        connection._nominating.clear()
        connection._remote_candidates = []
        connection._remote_candidates_end = False
        # aiortc adds no candidates from now on: we add the restart's, from its SDP
        ice.iceGatherer._remote_candidates_end = True
        self._remote = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._run(ice, self._remote))
        if remote is not None:
            await self.set_remote(remote)

    async def set_remote(self, remote: RemoteIce) -> None:
        """The remote side's new credentials and candidates (from its offer or answer)."""
        ice = self._ice()
        if self._remote is None or self._remote.done() or ice is None:
            return
        connection = ice._connection
        connection.remote_username = remote.ufrag
        connection.remote_password = remote.pwd
        for candidate in remote.candidates:
            await connection.add_remote_candidate(candidate_to_aioice(candidate))
        if remote.complete:
            await connection.add_remote_candidate(None)
        self._remote.set_result(remote)

    async def _run(self, ice: RTCIceTransport, remote: asyncio.Future[RemoteIce]) -> None:
        connection = ice._connection
        try:
            async with asyncio.timeout(ICE_RESTART_TIMEOUT):
                await remote
                await connection.connect()
        except (TimeoutError, ConnectionError) as exc:
            reason = str(exc) or type(exc).__name__
            logger.warning("ICE restart failed (%s): closing the connection", reason)
            self.failed = True
            setattr(connection, _FALLBACK, None)
            await connection.close()  # RTCIceTransport goes "failed"
            return
        setattr(connection, _FALLBACK, None)
        connection._sfu_checked_at = time.monotonic()  # type: ignore[attr-defined]  # alive
        self.restarts += 1
        logger.info("ICE restart: nominated %s", connection._nominated.get(1))

    async def close(self) -> None:
        await self._cancel_checks()

    async def _cancel_checks(self) -> None:
        """Stop the restart's connectivity checks, if running, and wait until they have."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def _detach_from_nomination(ice: RTCIceTransport) -> None:
    """Make the DTLS transport's receive and send independent of ``Connection._nominated``,
    which a restart empties until it nominates again: aioice's ``recv`` raises (and DTLS
    closes) when no pair is nominated, even though datagrams keep arriving."""
    if getattr(ice, "_sfu_detached", False):
        return
    connection = ice._connection

    async def recv() -> bytes:
        item = await connection._queue.get()
        if item is None:
            raise ConnectionError("Connection lost while receiving data")
        data: bytes = item[0]
        return data

    async def send(data: bytes) -> None:
        pair = connection._nominated.get(1) or getattr(connection, _FALLBACK, None)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        await pair.protocol.send_data(data, pair.remote_addr)

    ice._recv = recv
    ice._send = send
    ice._sfu_detached = True  # type: ignore[attr-defined]
