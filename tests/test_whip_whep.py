"""WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) with aiortc clients over real UDP on
loopback: a scalable stream published over WHIP reaches WebSocket and WHEP subscribers with
layer selection; the WHEP layer extension pins a layer; viewers follow their publisher; the
protocol's statuses and headers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp
from support.captures import CAPTURES
from support.serving import RunningServer, running
from support.waiting import wait_until
from support.whip import SDP, WhepViewer, WhipPublisher, post_offer

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu.adapters import aiortc_plane as plane
from sfu.auth.tokens import create_token
from sfu.config import load_settings
from sfu.sdp.fragment import parse_fragment
from sfu.signaling.server import create_app

SECRET = "s" * 40
CONFIG = f"""
auth:
  secret: {SECRET}
ice:
  servers:
    - urls: ["stun:stun.example.net:3478"]
    - urls: ["turn:turn.example.net?transport=udp"]
      username: user
      credential: pass
"""
VP9 = CAPTURES / "vp9_L3T3_KEY.sfucap"


def token(room: str, identity: str, grants: set[str]) -> str:
    return create_token(
        SECRET.encode(), room=room, identity=identity, grants=grants, ttl=600, now=time.time()
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    path = tmp_path / "sfu.yaml"
    path.write_text(CONFIG)
    async with running(create_app(load_settings(path), str(path))) as running_server:
        yield running_server


def top_sid(peer: SimSubscriber, seconds: float = 1.0) -> int:
    since = time.monotonic() - seconds
    return max((sid for at, sid, _ in peer.layers if at >= since), default=-1)


async def test_whip_publishes_a_scalable_stream_to_every_kind_of_subscriber(
    server: RunningServer,
) -> None:
    publisher = WhipPublisher(
        server.url, "room", read_capture(VP9), token("room", "camera-1", {"publish"})
    )
    small = SimSubscriber(server.ws_url, "small", window=(320, 180))
    small.token = token("room", "small", {"subscribe"})
    viewer = WhepViewer(server.url, "room", token=token("room", "tv", {"subscribe"}))
    try:
        await small.connect("room")
        await publisher.publish()
        reply = publisher.reply
        assert reply is not None and reply.status == 201
        assert reply.headers["Content-Type"] == SDP and reply.body.startswith("v=0")
        assert reply.location is not None and reply.location.startswith("/whip/room/")
        assert reply.headers["ETag"].startswith('"')
        assert reply.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
        assert reply.links() == [
            '<stun:stun.example.net:3478>; rel="ice-server"',
            '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user";'
            ' credential="pass"; credential-type="password"',
        ]
        # a participant like any other, named by its token
        joined = await small.wait_for(lambda m: m["type"] == "participant_joined", 5)
        assert joined["participant"]["name"] == "camera-1"
        # the small window gets the base layer; the WHEP viewer (no window) the top one
        played = await viewer.play()
        assert played.status == 201, played.body
        await wait_until(lambda: top_sid(viewer) == 2, 20)
        await wait_until(lambda: top_sid(small) == 0 and len(small.layers) > 50, 10)
        assert max(sid for _, sid, _ in small.layers[-50:]) == 0

        # DELETE ends the session: the others see it leave
        assert await publisher.delete() == 200
        await small.wait_for(lambda m: m["type"] == "participant_left", 5)
        assert await publisher.delete() == 404
    finally:
        await viewer.close()
        await small.close()
        await publisher.close()


async def test_whep_layer_extension_and_query_pin_a_layer(server: RunningServer) -> None:
    publisher = ReplayPublisher(server.ws_url, "pub", read_capture(VP9))
    publisher.token = token("room", "pub", {"publish"})
    viewer = WhepViewer(server.url, "room", token=token("room", "tv", {"subscribe"}))
    pinned = WhepViewer(
        server.url, "room", "?spatial=1&temporal=2", token=token("room", "tv2", {"subscribe"})
    )
    try:
        await publisher.connect("room")
        await publisher.publish()
        assert (await viewer.play()).status == 201
        assert (await pinned.play()).status == 201
        await wait_until(lambda: top_sid(viewer) == 2, 20)
        await wait_until(lambda: top_sid(pinned) == 1, 10)
        # the media comes on the SSRCs the answer signals (a browser drops any other)
        assert viewer.reply is not None
        signalled = {
            int(line.split()[0][7:])
            for line in viewer.reply.body.splitlines()
            if line.startswith("a=ssrc:")
        }
        assert set(viewer.checkers) <= signalled, (set(viewer.checkers), signalled)
        # the draft's layer extension: a JSON layer choice, then DELETE for automatic
        assert await viewer.select({"spatialLayerId": 0, "temporalLayerId": 2}) == 204
        await wait_until(lambda: top_sid(viewer) == 0, 10)
        assert await viewer.select({"maxWidth": 640, "maxHeight": 360}) == 204
        await wait_until(lambda: top_sid(viewer) == 1, 10)
        assert await viewer.select(None) == 204
        await wait_until(lambda: top_sid(viewer) == 2, 10)
        assert await viewer.select({"spatialLayerId": 9}) == 400
        assert top_sid(pinned) == 1
    finally:
        await viewer.close()
        await pinned.close()
        await publisher.close()


async def test_a_whep_viewer_follows_its_publisher_and_switches_when_it_leaves(
    server: RunningServer,
) -> None:
    first = ReplayPublisher(server.ws_url, "first", read_capture(VP9))
    first.token = token("room", "first", {"publish"})
    second = ReplayPublisher(server.ws_url, "second", read_capture(VP9))
    second.token = token("room", "second", {"publish"})
    latest = WhepViewer(server.url, "room", token=token("room", "v1", {"subscribe"}))
    named = WhepViewer(
        server.url, "room", "?participant=first", token=token("room", "v2", {"subscribe"})
    )
    try:
        await first.connect("room")
        await first.publish()
        await second.connect("room")
        await second.publish()
        assert (await latest.play()).status == 201
        assert (await named.play()).status == 201
        await wait_until(lambda: top_sid(latest) == 2 and top_sid(named) == 2, 20)

        def plays(viewer: WhepViewer) -> set[str]:
            room = server.rooms.rooms["room"]
            peer = next(p for p in room.participants.values() if p.name == viewer.name).subscriber
            return {track.split(":")[0] for track in peer.downtracks}

        latest.name, named.name = "v1", "v2"
        assert plays(latest) == {second.participant_id}
        assert plays(named) == {first.participant_id}
        # the latest publisher leaves: its viewer goes on with the other, on the same
        # stream (no renegotiation, sequence numbers going on)
        video_ssrc = max(latest.checkers)
        before = len(latest.layers)
        await second.close()
        await wait_until(lambda: plays(latest) == {first.participant_id}, 10)
        await wait_until(lambda: len(latest.layers) > before + 60, 15)
        assert set(latest.checkers) == {video_ssrc}  # the same outgoing SSRC
        seen = latest._seen[video_ssrc]
        assert seen.highest is not None
        assert latest.lost < 50, latest.lost  # no jump read as a mass loss
    finally:
        for peer in (latest, named, first, second):
            await peer.close()


async def test_statuses_and_headers(server: RunningServer) -> None:
    url = server.url
    good = token("room", "cam", {"publish"})
    async with aiohttp.ClientSession() as http:
        offer = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        # no token on a server with a secret: 401 with a challenge
        reply = await post_offer(http, f"{url}/whip/room", offer)
        assert reply.status == 401 and "WWW-Authenticate" in reply.headers
        # a tampered token; a token for another room; one without the grant
        assert (await post_offer(http, f"{url}/whip/room", offer, good + "x")).status == 401
        assert (await post_offer(http, f"{url}/whip/other", offer, good)).status == 401
        watch = token("room", "tv", {"subscribe"})
        assert (await post_offer(http, f"{url}/whip/room", offer, watch)).status == 403
        assert (await post_offer(http, f"{url}/whep/room", offer, good)).status == 403
        # not SDP; an SDP that cannot be answered; a room name out of its pattern
        headers = {"Authorization": f"Bearer {good}", "Content-Type": "text/plain"}
        async with http.post(f"{url}/whip/room", data=b"x", headers=headers) as response:
            assert response.status == 415 and response.headers["Accept-Post"] == SDP
        reply = await post_offer(http, f"{url}/whip/room", offer, good)
        assert reply.status == 400 and "cannot answer" in reply.body
        assert (await post_offer(http, f"{url}/whip/bad%20room", offer, good)).status == 404
        # an offer over the bound
        reply = await post_offer(http, f"{url}/whip/room", "v=0\r\n" + "a=x\r\n" * 20000, good)
        assert reply.status == 413
        # nothing of the refused sessions is left
        assert "room" not in server.rooms.rooms or not server.rooms.rooms["room"].participants
        # CORS preflight of the endpoint
        async with http.options(
            f"{url}/whip/room",
            headers={"Origin": "https://studio.example", "Access-Control-Request-Method": "POST"},
        ) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://studio.example"
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
        # resources that do not exist
        auth = {"Authorization": f"Bearer {good}"}
        async with http.delete(f"{url}/whip/room/nope", headers=auth) as response:
            assert response.status == 404


async def test_patch_trickles_candidates_and_guards_the_session(server: RunningServer) -> None:
    good = token("room", "cam", {"publish"})
    publisher = WhipPublisher(server.url, "room", read_capture(VP9), good)
    try:
        await publisher.publish()
        reply = publisher.reply
        assert reply is not None and reply.location is not None
        resource = server.url + reply.location
        etag = reply.headers["ETag"]
        http = publisher.http
        fragment = (
            "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
            "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
        )
        local = publisher.pc.localDescription.sdp
        ufrag = local.split("a=ice-ufrag:")[1].split("\r\n")[0]
        pwd = local.split("a=ice-pwd:")[1].split("\r\n")[0]
        body = fragment.format(ufrag=ufrag, pwd=pwd).encode()
        frag_type = "application/trickle-ice-sdpfrag"

        async def patch(headers: dict[str, str], data: bytes = body) -> int:
            async with http.patch(resource, data=data, headers=headers) as response:
                return response.status

        auth = {"Authorization": f"Bearer {good}"}
        typed = {**auth, "Content-Type": frag_type}
        assert await patch({**typed, "If-Match": etag}) == 204  # trickled
        # each trickled candidate is a destination for our checks: bounded per session
        many = "".join(f"a=candidate:{n} 1 udp 1 192.0.2.{n} 9 typ host\r\n" for n in range(1, 33))
        assert await patch({**typed, "If-Match": etag}, many.encode()) == 422
        assert await patch(typed) == 428  # no If-Match
        assert await patch({**typed, "If-Match": '"stale"'}) == 412
        assert await patch({**auth, "Content-Type": "text/plain", "If-Match": etag}) == 415
        assert await patch({**typed, "If-Match": etag}, b"a=candidate:garbage\r\n") == 400
        assert await patch({**typed, "If-Match": etag}, b"a=ice-ufrag:x\r\n") == 400
        other = {"Authorization": f"Bearer {token('room', 'cam', {'publish'})}x"}
        assert await patch({**other, "Content-Type": frag_type, "If-Match": etag}) == 401
        assert await patch({"Content-Type": frag_type, "If-Match": etag}) == 401

        # an ICE restart (If-Match: *): new credentials both ways, a new ETag, media going on
        server_peer = next(iter(server.rooms.rooms["room"].participants.values())).publisher
        assert server_peer is not None
        await wait_until(lambda: server_peer.ice.connected, 10)
        received = sum(s.stats.packets_received for s in server_peer.sources.values())
        client_ice = plane.IceRestarter(publisher.pc)
        await client_ice.begin()
        transport = plane.dtls_transport_of(publisher.pc)
        assert transport is not None
        connection = transport.transport._connection
        candidates = "".join(
            f"a=candidate:{candidate_to_sdp(c)}\r\n"
            for c in transport.transport.iceGatherer.getLocalCandidates()
        )
        restart = (
            f"a=ice-ufrag:{connection.local_username}\r\na=ice-pwd:{connection.local_password}"
            f"\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{candidates}a=end-of-candidates\r\n"
        )
        async with http.patch(
            resource, data=restart.encode(), headers={**typed, "If-Match": "*"}
        ) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"] == frag_type
            new_etag = response.headers["ETag"]
            answer = parse_fragment(await response.text())
        assert new_etag != etag and answer.ufrag and answer.candidates
        await client_ice.set_remote(
            plane.RemoteIce(
                answer.ufrag,
                answer.pwd or "",
                [candidate_from_sdp(value) for _, value in answer.candidates],
                True,
            )
        )
        await wait_until(lambda: server_peer.ice.restarts == 1 and client_ice.restarts == 1, 15)
        await wait_until(
            lambda: (
                sum(s.stats.packets_received for s in server_peer.sources.values()) > received + 100
            ),
            10,
        )
        # the old ETag is stale now
        assert await patch({**typed, "If-Match": etag}) == 412
    finally:
        await publisher.close()
