"""Cascading (issue 17): one room over two workers.  A participant whose WebSocket reaches
another worker than the room's, once the room's worker holds `room_participants_per_worker`,
stays there; the tracks cross the media link between the workers once, and each subscriber
gets its own layers where it is, decodable, as a local one would."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.captures import CAPTURES
from support.clients import SignalingClient
from support.cluster import Cluster, running_cluster, two_nodes
from support.redis_server import RedisServer
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from loadtest.server import server_stats
from sfu.adapters import aiortc_plane as plane
from sfu.cluster.wire import members_key


@pytest.fixture
async def cluster(redis: RedisServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(
        redis.url, tmp_path / "sfu.log", extra_yaml="  room_participants_per_worker: 1\n"
    ) as running:
        yield running


def rooms(cluster: Cluster, index: int) -> dict[str, list[str]]:
    stats = cluster.stats(index, admin=True)
    return {
        name: sorted(p["name"] for p in room["participants"])
        for name, room in stats["rooms"].items()
    }


async def test_a_room_over_two_workers(cluster: Cluster, redis: RedisServer) -> None:
    alice = SignalingClient(cluster.ws(0), "alice")
    bob: SignalingClient | None = None
    carol: SignalingClient | None = None
    try:
        await alice.connect()
        await alice.join("big")
        await alice.publish()
        host = 0 if "big" in rooms(cluster, 0) else 1
        other = 1 - host
        # bob reaches the other worker: the room's worker holds its one participant, so bob
        # stays where he is, and alice's tracks come to him over the media link
        bob = SignalingClient(cluster.ws(other), "bob")
        await bob.connect()
        joined = await bob.join("big")
        assert [p["name"] for p in joined["participants"]] == ["alice"]

        def tracks_known(client: SignalingClient, reply: dict[str, object]) -> int:
            announced = [m for m in client.messages if m["type"] == "track_published"]
            return len(reply["tracks"]) + len(announced)  # type: ignore[arg-type]

        await wait_until(lambda: bob is not None and tracks_known(bob, joined) == 2, timeout=20)
        await bob.publish()
        await wait_until(lambda: bob is not None and bob.has_media(publishers=1), timeout=30)
        await wait_until(lambda: alice.has_media(publishers=1), timeout=30)
        # each worker holds its own participant and mirrors the other's
        assert rooms(cluster, host) == {"big": ["alice", "bob"]}
        assert rooms(cluster, other) == {"big": ["alice", "bob"]}
        for index in (host, other):
            cascade = cluster.stats(index, admin=True)["cluster"]["cascade"]
            assert cascade["tracks_in"] == 2 and cascade["tracks_out"] == 2, cascade
        client = aioredis.from_url(redis.url, decode_responses=True)
        try:
            members = await client.hgetall(members_key("big"))
        finally:
            await client.aclose()
        assert sorted(members.values()) == ["1", "1"]

        # carol on the room's worker sees and receives both, bob's through the link
        carol = SignalingClient(cluster.ws(host), "carol")
        await carol.connect()
        joined = await carol.join("big")
        assert sorted(p["name"] for p in joined["participants"]) == ["alice", "bob"]
        await wait_until(lambda: carol is not None and carol.has_media(publishers=2), timeout=30)

        # bob leaves: the others are told, and his worker lets the room go
        await bob.leave()
        await alice.wait_for(
            lambda m: (
                m["type"] == "participant_left"
                and m["participant_id"] == joined["participants"][1]["participant_id"]
                if joined["participants"][1]["name"] == "bob"
                else m["type"] == "participant_left"
            ),
            timeout=10,
        )
        await wait_until(lambda: rooms(cluster, other) == {}, timeout=10)
        assert rooms(cluster, host) == {"big": ["alice", "carol"]}
    finally:
        for c in (alice, bob, carol):
            if c is not None:
                await c.close()


async def test_a_cascaded_subscriber_gets_its_own_layers_decodable(cluster: Cluster) -> None:
    """The VP9 L3T3 capture through the link: a subscriber on the other worker with a small
    window gets the lowest spatial layer, one with a large window all three; every frame
    either receives is decodable."""
    plane.install()  # this process's peers negotiate as the server's do (VP9)
    capture = read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    publisher = ReplayPublisher(cluster.ws(0), "pub", capture)
    small: SimSubscriber | None = None
    large: SimSubscriber | None = None
    try:
        await publisher.connect("layers")
        await publisher.publish()
        host = 0 if "layers" in rooms(cluster, 0) else 1
        other = 1 - host
        small = SimSubscriber(cluster.ws(other), "small", window=(320, 180))
        large = SimSubscriber(cluster.ws(other), "large", window=(1280, 720))
        await small.connect("layers")
        await large.connect("layers")
        assert rooms(cluster, other) == {"layers": ["large", "pub", "small"]}

        def enough() -> bool:
            return all(
                s is not None and sum(c.frames_decodable for c in s.checkers.values()) >= 60
                for s in (small, large)
            )

        await wait_until(enough, timeout=40)
        for subscriber, spatial in ((small, {0}), (large, {0, 1, 2})):
            assert subscriber is not None
            checkers = list(subscriber.checkers.values())
            assert sum(c.frames_undecodable for c in checkers) == 0
            recent = {sid for at, sid, _ in subscriber.layers[-200:]}
            assert recent == spatial, (subscriber.name, recent)
    finally:
        for peer in (publisher, small, large):
            if peer is not None:
                await peer.close()


async def test_datagrams_from_anyone_but_a_worker_are_refused_by_the_media_link(
    cluster: Cluster, redis: RedisServer
) -> None:
    """The media link's port is reachable by whoever reaches the node: datagrams from an
    address that is no worker's link (here: loopback, another port), forged or replayed,
    are dropped and counted before any parsing; the room's media goes on."""
    import os
    import socket

    from sfu.cluster.store import ClusterStore

    alice = SignalingClient(cluster.ws(0), "alice")
    bob: SignalingClient | None = None
    store = ClusterStore(redis.url, ttl=5.0)
    try:
        await alice.connect()
        await alice.join("attacked")
        await alice.publish()
        host = 0 if "attacked" in rooms(cluster, 0) else 1
        bob = SignalingClient(cluster.ws(1 - host), "bob")
        await bob.connect()
        await bob.join("attacked")
        await wait_until(lambda: bob is not None and bob.has_media(publishers=1), timeout=30)
        target = cluster.stats(1 - host, admin=True)["cluster"]
        record = {w.worker: w for w in await store.workers()}[target["worker"]]
        assert record.relay_host is not None and record.relay_port is not None
        refused = target["cascade"]["link"]["refused"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for i in range(500):
                size = 12 + i % 1400
                datagram = bytes([0x80, 96 if i % 2 else 200]) + os.urandom(size)
                attacker.sendto(datagram, (record.relay_host, record.relay_port))
        await wait_until(
            lambda: (
                cluster.stats(1 - host, admin=True)["cluster"]["cascade"]["link"]["refused"]
                >= refused + 400
            ),
            timeout=10,
        )
        before = sum(len(p) for p in bob.streams("video").values())
        await wait_until(
            lambda: (
                bob is not None and sum(len(p) for p in bob.streams("video").values()) > before + 30
            ),
            timeout=10,
        )
    finally:
        await store.close()
        for c in (alice, bob):
            if c is not None:
                await c.close()


async def test_two_nodes_keep_their_participants_and_cascade_the_tracks(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Two nodes: a participant whose WebSocket reaches the node that does not hold the
    room stays there (cascade_across_nodes, the default); the tracks cross once."""
    async with two_nodes(redis, tmp_path) as servers:
        east = SignalingClient(servers[0].ws_url, "east-pub")
        west = SignalingClient(servers[1].ws_url, "west-sub")
        try:
            await east.connect()
            await east.join("global")
            await east.publish()
            await west.connect()
            joined = await west.join("global")
            logs = "\n".join(
                line
                for node in ("east", "west")
                for line in (tmp_path / f"{node}.log").read_text().splitlines()
                if "cluster:" in line or "cascade:" in line
            )
            assert [p["name"] for p in joined["participants"]] == ["east-pub"], logs
            await wait_until(lambda: west.has_media(publishers=1), timeout=30)
            for server, node in zip(servers, ("east", "west"), strict=True):
                stats = server_stats(server.url, server.port)
                cluster = stats["cluster"]
                assert cluster["node"] == node
                assert cluster["relayed_connections"] == cluster["hosted_connections"] == 0
                names = sorted(p["name"] for p in stats["rooms"]["global"]["participants"])
                assert names == ["east-pub", "west-sub"]
            cascade = server_stats(servers[1].url, servers[1].port)["cluster"]["cascade"]
            assert cascade["tracks_in"] == 2 and cascade["link"]["received"] > 100

            # a mute on east reaches west's participants, and west forwards nothing of it
            tracks = [t for t in joined["tracks"]] + [
                m["track"] for m in west.messages if m["type"] == "track_published"
            ]
            video = next(t["track_id"] for t in tracks if t["kind"] == "video")

            def video_packets() -> int:
                return sum(len(p) for p in west.streams("video").values())

            for muted in (True, False):
                reply = await east.request({"type": "mute", "track_id": video, "muted": muted})
                assert reply["type"] == "ok", reply
                told = await west.wait_for(
                    lambda m, muted=muted: m["type"] == "track_muted" and m["muted"] is muted,
                    timeout=5,
                )
                assert told["participant_id"] == east.participant_id
                await asyncio.sleep(0.5)  # what was in flight
                before = video_packets()
                await asyncio.sleep(1.5)
                if muted:
                    assert video_packets() == before
                else:
                    assert video_packets() > before + 10
        finally:
            await east.close()
            await west.close()


async def test_a_node_that_stops_moves_its_clients_to_the_others(
    redis: RedisServer, tmp_path: Path
) -> None:
    """SIGTERM on a node while another runs: its clients are told ``moved`` (not
    ``shutdown``), the other node drops the stopped node's participants at once (it buried
    itself), and a client that joins again through the other node is back in the room."""
    async with two_nodes(redis, tmp_path) as servers:
        east = SignalingClient(servers[0].ws_url, "east-pub")
        west = SignalingClient(servers[1].ws_url, "west-sub")
        again = SignalingClient(servers[1].ws_url, "east-pub")
        try:
            await east.connect()
            await east.join("moving")
            await east.publish()
            await west.connect()
            await west.join("moving")
            await wait_until(lambda: west.has_media(publishers=1), timeout=30)

            servers[0].proc.send_signal(signal.SIGTERM)
            bye = await east.wait_for(lambda m: m["type"] == "bye", timeout=10)
            assert bye["code"] == "moved"
            await west.wait_for(lambda m: m["type"] == "participant_left", timeout=10)
            assert await asyncio.to_thread(servers[0].proc.wait, 15) == 0

            await again.connect()
            joined = await again.join("moving")
            assert [p["name"] for p in joined["participants"]] == ["west-sub"]
            await again.publish()
            west.received.clear()
            await wait_until(lambda: west.has_media(publishers=1), timeout=30)
        finally:
            for client in (east, west, again):
                await client.close()


class _Store:
    def __init__(self, members: dict[str, int], holder: str) -> None:
        self.members, self._holder = members, holder

    async def set_member(self, room: str, worker: str, count: int) -> dict[str, int]:
        self.members[worker] = count
        return dict(self.members)

    async def holder(self, room: str) -> str:
        return self._holder


class _Worker:
    """What the cascade asks of its worker, with the envelopes it publishes recorded."""

    def __init__(self, me: str, store: _Store, live: set[str]) -> None:
        self.worker_id = me
        self.store = store
        self.live = dict.fromkeys(live)
        self.published: list[tuple[str, str]] = []

    async def refresh(self) -> None:
        return None

    async def _publish(self, worker: str, envelope: Any, timeout: float) -> bool:
        self.published.append((worker, json.loads(envelope.text)["kind"]))
        return True


async def test_a_member_known_by_its_hello_is_still_asked_for_its_state() -> None:
    """A worker's hello can come before this worker holds the room (its events for a room
    not here are passed over); the first local join must then ask it for its state, or the
    newcomer never sees that worker's participants (seen once in CI: joined listed nobody
    and no media crossed)."""
    from sfu.cluster.wire import MemberInfo, RoomEvent
    from sfu.rooms.room import RoomManager
    from sfu.signaling.cascade import Cascade

    worker = _Worker("west", _Store({"east": 1}, holder="west"), live={"east", "west"})
    rooms = RoomManager()
    cascade = Cascade(worker, rooms)  # type: ignore[arg-type]
    await cascade.on_event(RoomEvent(kind="hello", room="global", worker="east"))
    assert worker.published == [("east", "state")]  # our (empty) state, for its join
    entering = asyncio.ensure_future(cascade.enter("global"))
    await wait_until(lambda: ("east", "hello") in worker.published, 2, interval=0.01)
    east_pub = MemberInfo(participant_id="p-east", name="east-pub", tracks=[])
    await cascade.on_event(
        RoomEvent(kind="state", room="global", worker="east", participants=[east_pub])
    )
    await asyncio.wait_for(entering, 2)
    mirror = rooms.rooms["global"].participants["p-east"]
    assert mirror.mirror_of == "east" and mirror.name == "east-pub"


async def test_only_a_tracks_own_worker_mutes_or_unpublishes_it() -> None:
    """``muted`` and ``unpublished`` room events act on a mirror's track only when they
    come from the worker that mirror is of: another member cannot silence or remove it."""
    from sfu.cluster.wire import MemberInfo, RoomEvent, TrackDescription
    from sfu.rooms.room import RoomManager
    from sfu.signaling.cascade import Cascade

    worker = _Worker("west", _Store({"east": 1}, holder="west"), live={"east", "west", "north"})
    rooms = RoomManager()
    cascade = Cascade(worker, rooms)  # type: ignore[arg-type]
    track = TrackDescription(
        track_id="p-east:1",
        kind="video",
        source_type="camera",
        mime_type="video/VP8",
        clock_rate=90000,
        payload_type=96,
        ssrc=1234,
    )
    entering = asyncio.ensure_future(cascade.enter("global"))
    await wait_until(lambda: ("east", "hello") in worker.published, 2, interval=0.01)
    east_pub = MemberInfo(participant_id="p-east", name="east-pub", tracks=[track])
    await cascade.on_event(
        RoomEvent(kind="state", room="global", worker="east", participants=[east_pub])
    )
    await asyncio.wait_for(entering, 2)
    mirror = rooms.rooms["global"].participants["p-east"]
    source = mirror.sources["p-east:1"]
    muted = track.model_copy(update={"muted": True})
    for forged in (
        RoomEvent(
            kind="muted", room="global", worker="north", participant_id="p-east", track=muted
        ),
        RoomEvent(
            kind="unpublished",
            room="global",
            worker="north",
            participant_id="p-east",
            track_id="p-east:1",
        ),
    ):
        await cascade.on_event(forged)
    assert not source.muted and "p-east:1" in mirror.sources
    await cascade.on_event(
        RoomEvent(kind="muted", room="global", worker="east", participant_id="p-east", track=muted)
    )
    assert source.muted
    await cascade.on_event(
        RoomEvent(
            kind="unpublished",
            room="global",
            worker="east",
            participant_id="p-east",
            track_id="p-east:1",
        )
    )
    assert "p-east:1" not in mirror.sources
