"""Peer connections are bounded: one that is never set up is reaped by the setup deadline
(its sockets closed, the client told), one whose client vanishes is failed within the peer
timeout, and an SDP over the bounds (size, m-lines, ICE candidates) is refused before aiortc
does anything with it.  The probes run against the real application (tests/support/serving.py):
raw WebSocket clients with hand-made SDPs, and aiortc clients."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import AudioStreamTrack, RTCSessionDescription
from support.clients import SignalingClient, new_pc
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.signaling import SignalingPeer
from sfu.adapters import aiortc_plane as plane
from sfu.adapters.peers import PeerSettings, PublisherPeer, SubscriberPeer
from sfu.config import ConfigError, LimitSettings, Settings, parse_settings
from sfu.forwarding.congestion import SendSideCongestion
from sfu.rtp import rtcp
from sfu.rtp.twcc import TransportFeedbackBuilder
from sfu.sdp import limits as sdp_limits
from sfu.sdp.limits import SdpLimitError, SdpLimits
from sfu.signaling.server import create_app

FINGERPRINT = ":".join(["AB"] * 32)


def offer_sdp(
    candidates: list[tuple[str, int]],
    *,
    m_lines: int = 1,
    end_of_candidates: bool = True,
    ufrag: str = "abcd",
    padding: int = 0,
) -> str:
    """A publish offer as a browser would send it (audio, BUNDLE, rtcp-mux, the candidates
    in the first m-line), made by hand: no client-side sockets.  ICE and DTLS parameters at
    session level keep an m-line under 100 bytes (465 of them fit in 64 KB)."""
    mids = [str(i) for i in range(m_lines)]
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {' '.join(mids)}",
        f"a=ice-ufrag:{ufrag}",
        "a=ice-pwd:" + "p" * 22,
        f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass",
    ]
    for i, mid in enumerate(mids):
        lines.append("m=audio 9 UDP/TLS/RTP/SAVPF 111")
        if i == 0:
            lines.append("c=IN IP4 0.0.0.0")
            lines += [
                f"a=candidate:{n} 1 udp 2122194687 {host} {port} typ host"
                for n, (host, port) in enumerate(candidates)
            ]
            if end_of_candidates:
                lines.append("a=end-of-candidates")
        lines += [
            f"a=mid:{mid}",
            "a=sendonly",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            f"a=ssrc:{1000 + i} cname:c",
        ]
    if padding:
        lines.append("a=x-padding:" + "x" * padding)
    return "\r\n".join(lines) + "\r\n"


def answer_sdp(offer: str, candidates: list[tuple[str, int]], extra_m_lines: int = 0) -> str:
    """A subscribe answer to the server's ``offer`` (recvonly, same m-lines and mids), made
    by hand; ``extra_m_lines`` more than the offer has."""
    session = ["v=0", "o=- 2 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    sections: list[list[str]] = []
    for line in offer.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        elif line.startswith("a=group:"):
            session.append(line)
    sections += [sections[-1]] * extra_m_lines
    out = list(session)
    for i, section in enumerate(sections):
        kind, _, _, pts = section[0].split(" ", 3)
        pt = pts.split()[0]
        mid = next(ln for ln in section if ln.startswith("a=mid:"))
        rtpmap = next(ln for ln in section if ln.startswith(f"a=rtpmap:{pt} "))
        out += [f"{kind} 9 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 0.0.0.0"]
        if i == 0:
            out += [
                f"a=candidate:{n} 1 udp 2122194687 {host} {port} typ host"
                for n, (host, port) in enumerate(candidates)
            ]
        out += [
            "a=ice-ufrag:wxyz",
            "a=ice-pwd:" + "q" * 22,
            f"a=fingerprint:sha-256 {FINGERPRINT}",
            "a=setup:active",
            mid if i < len(sections) - extra_m_lines else f"a=mid:x{i}",
            "a=recvonly",
            "a=rtcp-mux",
            rtpmap,
        ]
    return "\r\n".join(out) + "\r\n"


def open_fds() -> int:
    """File descriptors of this process: the server runs in it."""
    return len(os.listdir("/proc/self/fd"))


class SilentAddress:
    """A UDP port on every loopback address (127.0.0.0/8) that never answers: it counts the
    datagrams (STUN checks) the server sends to candidates pointing there."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0

    def drain(self) -> int:
        while True:
            try:
                self.sock.recv(4096)
            except BlockingIOError:
                return self.received
            self.received += 1

    def candidates(self, count: int, first: int = 0) -> list[tuple[str, int]]:
        """``count`` distinct addresses, all of them this port."""
        return [
            (f"127.0.{(first + i) // 250}.{(first + i) % 250 + 1}", self.port) for i in range(count)
        ]


@contextmanager
def silent_address() -> Iterator[SilentAddress]:
    silent = SilentAddress()
    try:
        yield silent
    finally:
        silent.sock.close()


@asynccontextmanager
async def server_with(**limits: Any) -> AsyncIterator[RunningServer]:
    async with running(create_app(Settings(limits=LimitSettings(**limits)))) as server:
        yield server
    await asyncio.sleep(0)


@asynccontextmanager
async def raw_clients(
    server: RunningServer, count: int, name: str
) -> AsyncIterator[list[SignalingPeer]]:
    clients = [SignalingPeer(server.ws_url, f"{name}{i}") for i in range(count)]
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        yield clients
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def stats(server: RunningServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/stats", headers=server.admin) as r:
            result: dict[str, Any] = await r.json()
            return result


def bye(client: SignalingPeer) -> dict[str, Any] | None:
    return next((m for m in client.messages if m["type"] == "bye"), None)


# -- sans-IO ---------------------------------------------------------------------------------


def test_sdp_counts_distinct_udp_candidates_over_all_m_lines() -> None:
    sdp = offer_sdp([("127.0.0.1", 5000), ("10.0.0.1", 5000), ("127.0.0.1", 5000)], m_lines=3)
    sdp += "a=candidate:9 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active\r\n"
    sdp += "a=candidate:7 1 udp 1 10.0.0.1 5000 typ host\r\n"  # again, in another m-line
    counts = sdp_limits.count(sdp)
    assert counts.m_lines == 3 and counts.size == len(sdp)
    assert counts.candidates == {("127.0.0.1", "5000"), ("10.0.0.1", "5000")}
    assert counts.ice_ufrag == "abcd"


def test_sdp_bounds_name_the_bound() -> None:
    limits = SdpLimits(max_bytes=4096, max_m_lines=4, max_candidates=3)
    sdp_limits.check_sdp(offer_sdp([("10.0.0.1", p) for p in range(3)], m_lines=4), limits)
    with pytest.raises(SdpLimitError, match=r"5 m-lines \(at most 4: limits.max_m_lines\)"):
        sdp_limits.check_sdp(offer_sdp([], m_lines=5), limits)
    with pytest.raises(SdpLimitError, match=r"bytes \(at most 4096: limits.max_sdp_bytes\)"):
        sdp_limits.check_sdp(offer_sdp([], padding=4096), limits)
    with pytest.raises(SdpLimitError, match="4 distinct UDP ICE candidates.*limits.max_candidates"):
        sdp_limits.check_sdp(offer_sdp([("10.0.0.1", p) for p in range(4)]), limits)
    # with those the connection has already: 2 known + 2 new > 3
    counts = sdp_limits.count(offer_sdp([("10.0.0.1", 1), ("10.0.0.1", 2)]))
    sdp_limits.check_candidates(counts, limits, known={("10.0.0.1", "1")})
    with pytest.raises(SdpLimitError, match=r"with 2 given before: 4"):
        sdp_limits.check_candidates(counts, limits, known={("10.0.0.9", "1"), ("10.0.0.9", "2")})
    # a subscribe answer: as many m-lines as the offer, as large as twice the offer
    with pytest.raises(SdpLimitError, match=r"2 m-lines \(at most 1: as many as the offer\)"):
        sdp_limits.check_sdp(offer_sdp([], m_lines=2), limits, "answer", max_m_lines=1)


def test_a_chromium_offer_is_within_the_default_bounds() -> None:
    offer = (Path(__file__).parent / "fixtures" / "chromium156_offer_all_codecs.sdp").read_text()
    counts = sdp_limits.check_sdp(offer, SdpLimits())
    assert counts.m_lines == 2 and len(counts.candidates) == 8  # TCP ones not counted
    plane.check_publish_offer(offer, SdpLimits())


def test_limit_settings_are_validated() -> None:
    limits = parse_settings(
        "limits: {setup_timeout: 2.5, max_sdp_bytes: 20000, max_m_lines: 4, max_candidates: 8}"
    ).limits
    assert limits.sdp_limits() == SdpLimits(max_bytes=20000, max_m_lines=4, max_candidates=8)
    assert limits.setup_timeout == 2.5
    for bad in ("setup_timeout: 0", "max_sdp_bytes: 70000", "max_m_lines: 0", "max_candidates: 0"):
        with pytest.raises(ConfigError, match=bad.split(":")[0]):
            parse_settings(f"limits: {{{bad}}}")


async def test_the_setup_deadline_is_judged_from_the_offer() -> None:
    settings = PeerSettings(setup_timeout=2.0)
    publisher = PublisherPeer("p", lambda s: None, settings)
    subscriber = SubscriberPeer(lambda sdp: asyncio.sleep(0), settings)
    try:
        assert publisher.setup_deadline() is None  # no offer yet: nothing to wait for
        publisher.start_setup(100.0)
        publisher.start_setup(105.0)  # a later offer does not move the deadline
        assert publisher.setup_deadline() == 102.0
        assert publisher.setup_overdue(101.9) is None
        assert publisher.setup_overdue(102.0) == "the publish connection did not connect within 2 s"
        publisher.was_connected = True
        assert publisher.setup_overdue(200.0) is None
        # a subscriber: every offer must be answered in time, also once connected
        subscriber.was_connected = True
        subscriber._negotiating, subscriber._offered_at = True, 300.0
        assert subscriber.setup_deadline() == 302.0
        assert subscriber.setup_overdue(302.5) == "the subscribe offer was not answered within 2 s"
        subscriber._negotiating = False
        assert subscriber.setup_overdue(302.5) is None
    finally:
        await publisher.close()
        await subscriber.close()


# -- against the running server ------------------------------------------------------------


async def test_publish_offers_that_never_connect_are_reaped() -> None:
    """The issue's probe: publish offers whose ICE never completes (candidates pointing to
    a silent address; half without end-of-candidates, which aioice would wait on forever).
    Each is answered, holds a socket, and is reaped at the setup deadline: ``bye``
    (peer_failed), out of the room, sockets closed, gone from /stats."""
    count, timeout = 20, 1.5
    with silent_address() as silent:
        async with server_with(setup_timeout=timeout) as server:
            async with raw_clients(server, count, "p") as clients:
                await asyncio.gather(*(c.join("never") for c in clients))
                baseline = open_fds()
                replies = await asyncio.gather(
                    *(
                        c.request(
                            {
                                "type": "publish",
                                "sdp": offer_sdp(
                                    [("127.0.0.1", silent.port)], end_of_candidates=i % 2 == 0
                                ),
                            }
                        )
                        for i, c in enumerate(clients)
                    )
                )
                answered = time.monotonic()
                assert [r["type"] for r in replies] == ["publish_answer"] * count
                peak = open_fds()
                assert peak >= baseline + count  # each holds at least its UDP socket
                await wait_until(lambda: all(bye(c) for c in clients), timeout=timeout + 5)
                took = time.monotonic() - answered
                for c in clients:
                    message = bye(c)
                    assert message is not None and message["code"] == "peer_failed"
                    assert "did not connect within 1.5 s" in message["reason"]
                assert took < timeout + 2
                await wait_until(lambda: open_fds() <= baseline + 2, timeout=5)
                after = open_fds()
                assert "never" not in (await stats(server))["rooms"]
                assert "never" not in server.rooms.rooms
                # the WebSockets stay open: the clients may join again
                assert (await clients[0].request({"type": "ping"}))["type"] == "pong"
                stun = silent.drain()
    print(
        f"\n{count} publish offers never connected: fds {baseline} -> {peak} -> {after}, "
        f"all reaped {took:.2f} s after the answers (setup_timeout {timeout} s); "
        f"{stun} STUN requests reached the silent address"
    )
    assert stun <= count * 7  # one candidate each: one transaction each at most


async def test_peers_setting_up_are_capped_server_wide() -> None:
    """Clients from any number of addresses that never connect hold at most
    ``max_peers_in_setup`` peer connections: a further first publish offer, or a join, gets
    ``busy``; once the deadline reaps them, both are accepted again."""
    with silent_address() as silent:
        async with server_with(setup_timeout=1.5, max_peers_in_setup=3) as server:
            async with raw_clients(server, 5, "c") as clients:
                await asyncio.gather(*(c.join("cap") for c in clients[:4]))
                offer = offer_sdp([("127.0.0.1", silent.port)])
                replies = [await c.request({"type": "publish", "sdp": offer}) for c in clients[:4]]
                assert [r["type"] for r in replies[:3]] == ["publish_answer"] * 3
                assert replies[3]["type"] == "error" and replies[3]["code"] == "busy", replies
                assert "limits.max_peers_in_setup" in replies[3]["reason"]
                assert server.rooms.rooms["cap"].publishers == 3
                reply = await clients[4].request({"type": "join", "room": "other", "name": "c4"})
                assert reply["type"] == "error" and reply["code"] == "busy", reply
                # reaped at the setup deadline: room again
                await wait_until(lambda: server.rooms.peers_in_setup() == 0, timeout=8)
                reply = await clients[4].request({"type": "join", "room": "other", "name": "c4"})
                assert reply["type"] == "joined", reply
                reply = await clients[3].request({"type": "publish", "sdp": offer})
                assert reply["type"] == "publish_answer", reply


async def test_subscribe_offers_never_answered_are_reaped() -> None:
    timeout = 1.5
    count = 10
    async with server_with(setup_timeout=timeout) as server:
        alice = SignalingClient(server.ws_url, "alice")
        try:
            await alice.connect()
            await alice.join("unanswered")
            await alice.publish(video=False)  # audio: cheap to encode
            async with raw_clients(server, count, "s") as clients:
                baseline = open_fds()
                await asyncio.gather(*(c.join("unanswered") for c in clients))
                offers = await asyncio.gather(
                    *(c.wait_for(lambda m: m["type"] == "subscribe_offer") for c in clients)
                )
                offered = time.monotonic()
                peak = open_fds()
                assert peak >= baseline + count
                # an answer over the bounds (more m-lines than the offer) is refused, and
                # leaves the offer outstanding
                reply = await clients[0].request(
                    {
                        "type": "subscribe_answer",
                        "sdp": answer_sdp(offers[0]["sdp"], [], extra_m_lines=2),
                    }
                )
                assert reply["code"] == "bad_sdp"
                assert "3 m-lines (at most 1: as many as the offer)" in reply["reason"]
                await wait_until(lambda: all(bye(c) for c in clients), timeout=timeout + 5)
                took = time.monotonic() - offered
                for c in clients:
                    message = bye(c)
                    assert message is not None and message["code"] == "peer_failed"
                    assert "subscribe offer was not answered within 1.5 s" in message["reason"]
                assert took < timeout + 2
                await wait_until(lambda: open_fds() <= baseline + 2, timeout=5)
                after = open_fds()
                room = (await stats(server))["rooms"]["unanswered"]
                assert [p["name"] for p in room["participants"]] == ["alice"]
                assert bye(alice) is None  # the publisher is not disturbed
        finally:
            await alice.close()
    print(
        f"\n{count} subscribe offers never answered: fds {baseline} -> {peak} -> {after}, "
        f"all reaped {took:.2f} s after the offers"
    )


async def test_a_subscribe_answer_that_never_connects_is_reaped() -> None:
    timeout = 1.5
    with silent_address() as silent:
        async with server_with(setup_timeout=timeout) as server:
            alice = SignalingClient(server.ws_url, "alice")
            try:
                await alice.connect()
                await alice.join("answered")
                await alice.publish(video=False)
                async with raw_clients(server, 1, "s") as (client,):
                    await client.join("answered")
                    offer = await client.wait_for(lambda m: m["type"] == "subscribe_offer")
                    await client.send(
                        {
                            "type": "subscribe_answer",
                            "sdp": answer_sdp(offer["sdp"], [("127.0.0.1", silent.port)]),
                        }
                    )
                    message = await client.wait_for(lambda m: m["type"] == "bye", timeout=5)
                    assert not any(m["type"] == "error" for m in client.messages)  # accepted
                    assert message["code"] == "peer_failed"
                    assert "subscribe connection did not connect within" in message["reason"]
                    assert silent.drain() > 0  # the server did try its candidate
            finally:
                await alice.close()


async def test_an_established_peer_whose_client_vanishes_is_failed_within_seconds(
    server: RunningServer,
) -> None:
    """The client's process dies: its sockets close (no DTLS close_notify, no ICE), its
    WebSocket stays (a half-open TCP connection takes much longer to notice).  Detected by
    the peer timeout (5 s), not by ICE consent (~30 s) or STUN timeouts (~64 s)."""
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    try:
        await alice.connect()
        await carol.connect()
        await alice.join("vanish")
        await alice.publish(video=False)
        await carol.join("vanish")
        await wait_until(lambda: any(len(p) > 20 for p in carol.streams("audio").values()))
        assert alice.publish_pc is not None
        dtls = plane.dtls_transport_of(alice.publish_pc)
        assert dtls is not None
        for protocol in dtls.transport._connection._protocols:
            protocol.transport.abort()
        gone = time.monotonic()
        message = await alice.wait_for(lambda m: m["type"] == "bye", timeout=15)
        took = time.monotonic() - gone
        print(f"\na vanished publisher was failed {took:.1f} s after its sockets closed")
        assert message["code"] == "peer_timeout" and "publish connection" in message["reason"]
        assert took < 5.0 + 2.0
        await carol.wait_for(
            lambda m: (
                m["type"] == "participant_left" and m["participant_id"] == alice.participant_id
            ),
            timeout=2,
        )
    finally:
        await alice.close()
        await carol.close()


async def test_a_connected_peer_without_a_usable_stream_is_still_watched(
    server: RunningServer,
) -> None:
    """An offer without SSRCs: the connection connects, but no stream binds the transport
    (the peer timeout used to start only then).  Its client vanishing is noticed anyway."""
    client = SignalingClient(server.ws_url, "nossrc")
    pc = new_pc()
    try:
        await client.connect()
        await client.join("nossrc")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = "".join(
            ln for ln in pc.localDescription.sdp.splitlines(True) if not ln.startswith("a=ssrc")
        )
        reply = await client.request({"type": "publish", "sdp": sdp})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        participant = server.rooms.rooms["nossrc"].participants[client.participant_id or ""]
        publisher = participant.publisher
        assert publisher is not None
        await wait_until(lambda: publisher.was_connected, timeout=10)
        assert publisher.sources == {} and publisher.raw is not None
        SignalingClient.cut_network(pc)
        cut = time.monotonic()
        message = await client.wait_for(lambda m: m["type"] == "bye", timeout=15)
        assert message["code"] == "peer_timeout"
        assert time.monotonic() - cut < 5.0 + 2.0
    finally:
        await pc.close()
        await client.close()


async def test_offers_over_the_bounds_are_refused_before_any_ice() -> None:
    """The issue's probes: 465 m-lines in 64 KB, 300 candidates to silent addresses; and
    candidates added by re-offers.  Refused with ``bad_sdp`` naming the bound; no socket
    opened, no STUN sent, nothing negotiated."""
    with silent_address() as silent:
        async with server_with(max_sdp_bytes=64 * 1024) as server:
            async with raw_clients(server, 1, "x") as (client,):
                await client.join("bounds")
                baseline = open_fds()
                many_lines = offer_sdp([], m_lines=465)
                assert 40_000 < len(many_lines) < 64 * 1024
                reply = await client.request({"type": "publish", "sdp": many_lines})
                assert reply["type"] == "error" and reply["code"] == "bad_sdp"
                assert "465 m-lines (at most 16: limits.max_m_lines)" in reply["reason"]

                many_candidates = offer_sdp(silent.candidates(300))
                reply = await client.request({"type": "publish", "sdp": many_candidates})
                assert reply["code"] == "bad_sdp"
                assert "300 distinct UDP ICE candidates" in reply["reason"]
                assert "limits.max_candidates" in reply["reason"]

                # a refused first offer leaves no publish connection behind (none counts
                # toward max_publishers)
                room = server.rooms.rooms["bounds"]
                participant = next(iter(room.participants.values()))
                assert participant.publisher is None and room.publishers == 0
                await asyncio.sleep(1.0)
                assert silent.drain() == 0
                assert open_fds() == baseline

                # a re-offer may not add candidates beyond the bound either (ICE is still
                # checking: every new candidate would be checked)
                first = offer_sdp(silent.candidates(20), end_of_candidates=False)
                reply = await client.request({"type": "publish", "sdp": first})
                assert reply["type"] == "publish_answer"
                more = offer_sdp(silent.candidates(20, first=20), end_of_candidates=False)
                reply = await client.request({"type": "publish", "sdp": more})
                assert reply["code"] == "bad_sdp"
                assert "with 20 given before: 40" in reply["reason"]
                await asyncio.sleep(1.0)
                stun = silent.drain()
                assert 0 < stun <= 20 * 7  # only the first offer's 20 addresses were checked
        async with server_with() as server:
            async with raw_clients(server, 1, "y") as (client,):
                await client.join("size")
                reply = await client.request({"type": "publish", "sdp": many_lines})
                assert reply["code"] == "bad_sdp"
                assert "bytes (at most 32768: limits.max_sdp_bytes)" in reply["reason"]


async def test_a_lone_transport_feedback_takes_the_short_path_to_the_same_estimate() -> None:
    """A datagram that is one transport-wide feedback alone skips the RTCP parser; what it
    does to the estimate is what the parsed path does (the same feedback after a receiver
    report, or padded), and a malformed one is counted as before."""
    settings = PeerSettings(bandwidth_estimation=True)
    peers = [SubscriberPeer(lambda sdp: asyncio.sleep(0), settings) for _ in range(3)]
    try:
        builder = TransportFeedbackBuilder(1, 2)
        now = 10.0
        for n in range(600):  # 2 Mbit/s sent, arriving at 1 Mbit/s: a queue builds
            for peer in peers:
                peer.congestion.stamp(1250, now + n * 0.005)
            builder.on_packet(n, now + 0.02 + n * 0.01)
        feedbacks = builder.build()
        assert feedbacks
        rr = rtcp.build_rr(rtcp.ReceiverReport(1, []))
        for i, feedback in enumerate(feedbacks):
            at = now + 3.1 + i * 0.05
            peers[0].on_rtcp(feedback, at)  # the short path
            peers[1].on_rtcp(rr + feedback, at)  # the parser
            peers[2].on_rtcp(feedback + rr, at)  # the parser
        states = [
            (
                p.congestion.estimate,
                p.congestion.estimator.delay_based_estimate,
                p.congestion.estimator.acknowledged_bitrate,
                p.congestion.estimator.loss_ratio,
            )
            for p in peers
        ]
        assert states[0] == states[1] == states[2]
        estimate = states[0][0]
        assert estimate is not None and estimate < SendSideCongestion.INITIAL_BITRATE
        # the builder pads: both forms took the short path
        assert {f[0] for f in feedbacks} == {0x8F, 0xAF} or len(feedbacks) == 1
        # a lone feedback whose FCI is cut short: malformed, on either path
        broken = b"\x8f\xcd\x00\x04" + feedbacks[0][4:20]  # the FCI's fields, no chunk
        peers[0].on_rtcp(broken, now + 9)
        peers[1].on_rtcp(rr + broken, now + 9)
        assert peers[0].congestion.malformed_feedback == peers[1].congestion.malformed_feedback == 1
        # a lone feedback that lies: 65535 statuses claimed (each would be parsed and
        # estimated) for 600 packets sent: refused whole before parsing, on the short path too
        congestion = peers[0].congestion
        estimate, refused = congestion.estimate, congestion.refused_feedback
        liar = bytearray(feedbacks[0])
        liar[14:16] = (0xFFFF).to_bytes(2, "big")  # the FCI's packet status count
        started = time.thread_time()
        for i in range(1000):
            peers[0].on_rtcp(bytes(liar), now + 10 + i * 0.001)
        took = time.thread_time() - started
        assert congestion.refused_feedback == refused + 1000
        assert congestion.estimate == estimate
        assert took < 1.0  # ~1000 x a comparison; parsing them would take tens of seconds
    finally:
        for peer in peers:
            await peer.close()
