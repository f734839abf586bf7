"""The raw media plane: decrypted RTP and RTCP handed, synchronously, to the SFU's sink
(in aioice's datagram callback, :mod:`.receive`, installed by :meth:`RawTransport.attach_sink`;
and, for what still takes aiortc's DTLS task, hooks on ``RTCDtlsTransport``); SRTP protect
then ``sendmmsg`` on the nominated pair's socket, batched per turn of the event loop
(:class:`RawTransport`, :mod:`.batch`); and liveness, from
the remote's ICE checks (a hook on ``aioice.ice.Connection.check_incoming``) and our own
probes.

The hooks and :meth:`RawTransport.send_rtp` are the per-packet path: no task, no await and
no indirection beyond what is written here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import aioice.ice
import aioice.stun
from aiortc.rtcdtlstransport import RTCDtlsTransport, State

from ... import faults
from . import batch, receive
from .batch import BATCHES, send_batch
from .receive import FALLBACK_PAIR
from .srtp import Protector


class TransportSink(Protocol):
    def on_rtp(self, data: bytes, now: float) -> None: ...

    def on_rtcp(self, data: bytes, now: float) -> None: ...


#: (read on every packet sent: an enum member's lookup costs a dict walk each time)
_CONNECTED = State.CONNECTED


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
        self._protector: Protector | None = None  # of the DTLS transport's SRTP session
        #: RTP queued in this turn of the event loop (:meth:`send_rtp`, :mod:`.batch`)
        self._pending: list[bytes] = []
        #: batches flushed (packets_sent / batches_sent: the packets per flush)
        self.batches_sent = 0
        #: called with the time after each flush (the packets' real send time)
        self.after_flush: Callable[[float], None] | None = None
        self._socket_of: object = None  # the asyncio transport whose socket is ``_fd``
        self._fd = -1
        #: the synchronous receive path (:mod:`.receive`), routed through once a sink is
        #: attached (unless ``SFU_FAST_RECEIVE=0``)
        self.receiver = receive.Receiver(dtls)

    def attach_sink(self, sink: TransportSink) -> None:
        self.dtls._sfu_sink = sink  # type: ignore[attr-defined]  # read by the hooks
        self.receiver.sink = sink
        if receive.ENABLED:
            receive.install_receiver(self.receiver)

    def detach_sink(self) -> None:
        self.dtls._sfu_sink = None  # type: ignore[attr-defined]
        self.receiver.sink = None
        receive.remove_receiver(self.receiver)

    @property
    def packets_received(self) -> int:
        """RTP and RTCP datagrams the synchronous receive path gave the sink."""
        return self.receiver.packets_received

    @property
    def unprotect_failures(self) -> int:
        """Datagrams SRTP or SRTCP refused on the synchronous receive path (dropped)."""
        return self.receiver.unprotect_failures

    @property
    def rtp_rate_limited(self) -> int:
        """RTP datagrams dropped, before SRTP, beyond the transport's RTP rate
        (:data:`.receive.RTP_PER_SECOND`)."""
        return self.receiver.rtp_rate_limited

    @property
    def rtcp_rate_limited(self) -> int:
        """RTCP datagrams dropped, before SRTCP, beyond the transport's RTCP rate
        (:data:`.receive.RTCP_PER_SECOND`)."""
        return self.receiver.rtcp_rate_limited

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
        """Queue ``data`` for this turn of the event loop's batch (:mod:`.batch`)."""
        pending = self._pending
        pending.append(data)
        if len(pending) == 1:
            BATCHES.add(self.flush)

    def flush(self) -> None:
        """Protect and send what :meth:`send_rtp` queued (called by :data:`.batch.BATCHES`)."""
        packets = self._pending
        if not packets:
            return
        self._pending = []
        try:
            self._send(packets)
        finally:
            if self.after_flush is not None:  # sent or dropped, these packets are gone
                self.after_flush(time.monotonic())

    def _send(self, packets: list[bytes]) -> None:
        dtls = self.dtls
        if dtls._state is not _CONNECTED:
            return
        connection = dtls.transport._connection
        pair = connection._nominated.get(1) or getattr(connection, FALLBACK_PAIR, None)
        if pair is None:
            return
        protect = self._protector
        if protect is None or protect.session is not dtls._tx_srtp:
            protect = self._protector = Protector(dtls._tx_srtp)
        transport: asyncio.DatagramTransport | None = pair.protocol.transport
        if transport is None or transport.is_closing():
            # (a closed socket's file descriptor may be another socket's by now: never used)
            self.send_errors += len(packets)
            return
        if transport is not self._socket_of:
            self._socket_of = transport
            sock = transport.get_extra_info("socket")
            self._fd = sock.fileno() if sock is not None else -1
        sent, octets, errors = send_batch(
            transport, self._fd, pair.remote_addr, protect, packets, batch.NATIVE
        )
        self.batches_sent += 1
        self.packets_sent += sent
        self.bytes_sent += octets
        self.send_errors += errors

    def send_rtcp(self, data: bytes) -> None:
        dtls = self.dtls
        if dtls._state is not _CONNECTED:
            return
        connection = dtls.transport._connection
        pair = connection._nominated.get(1) or getattr(connection, FALLBACK_PAIR, None)
        if pair is None:
            return
        try:
            pair.protocol.transport.sendto(dtls._tx_srtp.protect_rtcp(data), pair.remote_addr)
        except (OSError, AttributeError):
            self.send_errors += 1


def hooked() -> bool:
    """Whether :func:`hook_transport` has run."""
    return bool(getattr(RTCDtlsTransport, "_sfu_hooked", False))


def hook_transport() -> None:
    """Send the decrypted RTP and RTCP of a transport with a sink to the sink, and note when
    the remote last sent an ICE check (once: call it through ``install``)."""
    if hooked():
        return
    # RTP/RTCP unprotected and delivered in the datagram's callback (:mod:`.receive`) ...
    receive.hook_receive()
    # ... and through aiortc's DTLS task otherwise (the path off, or datagrams queued
    # before the sink was attached)
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
    RTCDtlsTransport._sfu_hooked = True  # type: ignore[attr-defined]
