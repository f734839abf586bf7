"""The synchronous receive path (sfu/adapters/aiortc_plane/receive.py): the aiortc, aioice
and pylibsrtp internals it relies on, SRTP unprotect byte for byte as pylibsrtp's, and two
real aiortc peers over loopback: media reaches the sink without aiortc's DTLS task, and a
peer flooding RTCP is cut to the transport's rate while a normal one is not."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aioice.ice
import aiortc.rtp
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from support.waiting import wait_until

from sfu.adapters import aiortc_plane as plane
from sfu.adapters.aiortc_plane import receive
from sfu.adapters.aiortc_plane.receive import Unprotector


def test_the_internals_the_receive_path_uses_are_still_there() -> None:
    # aioice: every datagram of a candidate's socket reaches StunProtocol.datagram_received,
    # which hands what is not STUN to its Connection (the receiver), as is
    source = inspect.getsource(receive.aioice_datagram_received())
    assert "stun.parse_message(data)" in source
    assert "self.receiver.data_received(data, self.local_candidate.component)" in source
    assert "self.receiver = receiver" in inspect.getsource(aioice.ice.StunProtocol.__init__)
    assert list(inspect.signature(receive.aioice_datagram_received()).parameters) == [
        "self",
        "data",
        "addr",
    ]
    # aiortc: what the DTLS task does with a datagram of 128-191, which the path replaces
    recv_next = inspect.getsource(RTCDtlsTransport._recv_next)
    for needle in (
        "first_byte > 127 and first_byte < 192 and self._rx_srtp",
        "if is_rtcp(data):",
        "data = self._rx_srtp.unprotect_rtcp(data)",
        "await self._handle_rtcp_data(data)",
        "data = self._rx_srtp.unprotect(data)",
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        "self.__rx_packets += 1",
    ):
        assert needle in recv_next, needle
    assert "msg[1] >= 192 and msg[1] <= 208" in inspect.getsource(aiortc.rtp.is_rtcp)
    assert "self._rx_srtp = Session(rx_policy)" in inspect.getsource(RTCDtlsTransport._setup_srtp)
    # the receive counters the path does not keep are read by getStats() only
    assert "packetsReceived=self.__rx_packets" in inspect.getsource(RTCDtlsTransport._get_stats)
    # pylibsrtp: the session's internals, and its unprotect as the Unprotector repeats it
    session = pylibsrtp.Session(
        pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    )
    assert len(session._cdata) == 1500 and len(session._buffer) == 1500
    process = inspect.getsource(pylibsrtp.Session._Session__process)  # type: ignore[attr-defined]
    assert "func(self._srtp[0], self._cdata, len_p)" in process
    assert "self._buffer[0 : len_p[0]]" in process
    assert "lib.srtp_unprotect_rtcp" in inspect.getsource(pylibsrtp.Session.unprotect_rtcp)
    assert Unprotector(session).fast
    # installed: the wrapper in place, aioice's own kept
    plane.install()
    assert receive.hooked()
    assert aioice.ice.StunProtocol.datagram_received is not receive.aioice_datagram_received()


def _sessions(key: bytes) -> tuple[pylibsrtp.Session, pylibsrtp.Session, pylibsrtp.Session]:
    out = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    rx = [
        pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        for _ in range(2)
    ]
    return pylibsrtp.Session(out), rx[0], rx[1]


def test_unprotect_through_the_binding_gives_pylibsrtp_s_bytes() -> None:
    tx, reference, other = _sessions(os.urandom(30))
    unprotect = Unprotector(other)
    assert unprotect.fast, "pylibsrtp's internals moved: review aiortc_plane/receive.py"
    for seq in range(400):
        ssrc = (1234 + seq % 3).to_bytes(4, "big")
        size = 12 + (seq * 37) % 1300
        rtp = bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(4) + ssrc
        protected = tx.protect(rtp + os.urandom(size - 12))
        assert unprotect.rtp(protected) == reference.unprotect(protected)
        rtcp = bytes([0x80, 201, 0, 1]) + ssrc + os.urandom(seq % 40)
        protected = tx.protect_rtcp(rtcp)
        clear = unprotect.rtcp(protected)
        assert clear == reference.unprotect_rtcp(protected) == rtcp
    # refusals as pylibsrtp's: a replay, a forged tag, too long
    rtp = tx.protect(bytes([0x80, 96, 9, 9]) + bytes(4) + bytes(4) + b"payload")
    assert unprotect.rtp(rtp) == reference.unprotect(rtp)
    for bad in (rtp, rtp[:-1] + bytes([rtp[-1] ^ 1])):
        with pytest.raises(pylibsrtp.Error):
            reference.unprotect(bad)
        with pytest.raises(pylibsrtp.Error):
            unprotect.rtp(bad)
    with pytest.raises(ValueError, match="too long"):
        unprotect.rtp(bytes([0x80, 96]) + bytes(1600))
    with pytest.raises(ValueError, match="too long"):
        unprotect.rtcp(bytes([0x80, 201]) + bytes(1600))


def test_unprotect_falls_back_to_the_public_methods() -> None:
    class Opaque:  # a session whose internals are not the ones the Unprotector knows
        def unprotect(self, packet: bytes) -> bytes:
            return b"rtp:" + packet

        def unprotect_rtcp(self, packet: bytes) -> bytes:
            return b"rtcp:" + packet

    unprotect = Unprotector(Opaque())  # type: ignore[arg-type]
    assert not unprotect.fast
    assert unprotect.rtp(b"x") == b"rtp:x" and unprotect.rtcp(b"y") == b"rtcp:y"


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        #: whether each packet came in a datagram callback (no task running) or a task
        self.in_task: list[bool] = []

    def _where(self) -> None:
        self.in_task.append(asyncio.current_task() is not None)

    def on_rtp(self, data: bytes, now: float) -> None:
        self._where()
        self.rtp.append(data)

    def on_rtcp(self, data: bytes, now: float) -> None:
        self._where()
        self.rtcp.append(data)


class Pair:
    """Two aiortc peer connections over loopback, A sending to B, each with a raw
    transport and a sink once connected."""

    def __init__(self) -> None:
        self.a: RTCPeerConnection = plane.create_peer_connection()
        self.b: RTCPeerConnection = plane.create_peer_connection()
        self.sink_a, self.sink_b = Sink(), Sink()
        self.raw_a: plane.RawTransport | None = None
        self.raw_b: plane.RawTransport | None = None

    async def connect(self) -> None:
        transceiver = self.a.addTransceiver("video", direction="sendonly")
        plane.take_over_sender(transceiver.sender, lambda binding: None)
        await self.a.setLocalDescription(await self.a.createOffer())
        await self.b.setRemoteDescription(self.a.localDescription)
        for t in self.b.getTransceivers():
            plane.take_over_receiver(t.receiver, lambda parameters: None)
        await self.b.setLocalDescription(await self.b.createAnswer())
        await self.a.setRemoteDescription(self.b.localDescription)
        await wait_until(
            lambda: self.a.connectionState == self.b.connectionState == "connected",
            timeout=15,
        )
        dtls_a, dtls_b = plane.dtls_transport_of(self.a), plane.dtls_transport_of(self.b)
        assert dtls_a is not None and dtls_b is not None
        self.raw_a, self.raw_b = plane.RawTransport(dtls_a), plane.RawTransport(dtls_b)
        self.raw_a.attach_sink(self.sink_a)
        self.raw_b.attach_sink(self.sink_b)

    async def close(self) -> None:
        for pc in (self.a, self.b):
            await plane.close_peer_connection(pc)


@asynccontextmanager
async def pairs(count: int) -> AsyncIterator[list[Pair]]:
    plane.install()
    made = [Pair() for _ in range(count)]
    try:
        await asyncio.gather(*(p.connect() for p in made))
        yield made
    finally:
        for p in made:
            await p.close()


def _rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return (
        bytes([0x80, 96])
        + seq.to_bytes(2, "big")
        + bytes(4)
        + ssrc.to_bytes(4, "big")
        + (seq.to_bytes(2, "big") * 50)
    )


def _receiver_report(ssrc: int = 0x5678) -> bytes:
    return bytes([0x80, 201, 0, 1]) + ssrc.to_bytes(4, "big")


@pytest.mark.asyncio
async def test_media_reaches_the_sink_in_the_datagram_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane.install()  # the transport hooks first: the counting wraps them
    old_path: list[Any] = []
    hooked_rtp = RTCDtlsTransport._handle_rtp_data
    hooked_rtcp = RTCDtlsTransport._handle_rtcp_data

    async def counted_rtp(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        old_path.append(("rtp", self))
        await hooked_rtp(self, data, arrival_time_ms)

    async def counted_rtcp(self: RTCDtlsTransport, data: bytes) -> None:
        old_path.append(("rtcp", self))
        await hooked_rtcp(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", counted_rtp)
    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtcp_data", counted_rtcp)
    async with pairs(1) as (pair,):
        assert pair.raw_a is not None and pair.raw_b is not None
        sent = [_rtp(seq) for seq in range(200)]
        for i, packet in enumerate(sent):
            pair.raw_a.send_rtp(packet)
            if i % 20 == 0:
                pair.raw_a.send_rtcp(_receiver_report())
                pair.raw_b.send_rtcp(_receiver_report(0x9999))
                await asyncio.sleep(0.002)
        await wait_until(lambda: len(pair.sink_b.rtp) == len(sent), timeout=5)
        await wait_until(lambda: len(pair.sink_b.rtcp) == len(pair.sink_a.rtcp) == 10, timeout=5)
        assert pair.sink_b.rtp == sent  # in order, byte for byte
        assert pair.sink_b.rtcp == [_receiver_report()] * 10
        assert pair.sink_a.rtcp == [_receiver_report(0x9999)] * 10
        # synchronously, in the datagram's callback: not through aiortc's DTLS task
        assert old_path == []
        assert not any(pair.sink_b.in_task) and not any(pair.sink_a.in_task)
        assert pair.raw_b.packets_received == 210 and pair.raw_a.packets_received == 10
        assert pair.raw_b.unprotect_failures == pair.raw_b.rtcp_rate_limited == 0

        # a sink that raises is contained (and counted), the path goes on
        class Failing(Sink):
            def on_rtp(self, data: bytes, now: float) -> None:
                raise RuntimeError("a failing sink must not break the transport")

        from sfu import faults

        before = faults.counts["rtp"]
        failing = Failing()
        pair.raw_b.attach_sink(failing)
        pair.raw_a.send_rtp(_rtp(500))
        await wait_until(lambda: faults.counts["rtp"] == before + 1, timeout=5)
        pair.raw_b.attach_sink(pair.sink_b)

        # a forged datagram is dropped and counted
        dtls_a = plane.dtls_transport_of(pair.a)
        assert dtls_a is not None
        protected = bytearray(dtls_a._tx_srtp.protect(_rtp(501)))
        protected[-1] ^= 0xFF
        connection = dtls_a.transport._connection
        pair_a = connection._nominated[1]
        pair_a.protocol.transport.sendto(bytes(protected), pair_a.remote_addr)
        await wait_until(lambda: pair.raw_b.unprotect_failures == 1, timeout=5)
        pair.raw_a.send_rtp(_rtp(502))
        await wait_until(lambda: pair.sink_b.rtp[-1] == _rtp(502), timeout=5)

        # a fault of the path itself is contained too: the socket stays open (a protocol
        # callback that raises closes asyncio's transport)
        before = faults.counts["receive"]
        pair.raw_b.receiver.rtcp_per_second = None  # type: ignore[assignment]
        pair.raw_a.send_rtcp(_receiver_report(0x7777))
        await wait_until(lambda: faults.counts["receive"] == before + 1, timeout=5)
        pair.raw_b.receiver.rtcp_per_second = receive.RTCP_PER_SECOND
        pair.raw_a.send_rtcp(_receiver_report(0x7778))
        await wait_until(lambda: pair.sink_b.rtcp[-1] == _receiver_report(0x7778), timeout=5)

        # detached: aiortc's path again (through the transport hooks)
        pair.raw_b.detach_sink()
        pair.raw_b.attach_sink(pair.sink_b)
        pair.raw_b.receiver.sink = None  # as if it had none: the datagram goes the old way
        pair.raw_a.send_rtp(_rtp(503))
        await wait_until(lambda: pair.sink_b.rtp[-1] == _rtp(503), timeout=5)
        assert old_path and old_path[-1][0] == "rtp"
        assert pair.sink_b.in_task[-1]
    assert old_path == [("rtp", pair.raw_b.dtls)]


@pytest.mark.asyncio
async def test_the_path_off_leaves_aiortc_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receive, "ENABLED", False)
    async with pairs(1) as (pair,):
        assert pair.raw_a is not None and pair.raw_b is not None
        for seq in range(20):
            pair.raw_a.send_rtp(_rtp(seq))
        pair.raw_a.send_rtcp(_receiver_report())
        await wait_until(lambda: len(pair.sink_b.rtp) == 20 and pair.sink_b.rtcp, timeout=5)
        assert all(pair.sink_b.in_task)  # through the DTLS task and the transport hooks
        assert pair.raw_b.packets_received == 0


async def _flood(
    flood_send: Callable[[int], None], normal_send: Callable[[int], None], per_tick: int
) -> tuple[int, int, float]:
    """``per_tick`` datagrams of a flood every 4 ms for 0.4 s (``flood_send(n)``, n from 0),
    and one of a normal peer's each time (``normal_send(n)``, n from 1); then 0.2 s for the
    last to arrive. Returns what each sent and the seconds from the start."""
    started = time.monotonic()
    sent = normal_sent = 0
    while time.monotonic() - started < 0.4:
        for _ in range(per_tick):
            flood_send(sent)
            sent += 1
        normal_sent += 1
        normal_send(normal_sent)
        await asyncio.sleep(0.004)
    await asyncio.sleep(0.2)
    return sent, normal_sent, time.monotonic() - started


def _assert_cut_to_the_bucket(
    taken: int,
    dropped: int,
    raw: Any,
    sent: int,
    rate: float,
    burst: float,
    elapsed: float,
    dropped_share: int,
) -> None:
    """What the flooded side took is what its bucket allows (the burst, then the rate), and
    at least 1/``dropped_share`` of the flood was dropped before decryption."""
    assert taken + dropped + raw.unprotect_failures <= sent
    assert taken <= burst + rate * elapsed + 1, (taken, elapsed)
    assert dropped >= sent // dropped_share, (dropped, sent)
    assert taken >= rate * 0.3, taken  # the rate itself is taken


@pytest.mark.asyncio
async def test_a_peer_flooding_rtcp_is_cut_to_the_rate_and_a_normal_one_is_not() -> None:
    async with pairs(2) as (flood, normal):
        assert flood.raw_a is not None and flood.raw_b is not None
        assert normal.raw_a is not None and normal.raw_b is not None
        rate, burst = receive.RTCP_PER_SECOND, receive.RTCP_BURST
        assert flood.raw_b.receiver.rtcp_per_second == rate
        flooder, other = flood.raw_a, normal.raw_a

        def normal_sends(n: int) -> None:
            other.send_rtcp(_receiver_report(0x4242))
            other.send_rtp(_rtp(n))

        # the flood: 40 datagrams every 4 ms (~10000/s) for 0.4 s; the normal peer: one
        # datagram each time (under 250/s)
        sent, normal_sent, elapsed = await _flood(
            lambda n: flooder.send_rtcp(_receiver_report(n)), normal_sends, per_tick=40
        )
        taken = len(flood.sink_b.rtcp)
        _assert_cut_to_the_bucket(
            taken, flood.raw_b.rtcp_rate_limited, flood.raw_b, sent, rate, burst, elapsed, 2
        )
        # what got through is the flood's (in order), decrypted
        numbers = [int.from_bytes(p[4:8], "big") for p in flood.sink_b.rtcp]
        assert numbers == sorted(numbers)
        # the normal peer: everything, nothing dropped
        await wait_until(lambda: len(normal.sink_b.rtcp) == normal_sent, timeout=5)
        assert normal.raw_b.rtcp_rate_limited == 0
        assert len(normal.sink_b.rtp) == normal_sent
        # once the flood stops, the bucket refills: the flooder is heard again
        await asyncio.sleep(burst / rate)
        flood.raw_a.send_rtcp(_receiver_report(0xABCD))
        await wait_until(lambda: flood.sink_b.rtcp[-1] == _receiver_report(0xABCD), timeout=5)


@pytest.mark.asyncio
async def test_a_peer_flooding_rtp_is_cut_to_the_rate_before_srtp() -> None:
    assert (receive.RTP_PER_SECOND, receive.RTP_BURST) == (5000.0, 2500.0)
    async with pairs(2) as (flood, normal):
        assert flood.raw_a is not None and flood.raw_b is not None
        assert normal.raw_a is not None and normal.raw_b is not None
        # the mechanism at a rate a test can exceed from Python: 1000/s, bursts of 100
        rate, burst = 1000.0, 100.0
        flood.raw_b.receiver.rtp_bucket = receive.DatagramBucket(rate, burst)
        normal.raw_b.receiver.rtp_bucket = receive.DatagramBucket(rate, burst)
        flooder, other = flood.raw_a, normal.raw_a
        # the flood: 20 datagrams every 4 ms (~5000/s) for 0.4 s; the normal peer: one
        sent, normal_sent, elapsed = await _flood(
            lambda n: flooder.send_rtp(_rtp(n + 1)),
            lambda n: other.send_rtp(_rtp(n)),
            per_tick=20,
        )
        taken = len(flood.sink_b.rtp)
        _assert_cut_to_the_bucket(
            taken, flood.raw_b.rtp_rate_limited, flood.raw_b, sent, rate, burst, elapsed, 3
        )
        # dropped before SRTP: nothing refused by it, what got through is in order
        assert flood.raw_b.unprotect_failures == 0
        numbers = [int.from_bytes(p[2:4], "big") for p in flood.sink_b.rtp]
        assert numbers == sorted(numbers)
        # the normal peer: everything
        await wait_until(lambda: len(normal.sink_b.rtp) == normal_sent, timeout=5)
        assert normal.raw_b.rtp_rate_limited == 0


async def test_a_stranger_spraying_rtcp_at_the_port_does_not_starve_the_peer() -> None:
    """RTCP-looking datagrams to a peer's port from another address (an attacker who found
    the port) do not take the fast path nor spend the peer's RTCP bucket: they go aiortc's
    way, where SRTCP refuses them, and the peer's own RTCP still arrives."""
    import socket

    async with pairs(1) as (pair,):
        assert pair.raw_a is not None and pair.raw_b is not None
        connection = pair.raw_b.dtls.transport._connection
        local = connection._nominated[1].local_candidate
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for n in range(2000):  # 20 times the burst, in a few ms
                stranger.sendto(_receiver_report(n) + bytes(14), (local.host, local.port))
            await asyncio.sleep(0.3)
        finally:
            stranger.close()
        receiver = pair.raw_b.receiver
        assert receiver is not None
        assert receiver.foreign_datagrams >= 1900, receiver.foreign_datagrams
        assert pair.raw_b.rtcp_rate_limited == 0 and pair.sink_b.rtcp == []
        for n in range(50):  # the peer's own, right after: every one taken
            pair.raw_a.send_rtcp(_receiver_report(0x7000 + n))
        await wait_until(lambda: len(pair.sink_b.rtcp) == 50, timeout=5)
        assert pair.raw_b.rtcp_rate_limited == 0
