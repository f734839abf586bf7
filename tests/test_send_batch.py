"""Outbound RTP in batches (sfu/adapters/aiortc_plane/batch.py): the native module
(``_sendmmsg.c``: ``srtp_protect`` from C, then ``sendmmsg``) and the pure-Python path give
the same datagrams, byte for byte, on the committed captures; what libsrtp refuses or what is
too long is counted and dropped, the rest of the batch still goes; the native module is built
where the project is installed with a C compiler (CI)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pylibsrtp
import pytest
from support.captures import CAPTURES
from support.clients import SignalingClient
from support.serving import RunningServer
from support.waiting import continuous, wait_until

from loadtest.capturefile import read_capture
from sfu.adapters.aiortc_plane import batch
from sfu.adapters.aiortc_plane.batch import BATCHES, send_batch
from sfu.adapters.aiortc_plane.srtp import Protector

KEY = bytes(range(30))
native_only = pytest.mark.skipif(
    batch._sendmmsg is None, reason="the native module is not built (no C compiler at install)"
)


def test_the_native_module_is_built_in_ci() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only CI promises a C compiler at install")
    assert batch._sendmmsg is not None and batch.NATIVE and batch.SRTP_PROTECT


def outbound() -> Protector:
    policy = pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    protector = Protector(pylibsrtp.Session(policy))
    assert protector.fast and protector.address
    return protector


def inbound() -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append(data)


async def send_through(native: bool, batches: list[list[bytes]]) -> tuple[list[bytes], int, int]:
    """Every batch through ``send_batch`` on a fresh session, from one UDP socket to another;
    what arrived, the packets and bytes sent as counted."""
    loop = asyncio.get_running_loop()
    receiver, sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    receiver.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    remote = receiver.get_extra_info("sockname")[:2]
    fd = sender.get_extra_info("socket").fileno()
    protector = outbound()
    sent = octets = 0
    expected = sum(len(b) for b in batches)
    try:
        for packets in batches:
            s, o, errors = send_batch(sender, fd, remote, protector, packets, native)
            assert errors == 0
            sent += s
            octets += o
            await asyncio.sleep(0)  # the receiver reads meanwhile
        for _ in range(200):
            if len(sink.datagrams) >= expected:
                break
            await asyncio.sleep(0.01)
    finally:
        sender.close()
        receiver.close()
    return sink.datagrams, sent, octets


def batches_of(path: Path) -> list[list[bytes]]:
    """The capture's packets in batches of 1, 2, ... 70 (past the native module's 64 a call)."""
    packets = [p for _, p in read_capture(path).packets]
    out: list[list[bytes]] = []
    size = 1
    while packets:
        out.append(packets[:size])
        packets = packets[size:]
        size = size % 70 + 1
    return out


@native_only
@pytest.mark.parametrize("capture", ["vp9_L3T3_KEY", "vp8_L1T3", "av1_L3T3", "opus"])
async def test_native_and_python_send_the_same_datagrams(capture: str) -> None:
    batches = batches_of(CAPTURES / f"{capture}.sfucap")
    packets = [p for b in batches for p in b]
    native, native_sent, native_bytes = await send_through(True, batches)
    python, python_sent, python_bytes = await send_through(False, batches)
    assert native_sent == python_sent == len(packets)
    assert len(native) == len(python) == len(packets)
    assert native == python  # byte for byte, in order
    assert native_bytes == python_bytes == sum(len(d) for d in native)
    # and it is SRTP of the very packets given: unprotected, each is back as it was
    rx = inbound()
    assert [rx.unprotect(d) for d in native] == packets


@pytest.mark.parametrize("native", [True, False])
async def test_what_libsrtp_refuses_is_counted_and_the_rest_goes(native: bool) -> None:
    if native and batch._sendmmsg is None:
        pytest.skip("the native module is not built (no C compiler at install)")
    loop = asyncio.get_running_loop()
    receiver, sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    remote = receiver.get_extra_info("sockname")[:2]
    good = bytes([0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]) + b"x" * 100
    # the longest packet pylibsrtp protects (its 1500-byte buffer less libsrtp's trailer),
    # and one byte more: both paths refuse the same
    longest = bytes([0x80, 96, 0, 4, 0, 0, 0, 0, 0, 0, 0, 7]) + b"w" * (1356 - 12)
    too_long = bytes([0x80, 96, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]) + b"y" * (1357 - 12)
    runt = b"\x80\x60"
    later = bytes([0x80, 96, 0, 3, 0, 0, 0, 0, 0, 0, 0, 7]) + b"z" * 100
    try:
        sent, octets, errors = send_batch(
            sender,
            sender.get_extra_info("socket").fileno(),
            remote,
            outbound(),
            [good, too_long, runt, later, longest],
            native,
        )
        assert (sent, errors) == (3, 2)
        for _ in range(100):
            if len(sink.datagrams) >= 3:
                break
            await asyncio.sleep(0.01)
        rx = inbound()
        assert [rx.unprotect(d) for d in sink.datagrams] == [good, later, longest]
        assert octets == sum(len(d) for d in sink.datagrams)
    finally:
        sender.close()
        receiver.close()


@native_only
def test_native_refuses_bad_arguments_with_clear_errors() -> None:
    module = batch._sendmmsg
    assert module is not None
    protector = outbound()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fd = sock.fileno()
        with pytest.raises(ValueError, match="not an IP address"):
            module.send_batch(fd, "example.org", 9, batch.SRTP_PROTECT, protector.address, [])
        with pytest.raises(ValueError, match="port"):
            module.send_batch(fd, "127.0.0.1", 70000, batch.SRTP_PROTECT, protector.address, [])
        with pytest.raises(ValueError, match="no SRTP session"):
            module.send_batch(fd, "127.0.0.1", 9, 0, 0, [])
        with pytest.raises(TypeError):
            module.send_batch(fd, "127.0.0.1", 9, batch.SRTP_PROTECT, protector.address, (b"",))
        with pytest.raises(TypeError, match="bytes"):
            module.send_batch(fd, "127.0.0.1", 9, batch.SRTP_PROTECT, protector.address, ["x"])


async def test_batches_flush_once_per_turn_of_the_loop() -> None:
    flushed: list[str] = []
    BATCHES.add(lambda: flushed.append("a"))
    BATCHES.add(lambda: flushed.append("b"))
    assert flushed == []  # not before the loop's next turn
    await asyncio.sleep(0)
    assert flushed == ["a", "b"]

    def failing() -> None:
        raise RuntimeError("boom")

    BATCHES.add(failing)
    BATCHES.add(lambda: flushed.append("c"))  # a failing transport keeps nobody's packets
    await asyncio.sleep(0)
    assert flushed == ["a", "b", "c"]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_a_subscriber_gets_continuous_media_either_way(
    server: RunningServer, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if native and batch._sendmmsg is None:
        pytest.skip("the native module is not built (no C compiler at install)")
    monkeypatch.setattr(batch, "NATIVE", native)
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    try:
        for c in (alice, carol):
            await c.connect()
        await alice.join("batches")
        await alice.publish()
        await carol.join("batches")

        await wait_until(lambda: carol.has_media(publishers=1), timeout=30)
        for kind in ("audio", "video"):
            for ssrc, packets in carol.streams(kind).items():
                assert continuous([seq for _, seq in packets]), (kind, ssrc)
        subscriber = next(
            p.subscriber
            for r in server.rooms.rooms.values()
            for p in r.participants.values()
            if p.subscriber is not None
        )
        raw = subscriber.raw
        assert raw is not None
        assert raw.batches_sent > 0 and raw.packets_sent >= raw.batches_sent
        assert raw.send_errors == 0
        # transport-cc: the estimator is told each batch's real send time at its flush
        assert any(d.congestion is not None for d in subscriber.downtracks.values())
        assert raw.after_flush == subscriber.congestion.on_flushed
        unsent = subscriber.congestion.unsent
        assert unsent is not None and len(unsent) < 64, unsent
    finally:
        for c in (alice, carol):
            await c.close()


async def test_a_long_turn_flushes_what_has_waited_max_hold() -> None:
    flushed: list[int] = []
    BATCHES.add(lambda: flushed.append(1))
    BATCHES.due(10.0)  # the receive path handled a packet: the batch opens
    BATCHES.due(10.0 + batch.MAX_HOLD / 2)
    assert flushed == []
    BATCHES.due(10.0 + batch.MAX_HOLD * 1.01)  # the turn goes on: what waited is sent now
    assert flushed == [1]
    BATCHES.add(lambda: flushed.append(2))
    BATCHES.due(20.0)  # a new batch opens at its own first packet
    assert flushed == [1]
    await asyncio.sleep(0)  # the end of the turn flushes the rest
    assert flushed == [1, 2]
    BATCHES.due(30.0)  # nothing waiting: nothing opens
    assert flushed == [1, 2]
