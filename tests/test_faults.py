"""Faults: a client whose network disappears is removed within seconds, a closed tab at once,
and an exception in one room is logged with its context and goes no further."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest
from support.captures import CAPTURES
from support.clients import SignalingClient
from support.forwarding import attach, feed, make_source
from support.serving import RunningServer
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu import faults
from sfu.adapters.peers import PeerSettings, PublisherPeer, SubscriberPeer

# -- sans-IO pieces ---------------------------------------------------------------------------


def test_faults_are_counted_always_and_logged_at_most_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = faults.counts["unit"]
    with caplog.at_level(logging.ERROR, logger="sfu.faults"):
        for i in range(5):
            try:
                raise ValueError(f"boom {i}")
            except ValueError:
                faults.record("unit", "room 'r' participant p1", now=1000.0 + i)
        try:
            raise ValueError("later")
        except ValueError:
            faults.record("unit", "room 'r' participant p1", now=1000.0 + faults.LOG_INTERVAL + 1)
    assert faults.counts["unit"] - before == 6
    lines = [r for r in caplog.records if "unit failed" in r.getMessage()]
    assert len(lines) == 2
    assert "room 'r' participant p1" in lines[0].getMessage()
    assert lines[0].exc_info is not None  # with the traceback
    assert "and 4 more" in lines[1].getMessage()


def test_a_failing_down_track_does_not_starve_the_others() -> None:
    source, _ = make_source()
    bad, bad_sent = attach(source, 5000)
    good, good_sent = attach(source, 6000)

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug in one subscriber's copy")

    bad.write = broken  # type: ignore[method-assign]
    bad.context = "room 'x' participant bad subscribe of p:1"
    before = faults.counts["forward"]
    for seq in range(10):
        feed(source, seq, ts=seq * 3000, marker=True, now=seq / 30)
    assert len(good_sent) == 10 and bad_sent == []
    assert bad.faults == 10 and faults.counts["forward"] - before == 10


async def test_liveness_counts_every_sign_of_life_and_fails_once() -> None:
    settings = PeerSettings(peer_timeout=5.0)
    peer = PublisherPeer("p", lambda s: None, settings, "room 'r' participant p")
    failures: list[tuple[str, str]] = []
    peer.on_failed = lambda code, reason: failures.append((code, reason))

    class Raw:
        checked_at = 0.0
        probes: list[float] = []

        def probe(self) -> None:
            self.probes.append(peer.heard_at)

        def detach_sink(self) -> None:
            pass

        def stop_probing(self) -> None:
            pass

    raw = Raw()
    try:
        assert peer.check_liveness(1000.0)  # not connected yet: nothing to judge
        peer.raw = raw  # type: ignore[assignment]
        peer.heard_at = 100.0
        assert peer.check_liveness(102.4) and raw.probes == []
        # quiet for more than half the timeout: asked, at most once a second
        assert peer.check_liveness(102.6) and peer.check_liveness(103.5)
        assert peer.check_liveness(104.0) and len(raw.probes) == 2
        raw.checked_at = 103.0  # an ICE check (or an answer to a probe), no media: alive
        assert peer.check_liveness(107.0)
        peer.on_rtcp(b"\x00", 108.0)  # even a malformed RTCP packet is a sign of life
        assert peer.check_liveness(112.5)
        settings.peer_timeout = 0  # off
        assert peer.check_liveness(200.0)
        settings.peer_timeout = 5.0
        assert not peer.check_liveness(113.5)
        peer.check_liveness(114.0)  # already failed: not again
        assert peer.failed and len(failures) == 1 and failures[0][0] == "peer_timeout"
        assert "publish connection for 5.5 s" in failures[0][1]
    finally:
        await peer.close()
    subscriber = SubscriberPeer(lambda sdp: asyncio.sleep(0), settings)
    subscriber.on_failed = lambda code, reason: failures.append((code, reason))
    subscriber.pc.emit("connectionstatechange")  # "new": nothing
    await subscriber.close()  # closed by us: not a failure
    assert len(failures) == 1


# -- with the server --------------------------------------------------------------------------


def left(client: SignalingClient, participant_id: str | None) -> bool:
    return any(
        m["type"] == "participant_left" and m["participant_id"] == participant_id
        for m in client.messages
    )


async def publisher_and_subscriber(
    server: RunningServer, room: str
) -> tuple[SignalingClient, SignalingClient]:
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    await alice.connect()
    await carol.connect()
    await alice.join(room)
    await alice.publish()
    await carol.join(room)
    await wait_until(lambda: any(len(p) > 20 for p in carol.streams("video").values()))
    return alice, carol


async def test_a_subscriber_that_sends_nothing_unasked_stays(server: RunningServer) -> None:
    """A client whose video is paused and that sends no RTCP at all: only ICE keeps it
    alive (its own consent checks come every 4-6 s, longer than the timeout: the server's
    probes fill in)."""

    class Quiet(SimSubscriber):
        def _send_rtcp(self, packet: bytes) -> None:
            pass

    publisher = ReplayPublisher(server.ws_url, "pub", read_capture(CAPTURES / "vp8_L1T3.sfucap"))
    quiet = Quiet(server.ws_url, "quiet", (0, 0))  # a hidden video: paused
    try:
        await publisher.connect("quiet")
        await quiet.connect("quiet")
        await publisher.publish()
        room = server.rooms.rooms["quiet"]
        member = next(p for p in room.participants.values() if p.name == "quiet")
        await wait_until(lambda: member.subscriber is not None and member.subscriber.raw)
        peer = member.subscriber
        assert peer is not None and peer.raw is not None
        await asyncio.sleep(12)
        assert not any(m["type"] == "bye" for m in quiet.messages)
        assert len(room.participants) == 2 and not peer.failed
        assert peer.raw.probes_answered >= 1
        assert peer.raw.packets_sent < 50  # it really got (almost) nothing to acknowledge
    finally:
        await quiet.close()
        await publisher.close()


async def test_a_publisher_whose_network_disappears_is_removed(server: RunningServer) -> None:
    alice, carol = await publisher_and_subscriber(server, "cut-pub")
    try:
        assert alice.publish_pc is not None
        SignalingClient.cut_network(alice.publish_pc)  # WebSocket left open
        cut = time.monotonic()
        await carol.wait_for(lambda d: left(carol, alice.participant_id), timeout=15)
        took = time.monotonic() - cut
        print(f"\nsilent publisher removed after {took:.1f} s")
        assert 3 < took < 15  # the peer timeout (5 s), not something else
        unpublished = [m for m in carol.messages if m["type"] == "track_unpublished"]
        assert {m["participant_id"] for m in unpublished} == {alice.participant_id}
        assert len(unpublished) == 2  # audio and video
        room = server.rooms.rooms["cut-pub"]
        assert list(room.participants) == [carol.participant_id]
        # alice is told on her still-open WebSocket, and may join again
        bye = await alice.wait_for(lambda d: d["type"] == "bye", timeout=5)
        assert bye["code"] == "peer_timeout" and "publish connection" in bye["reason"]
        assert (await alice.request({"type": "ping"}))["type"] == "pong"
        again = await alice.request({"type": "join", "room": "cut-pub", "name": "alice"})
        assert again["type"] == "joined" and again["participant_id"] != alice.participant_id
        # carol, a quiet subscriber that sends nothing but RTCP, was never taken for dead
        assert carol.participant_id in room.participants
        assert not any(m["type"] == "bye" for m in carol.messages)
    finally:
        await alice.close()
        await carol.close()


async def test_a_subscriber_whose_network_disappears_is_removed(server: RunningServer) -> None:
    alice, carol = await publisher_and_subscriber(server, "cut-sub")
    try:
        (source,) = [
            s
            for p in server.rooms.rooms["cut-sub"].participants.values()
            for s in p.sources.values()
            if s.kind == "video"
        ]
        assert len(source.downtracks) == 1
        assert carol.subscribe_pc is not None
        SignalingClient.cut_network(carol.subscribe_pc)
        await alice.wait_for(lambda d: left(alice, carol.participant_id), timeout=15)
        assert source.downtracks == []
        bye = await carol.wait_for(lambda d: d["type"] == "bye", timeout=5)
        assert bye["code"] == "peer_timeout" and "subscribe connection" in bye["reason"]
        assert list(server.rooms.rooms["cut-sub"].participants) == [alice.participant_id]
    finally:
        await alice.close()
        await carol.close()


async def test_a_peer_connection_closed_by_the_client_is_removed_at_once(
    server: RunningServer,
) -> None:
    alice, carol = await publisher_and_subscriber(server, "closed-pc")
    try:
        assert alice.publish_pc is not None
        await alice.publish_pc.close()  # DTLS close_notify; the WebSocket stays open
        closed = time.monotonic()
        await carol.wait_for(lambda d: left(carol, alice.participant_id), timeout=5)
        assert time.monotonic() - closed < 4  # sooner than the peer timeout
        bye = await alice.wait_for(lambda d: d["type"] == "bye", timeout=5)
        assert bye["code"] == "peer_closed"
    finally:
        await alice.close()
        await carol.close()


async def test_a_closed_tab_is_removed_at_once(server: RunningServer) -> None:
    """The WebSocket closes without a leave (the peer connections are not closed first)."""
    alice, carol = await publisher_and_subscriber(server, "tab")
    try:
        assert alice.ws is not None
        await alice.ws.close()
        closed = time.monotonic()
        await carol.wait_for(lambda d: left(carol, alice.participant_id), timeout=5)
        assert time.monotonic() - closed < 4
        assert len([m for m in carol.messages if m["type"] == "track_unpublished"]) == 2
        assert list(server.rooms.rooms["tab"].participants) == [carol.participant_id]
    finally:
        await alice.close()
        await carol.close()


async def test_an_exception_in_one_room_stays_in_that_room(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One room's media handling, timers and signaling raise; another room forwards on."""
    bad_pub = ReplayPublisher(server.ws_url, "bad-pub", read_capture(CAPTURES / "vp8_L1T3.sfucap"))
    bad_sub = SimSubscriber(server.ws_url, "bad-sub", (640, 360))
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    caplog.set_level(logging.ERROR, logger="sfu.faults")
    try:
        await bad_pub.connect("bad-room")
        await bad_sub.connect("bad-room")
        await bad_pub.publish()
        await wait_until(lambda: bad_sub.received > 20)
        for c in (alice, carol):
            await c.connect()
        await alice.join("good-room")
        await alice.publish()
        await carol.join("good-room")
        await wait_until(lambda: any(len(p) > 20 for p in carol.streams("video").values()))

        bad_room = server.rooms.rooms["bad-room"]
        pub_p = next(p for p in bad_room.participants.values() if p.name == "bad-pub")
        sub_p = next(p for p in bad_room.participants.values() if p.name == "bad-sub")
        assert sub_p.subscriber is not None

        def boom(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("injected fault")

        # every packet of the bad room's publisher, its subscriber's allocation timer, and
        # any publish request in that room raise
        for source in pub_p.sources.values():
            source.on_rtp = boom  # type: ignore[method-assign]
        sub_p.subscriber.allocate = boom  # type: ignore[method-assign]
        bad_room.check_publish = boom  # type: ignore[method-assign]
        before = dict(faults.counts)
        reply = await bad_sub.request({"type": "publish", "sdp": "v=0"})
        assert reply["type"] == "error" and reply["code"] == "internal_error"

        (ssrc, packets) = max(carol.streams("video").items(), key=lambda kv: len(kv[1]))
        count = len(packets)
        await asyncio.sleep(3)
        assert len(carol.streams("video")[ssrc]) > count + 30  # the good room forwards on
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/healthz") as r:
                assert r.status == 200
            async with session.get(f"{server.url}/stats", headers=server.admin) as r:
                stats = await r.json()
        for kind in ("rtp", "timer", "signaling"):
            assert stats["faults"].get(kind, 0) > before.get(kind, 0), kind
        assert {"bad-room", "good-room"} <= set(stats["rooms"])
        # the bad room's peers are still there (a fault is not a death) and still report
        assert bad_sub.received > 0 and sub_p.subscriber.raw is not None
        assert not sub_p.subscriber.failed and not sub_p.subscriber.closed

        text = "\n".join(r.getMessage() for r in caplog.records)
        assert f"room 'bad-room' participant {pub_p.id} publish" in text  # its packets
        assert f"room 'bad-room' participant {sub_p.id} subscribe" in text  # its timer
        assert f"publish from room 'bad-room' participant {sub_p.id}" in text  # signaling
        assert "good-room" not in text
        # logged once per fault and context, not once per packet
        assert len(caplog.records) < 10
    finally:
        for c in (alice, carol):
            await c.close()
        await bad_sub.close()
        await bad_pub.close()
