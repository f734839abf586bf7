"""ICE restarts keep the session: aiortc clients on loopback (the adapter's in-place restart
on both ends).  Chromium, the reference client, is in tests/test_browser_ice.py."""

from __future__ import annotations

from typing import Any

from support.clients import SignalingClient, new_pc
from support.serving import RunningServer
from support.waiting import continuous, wait_until

from sfu.adapters import aiortc_plane as plane
from sfu.adapters.peers import PeerSettings, PublisherPeer


def ufrag(sdp: str) -> str:
    remote = plane.remote_ice(sdp)
    assert remote is not None
    return remote.ufrag


def nominated(pc: Any) -> Any:
    dtls = plane.dtls_transport_of(pc)
    assert dtls is not None
    return dtls.transport._connection._nominated.get(1)


async def test_publisher_restart_keeps_participant_sources_and_subscriber_streams(
    server: RunningServer,
) -> None:
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    try:
        await alice.connect()
        await carol.connect()
        await alice.join("restart-pub")
        await alice.publish()
        await carol.join("restart-pub")
        await wait_until(
            lambda: (
                len(carol.streams("video")) == 1
                and all(len(p) > 30 for p in carol.streams("video").values())
            )
        )
        room = server.rooms.rooms["restart-pub"]
        participant = room.participants[alice.participant_id or ""]
        publisher = participant.publisher
        assert publisher is not None
        sources = dict(participant.sources)
        dtls = plane.dtls_transport_of(publisher.pc)
        carol_peer = room.participants[carol.participant_id or ""].subscriber
        assert carol_peer is not None
        offers = carol_peer.offers_sent
        assert alice.publish_pc is not None
        old_local = ufrag(alice.publish_pc.localDescription.sdp)
        old_remote = ufrag(alice.publish_pc.remoteDescription.sdp)
        old_pair = nominated(publisher.pc)
        (ssrc, packets) = next(iter(carol.streams("video").items()))
        before = len(packets)

        answer = await alice.restart_publish_ice()

        assert alice.publish_ice is not None
        await wait_until(lambda: publisher.ice.restarts == 1 and alice.publish_ice.restarts == 1)
        # new credentials both ways, a newly nominated pair
        assert ufrag(alice.publish_pc.localDescription.sdp) != old_local
        assert ufrag(answer["sdp"]) != old_remote
        assert publisher.ice.local_ufrag() == ufrag(answer["sdp"])
        # the re-offer's answer is filtered like the first (no transport-cc by default)
        assert "transport-wide-cc" not in answer["sdp"]
        assert "transport-cc" not in answer["sdp"]
        assert nominated(publisher.pc) is not old_pair
        # the same session: participant, sources, DTLS transport; no renegotiation for carol
        assert room.participants[alice.participant_id or ""] is participant
        assert participant.sources == sources
        assert plane.dtls_transport_of(publisher.pc) is dtls
        await wait_until(lambda: len(carol.streams("video")[ssrc]) > before + 60)
        assert set(carol.streams("video")) == {ssrc}
        assert carol_peer.offers_sent == offers
        # not a packet lost or duplicated across the restart
        for kind in ("audio", "video"):
            for stream in carol.streams(kind).values():
                assert continuous([seq for _, seq in stream]), kind
        # the restarted connection checks consent again (RFC 7675)
        connection = dtls.transport._connection  # type: ignore[union-attr]
        assert connection._query_consent_task is not None
        assert not connection._query_consent_task.done()
    finally:
        await alice.close()
        await carol.close()


async def test_subscriber_restart_on_request_keeps_down_tracks(server: RunningServer) -> None:
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    try:
        await alice.connect()
        await carol.connect()
        await alice.join("restart-sub")
        await alice.publish()
        await carol.join("restart-sub")
        await wait_until(
            lambda: (
                len(carol.streams("video")) == 1
                and all(len(p) > 30 for p in carol.streams("video").values())
            )
        )
        room = server.rooms.rooms["restart-sub"]
        peer = room.participants[carol.participant_id or ""].subscriber
        assert peer is not None and carol.subscribe_pc is not None
        downtracks = dict(peer.downtracks)
        old_server = ufrag(carol.subscribe_pc.remoteDescription.sdp)
        old_client = ufrag(carol.subscribe_pc.localDescription.sdp)
        answers = carol.subscribe_answers
        (ssrc, packets) = next(iter(carol.streams("video").items()))
        before = len(packets)

        reply = await carol.request({"type": "restart_ice"})
        assert reply["type"] == "ok", reply
        assert carol.subscribe_ice is not None
        await wait_until(lambda: peer.ice.restarts == 1 and carol.subscribe_ice.restarts == 1)
        assert carol.subscribe_answers == answers + 1
        assert ufrag(carol.subscribe_pc.remoteDescription.sdp) != old_server
        assert ufrag(carol.subscribe_pc.localDescription.sdp) != old_client
        assert peer.downtracks == downtracks
        await wait_until(lambda: len(carol.streams("video")[ssrc]) > before + 60)
        assert set(carol.streams("video")) == {ssrc}
        for kind in ("audio", "video"):
            for stream in carol.streams(kind).values():
                assert continuous([seq for _, seq in stream]), kind
    finally:
        await alice.close()
        await carol.close()


async def test_restart_ice_without_a_connection_and_a_plain_renegotiation(
    server: RunningServer,
) -> None:
    alice = SignalingClient(server.ws_url, "alice")
    try:
        await alice.connect()
        await alice.join("restart-bad")
        # no subscribe connection yet
        reply = await alice.request({"type": "restart_ice"})
        assert reply["type"] == "error" and reply["code"] == "not_connected", reply
        # new credentials before ICE ever completed: refused, the first offer's state kept
        await alice.publish()
        room = server.rooms.rooms["restart-bad"]
        publisher = room.participants[alice.participant_id or ""].publisher
        assert publisher is not None
        await wait_until(lambda: publisher.ice.connected)
        assert alice.publish_pc is not None
        sdp = alice.publish_pc.localDescription.sdp
        remote = plane.remote_ice(sdp)
        assert remote is not None
        connection = plane.dtls_transport_of(publisher.pc).transport._connection  # type: ignore[union-attr]
        state = connection._check_list_done
        # the same offer again is a plain renegotiation, not a restart
        reply = await alice.request({"type": "publish", "sdp": sdp})
        assert reply["type"] == "publish_answer"
        assert ufrag(reply["sdp"]) == connection.local_username
        assert publisher.ice.restarts == 0 and connection._check_list_done == state
    finally:
        await alice.close()


async def test_restart_before_ice_completed_is_refused(server: RunningServer) -> None:
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    try:
        await alice.connect()
        await alice.join("restart-early")
        pc = new_pc()
        try:
            pc.addTransceiver("audio", direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            reply = await alice.request({"type": "publish", "sdp": sdp})
            assert reply["type"] == "publish_answer"
            # the answer is never applied: the server's ICE cannot complete
            remote = plane.remote_ice(sdp)
            assert remote is not None
            restarted = sdp.replace(f"a=ice-ufrag:{remote.ufrag}", "a=ice-ufrag:zzzz")
            reply = await alice.request({"type": "publish", "sdp": restarted})
            assert reply["type"] == "error" and reply["code"] == "bad_sdp", reply
            assert "ICE restart" in reply["reason"]
        finally:
            await pc.close()
        # the server is fine: another participant joins and pings
        await carol.connect()
        await carol.join("restart-early")
        assert (await carol.request({"type": "ping"}))["type"] == "pong"
    finally:
        await alice.close()
        await carol.close()


async def test_a_restart_that_never_completes_fails_the_connection(
    server: RunningServer, monkeypatch: Any
) -> None:
    """The client asks for a restart and never answers: after the timeout the subscribe
    connection fails and the participant leaves (instead of lingering without consent)."""
    monkeypatch.setattr(plane.IceRestarter, "timeout", 1.5)
    alice = SignalingClient(server.ws_url, "alice")
    carol = SignalingClient(server.ws_url, "carol")
    try:
        await alice.connect()
        await carol.connect()
        await alice.join("restart-never")
        await alice.publish()
        await carol.join("restart-never")
        await wait_until(lambda: len(carol.streams("video")) == 1)
        room = server.rooms.rooms["restart-never"]
        carol_id = carol.participant_id or ""
        peer = room.participants[carol_id].subscriber
        assert peer is not None

        async def ignore(sdp: str) -> None:  # carol stops answering
            return None

        carol._on_subscribe_offer = ignore  # type: ignore[method-assign]
        reply = await carol.request({"type": "restart_ice"})
        assert reply["type"] == "ok"
        await wait_until(lambda: carol_id not in room.participants, timeout=15)
        assert peer.ice.restarts == 0 and peer.ice.failed
        await alice.wait_for(
            lambda d: d["type"] == "participant_left" and d["participant_id"] == carol_id
        )
        bye = await carol.wait_for(lambda d: d["type"] == "bye")
        assert bye["code"] == "peer_failed" and "ICE restart" in bye["reason"], bye
    finally:
        await alice.close()
        await carol.close()


async def test_an_ice_restart_in_progress_holds_off_the_peer_timeout(
    monkeypatch: Any,
) -> None:
    """A client that lost its path restarts ICE: while the restart runs, its silence is not
    taken for death (the restart has its own time limit)."""
    peer = PublisherPeer("p", lambda s: None, PeerSettings(peer_timeout=5.0), "room 'r' p")
    failures: list[str] = []
    peer.on_failed = lambda code, reason: failures.append(code)

    class Raw:
        checked_at = 0.0

        def probe(self) -> None:
            pass

        def detach_sink(self) -> None:
            pass

        def stop_probing(self) -> None:
            pass

    try:
        peer.raw = Raw()  # type: ignore[assignment]
        peer.heard_at = 100.0
        monkeypatch.setattr(plane.IceRestarter, "restarting", property(lambda self: True))
        assert peer.check_liveness(130.0) and not failures
        monkeypatch.setattr(plane.IceRestarter, "restarting", property(lambda self: False))
        assert not peer.check_liveness(130.0) and failures == ["peer_timeout"]
    finally:
        await peer.close()
