"""The synchronous receive path: SRTP/SRTCP unprotected and handed to the sink in the
datagram's own callback.

aiortc receives a datagram in four hops: aioice's ``StunProtocol.datagram_received`` tries
to parse it as STUN (``ValueError`` for RTP), ``Connection.data_received`` puts it on an
``asyncio.Queue``, the DTLS transport's task wakes in ``RTCDtlsTransport._recv_next``,
unprotects it (``pylibsrtp.Session.unprotect`` allocates a C ``int`` per call) and awaits
``_handle_rtp_data``/``_handle_rtcp_data``: a queue hand-off, a task wake-up and several
coroutine frames per packet.

Here ``StunProtocol.datagram_received`` is wrapped (:func:`hook_receive`): a datagram whose
first byte is 128-191 (RTP or RTCP, RFC 7983) on a connection that has a :class:`Receiver`
(set by ``RawTransport.attach_sink``: the transport has a sink) whose DTLS transport is
connected (its receiving SRTP session exists) is unprotected there and then
(:class:`~.srtp.Unprotector`, byte-identical to ``Session.unprotect``/``unprotect_rtcp``)
and given to ``sink.on_rtp``/``sink.on_rtcp``.  Everything else (STUN, DTLS, SRTP before the
handshake ends, transports without a sink) takes aiortc's path unchanged.  The receiver
hangs on the aioice ``Connection``, whose protocols all answer to it, so it follows every
pair, ICE restarts included (they keep the Connection and its sockets).

Before SRTP or SRTCP is unprotected, a token bucket per transport bounds the RTP datagrams
(:data:`RTP_PER_SECOND`, :data:`RTP_BURST`) and another the RTCP datagrams taken
(:data:`RTCP_PER_SECOND`, :data:`RTCP_BURST`): a flooding peer costs a comparison per
excess datagram, not an HMAC or an AES-GCM pass and the SFU's parsing.

aiortc's receive counters (``RTCDtlsTransport.__rx_bytes``/``__rx_packets``, read only by
``_get_stats``, i.e. ``RTCPeerConnection.getStats()``) do not count what takes this path:
nothing in the project calls ``getStats()`` on its aiortc peers.  ``SFU_FAST_RECEIVE=0``
in the environment leaves the path off (aiortc's, through the transport hooks), to compare.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aioice.ice
import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport, State

from ... import faults
from .batch import BATCHES
from .srtp import Unprotector

if TYPE_CHECKING:
    from .transport import TransportSink

#: RTCP datagrams taken per second per transport, on average (beyond, they are dropped
#: before SRTCP and counted).  A browser sends a few tens a second (receiver reports, one
#: transport-wide feedback every 50-100 ms, NACKs, PLIs); 32 subscribers send the SFU about
#: 1000 a second in all.
RTCP_PER_SECOND = 500.0
#: ... and at once, after a quiet spell
RTCP_BURST = 100.0

#: RTP datagrams taken per second per transport, on average (beyond, dropped before SRTP and
#: counted).  The 720p L3T3 stream is ~270 a second, a 1080p one with retransmissions well
#: under 1000; a subscriber sends none.
RTP_PER_SECOND = 5000.0
#: ... and at once (a keyframe of a large picture, after a quiet spell)
RTP_BURST = 2500.0


class DatagramBucket:
    """``rate`` datagrams a second on average, ``burst`` at once."""

    __slots__ = ("rate", "burst", "tokens", "filled_at", "refused")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.filled_at = 0.0
        #: datagrams refused beyond the rate
        self.refused = 0

    def take(self, now: float) -> bool:
        tokens = self.tokens + (now - self.filled_at) * self.rate
        self.filled_at = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            self.tokens = tokens
            self.refused += 1
            return False
        self.tokens = tokens - 1.0
        return True


#: attribute of an aioice Connection: the pair selected before an ICE restart, which carries
#: what we send until the restart nominates a new pair
FALLBACK_PAIR = "_sfu_fallback_pair"

#: (read per packet: an enum member's lookup costs a dict walk each time)
_CONNECTED = State.CONNECTED


def enabled_by_default() -> bool:
    """Whether the path is on (``SFU_FAST_RECEIVE=0`` turns it off)."""
    return os.environ.get("SFU_FAST_RECEIVE", "1") != "0"


#: whether ``RawTransport.attach_sink`` routes its transport through a :class:`Receiver`
ENABLED = enabled_by_default()


class Receiver:
    """The synchronous receive path of one DTLS transport (see above); ``receiver(data)``
    is True when it took the datagram (delivered, dropped or counted)."""

    __slots__ = (
        "dtls",
        "sink",
        "rtp_bucket",
        "rtcp_bucket",
        "packets_received",
        "unprotect_failures",
        "foreign_datagrams",
        "_unprotector",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.sink: TransportSink | None = None
        self.rtp_bucket = DatagramBucket(RTP_PER_SECOND, RTP_BURST)
        self.rtcp_bucket = DatagramBucket(RTCP_PER_SECOND, RTCP_BURST)
        #: RTP and RTCP datagrams delivered to the sink by this path
        self.packets_received = 0
        #: datagrams SRTP/SRTCP refused (forged, replayed, too long): dropped
        self.unprotect_failures = 0
        #: RTP/RTCP datagrams from an address other than the selected pair's (left to aiortc)
        self.foreign_datagrams = 0
        self._unprotector: Unprotector | None = None

    @property
    def rtp_rate_limited(self) -> int:
        """RTP datagrams beyond the rate: dropped before SRTP."""
        return self.rtp_bucket.refused

    @property
    def rtcp_rate_limited(self) -> int:
        """RTCP datagrams beyond the rate: dropped before SRTCP."""
        return self.rtcp_bucket.refused

    @property
    def rtcp_per_second(self) -> float:
        return self.rtcp_bucket.rate

    @rtcp_per_second.setter
    def rtcp_per_second(self, rate: float) -> None:
        self.rtcp_bucket.rate = rate

    def __call__(self, data: bytes, addr: tuple[Any, ...]) -> bool:
        dtls = self.dtls
        sink = self.sink
        if sink is None or dtls._state is not _CONNECTED:
            return False
        session = dtls._rx_srtp
        if session is None:
            return False
        # only the selected pair's remote takes this path (and spends its RTCP bucket): a
        # datagram from any other address, e.g. a stranger spraying the port to starve the
        # peer's RTCP, goes aiortc's way, where SRTP refuses it
        connection = dtls.transport._connection
        pair = connection._nominated.get(1) or getattr(connection, FALLBACK_PAIR, None)
        if pair is None:
            return False
        remote = pair.remote_addr
        if addr[1] != remote[1] or addr[0] != remote[0]:
            self.foreign_datagrams += 1
            return False
        unprotect = self._unprotector
        if unprotect is None or unprotect.session is not session:
            unprotect = self._unprotector = Unprotector(session)
        now = time.monotonic()
        is_rtcp = len(data) > 1 and 191 < data[1] < 209  # RFC 5761, aiortc's is_rtcp
        if not (self.rtcp_bucket if is_rtcp else self.rtp_bucket).take(now):
            return True
        try:
            packet = unprotect.rtcp(data) if is_rtcp else unprotect.rtp(data)
        except (pylibsrtp.Error, ValueError):
            self.unprotect_failures += 1
            return True
        self.packets_received += 1
        try:
            if is_rtcp:
                sink.on_rtcp(packet, now)
            else:
                sink.on_rtp(packet, now)
        except Exception:  # one bad packet or peer must never stop the transport
            faults.record("rtcp" if is_rtcp else "rtp", repr(sink), now)
        BATCHES.due(now)
        return True


#: attribute of an aioice Connection: its :class:`Receiver`, or None (class default)
RECEIVER = "_sfu_receiver"


def install_receiver(receiver: Receiver) -> None:
    """Route the datagrams of ``receiver``'s transport through it."""
    setattr(receiver.dtls.transport._connection, RECEIVER, receiver)


def remove_receiver(receiver: Receiver) -> None:
    connection = receiver.dtls.transport._connection
    if getattr(connection, RECEIVER, None) is receiver:
        setattr(connection, RECEIVER, None)


def hooked() -> bool:
    return bool(getattr(aioice.ice.StunProtocol, "_sfu_receive_hooked", False))


def hook_receive() -> None:
    """Wrap ``StunProtocol.datagram_received`` (once: call it through ``install``)."""
    if hooked():
        return
    original = aioice.ice.StunProtocol.datagram_received

    def datagram_received(self: aioice.ice.StunProtocol, data: Any, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192:  # RTP or RTCP (RFC 7983)
            receiver = self.receiver._sfu_receiver  # type: ignore[attr-defined]
            if receiver is not None:
                try:
                    if receiver(data, addr):
                        return
                except Exception:  # never into the loop's transport: it would close the socket
                    faults.record("receive", repr(receiver.sink))
                    return
        original(self, data, addr)

    setattr(aioice.ice.Connection, RECEIVER, None)  # the default: aiortc's path
    aioice.ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]
    aioice.ice.StunProtocol._sfu_receive_hooked = True  # type: ignore[attr-defined]
    aioice.ice.StunProtocol._sfu_datagram_received = original  # type: ignore[attr-defined]


def aioice_datagram_received() -> Callable[..., None]:
    """aioice's own ``StunProtocol.datagram_received`` (wrapped or not)."""
    method: Callable[..., None] = getattr(
        aioice.ice.StunProtocol,
        "_sfu_datagram_received",
        aioice.ice.StunProtocol.datagram_received,
    )
    return method
