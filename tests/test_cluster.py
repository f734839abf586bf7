"""Several workers coordinated through a real Redis (issue 17): placement, the signaling
relay between workers, a worker killed mid-call, and the edge's bounds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from support.clients import SignalingClient
from support.cluster import Cluster, consecutive_free_ports, running_cluster
from support.redis_server import RedisServer
from support.serving import start_sfu
from support.waiting import wait_until

from sfu.cluster.placement import least_loaded
from sfu.cluster.store import ClusterStore
from sfu.cluster.supervisor import SupervisorError, redacted, split_port_range
from sfu.cluster.wire import Envelope, WorkerInfo, inbox, room_key, worker_key
from sfu.config import ConfigError, parse_settings


def info(
    worker: str, cpu: float = 0.0, participants: int = 0, draining: bool = False
) -> WorkerInfo:
    return WorkerInfo(
        worker=worker,
        node="n",
        pid=1,
        rooms=0,
        participants=participants,
        forwarded_per_second=0,
        cpu=cpu,
        draining=draining,
    )


# -- sans-IO --------------------------------------------------------------------------------


def test_a_new_room_goes_to_the_least_loaded_worker_not_draining() -> None:
    assert least_loaded([]) is None
    workers = [info("a", cpu=0.6), info("b", cpu=0.2, participants=9), info("c", cpu=0.21)]
    # CPU counts in steps of 5 %: b and c are as busy, c has fewer participants
    assert least_loaded(workers) == workers[2]
    assert least_loaded([info("a", cpu=0.9), info("b", draining=True)]) == info("a", cpu=0.9)
    assert least_loaded([info("b", draining=True)]) is None


def test_the_media_ports_are_split_between_the_workers() -> None:
    assert split_port_range(None, 4, 1) is None
    assert split_port_range((40000, 40999), 4, 0) == (40000, 40249)
    assert split_port_range((40000, 40999), 4, 3) == (40750, 40999)
    with pytest.raises(SupervisorError, match="fewer ports"):
        split_port_range((40000, 40002), 4, 0)


def test_the_redis_password_is_never_printed() -> None:
    assert redacted("redis://:s3cret@10.0.0.2:6379/0") == "redis://:***@10.0.0.2:6379/0"
    assert redacted("rediss://sfu:s3cret@redis.lan/1") == "rediss://sfu:***@redis.lan/1"
    assert redacted("redis://10.0.0.2:6379/0") == "redis://10.0.0.2:6379/0"


def test_cluster_settings_are_checked() -> None:
    settings = parse_settings("cluster:\n  workers: auto\n")
    assert settings.cluster.worker_count(6) == 6
    assert parse_settings("").cluster.worker_count(6) == 1  # the default: one process
    with pytest.raises(ConfigError, match="twice heartbeat_interval"):
        parse_settings("cluster:\n  heartbeat_interval: 2\n  heartbeat_timeout: 3\n")
    with pytest.raises(ConfigError, match="workers"):
        parse_settings("cluster:\n  workers: 0\n")


# -- the store, on a real Redis ---------------------------------------------------------------


@pytest.fixture
def redis_url(redis: RedisServer) -> str:
    return redis.url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ClusterStore]:
    store = ClusterStore(redis_url, ttl=5.0)
    yield store
    await store.close()


async def test_a_room_has_one_holder_whoever_claims_it_first(store: ClusterStore) -> None:
    await store.register(info("a"))
    await store.register(info("b"))
    claims = await asyncio.gather(*(store.claim("r1", w) for w in ["a", "b"] * 10))
    assert len(set(claims)) == 1
    holder = claims[0]
    assert await store.holder("r1") == holder
    # the room counts in its holder's record at once, before the holder's next heartbeat
    assert {w.worker: w.rooms for w in await store.workers()}[holder] == 1
    # the holder dies (its record gone): the next claim takes the room over
    await store.unregister(holder)
    other = "b" if holder == "a" else "a"
    assert await store.claim("r1", other) == other
    # only the holder renews and releases it
    assert await store.renew(holder, ["r1"]) == ["r1"]
    assert await store.renew(other, ["r1"]) == []
    await store.release("r1", holder)
    assert await store.holder("r1") == other
    await store.release("r1", other)
    assert await store.holder("r1") is None


async def test_a_record_that_does_not_validate_is_skipped(store: ClusterStore) -> None:
    await store.register(info("good"))
    await store.redis.set(worker_key("bad"), '{"worker": 5}')
    await store.redis.set(worker_key("worse"), "\xff not json")
    assert [w.worker for w in await store.workers()] == ["good"]


async def test_records_and_claims_expire_without_a_heartbeat(redis_url: str) -> None:
    store = ClusterStore(redis_url, ttl=0.3)
    try:
        await store.register(info("a"))
        assert await store.claim("r", "a") == "a"
        await asyncio.sleep(0.6)
        assert await store.workers() == []
        assert await store.holder("r") is None
    finally:
        await store.close()


# -- workers behind one port -------------------------------------------------------------------


@pytest.fixture
async def cluster(redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(redis_url, tmp_path / "sfu.log") as running:
        yield running


async def test_a_room_lives_on_one_worker_whichever_worker_its_clients_reach(
    cluster: Cluster, store: ClusterStore
) -> None:
    alice = SignalingClient(cluster.ws(0), "alice")
    bob = SignalingClient(cluster.ws(1), "bob")
    try:
        await alice.connect()
        await bob.connect()
        await alice.join("spread")
        await alice.publish()
        joined = await bob.join("spread")
        assert [p["name"] for p in joined["participants"]] == ["alice"]
        await bob.publish()
        # media flows both ways, though one of them talks to the room's worker through the
        # other worker's WebSocket
        await wait_until(lambda: bob.has_media(publishers=1), timeout=30)
        await wait_until(lambda: alice.has_media(publishers=1), timeout=30)
        stats = [cluster.stats(i, admin=True) for i in range(2)]
        assert sorted(len(s["rooms"]) for s in stats) == [0, 1]  # one worker hosts it
        host = 0 if "spread" in stats[0]["rooms"] else 1
        assert len(stats[host]["rooms"]["spread"]["participants"]) == 2
        edge = 1 - host
        assert stats[edge]["cluster"]["relayed_connections"] == 1
        assert stats[host]["cluster"]["hosted_connections"] == 1
        assert sorted(stats[host]["cluster"]["live_workers"]) == sorted(
            s["cluster"]["worker"] for s in stats
        )
        # the host's record tells its load: its participants, what it forwards
        host_id = stats[host]["cluster"]["worker"]

        async def host_record() -> WorkerInfo:
            return {w.worker: w for w in await store.workers()}[host_id]

        deadline = asyncio.get_running_loop().time() + 10
        while (await host_record()).forwarded_per_second <= 0:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.25)
        record = await host_record()
        assert (record.participants, record.rooms) == (2, 1)
        assert record.relay_port is not None and record.relay_key is not None
        # a relayed request is answered as a local one is
        target = bob if edge == 1 else alice
        reply = await target.request({"type": "ping"})
        assert reply["type"] == "pong"
        # the relayed participant leaves: the room's worker sees it go
        await target.leave()
        await wait_until(
            lambda: len(cluster.stats(host, admin=True)["rooms"]["spread"]["participants"]) == 1
        )
        assert cluster.stats(edge, admin=True)["cluster"]["relayed_connections"] == 0
    finally:
        await alice.close()
        await bob.close()


async def test_a_killed_worker_is_restarted_and_its_clients_come_back(
    cluster: Cluster, redis_url: str
) -> None:
    alice = SignalingClient(cluster.ws(0), "alice")
    bob = SignalingClient(cluster.ws(1), "bob")
    carol: SignalingClient | None = None
    try:
        for client in (alice, bob):
            await client.connect()
        await alice.join("crash")
        await alice.publish()
        await bob.join("crash")
        await wait_until(lambda: bob.has_media(publishers=1), timeout=30)
        stats = [cluster.stats(i, admin=True) for i in range(2)]
        host = 0 if "crash" in stats[0]["rooms"] else 1
        host_pid = int(stats[host]["cluster"]["worker"].rsplit(":", 1)[1])
        # carol, on the other worker, in another room: it goes there too (the least loaded)
        carol = SignalingClient(cluster.ws(1 - host), "carol")
        await carol.connect()
        await carol.join("quiet")
        stats = [cluster.stats(i, admin=True) for i in range(2)]
        assert "quiet" in stats[1 - host]["rooms"]

        os.kill(host_pid, signal.SIGKILL)
        # the client whose WebSocket was on the other worker is told, and stays connected
        relayed = bob if host == 0 else alice
        bye = await relayed.wait_for(lambda m: m["type"] == "bye", timeout=15)
        assert bye["code"] == "worker_lost"
        # the worker is back (a new process)
        await wait_until(lambda: cluster.up(host), timeout=30)
        new = cluster.stats(host, admin=True)["cluster"]["worker"]
        assert int(new.rsplit(":", 1)[1]) != host_pid
        # the other worker's room was not disturbed
        reply = await carol.request({"type": "ping"})
        assert reply["type"] == "pong"
        assert "quiet" in cluster.stats(1 - host, admin=True)["rooms"]
        # they come back (new connections, as the demo client does), the room placed on a
        # live worker, and media flows again
        for client in (alice, bob):
            await client.close()
        alice = SignalingClient(cluster.ws(host), "alice")
        bob = SignalingClient(cluster.ws(1 - host), "bob")
        await alice.connect()
        await bob.connect()
        await alice.join("crash")
        await alice.publish()
        await bob.join("crash")
        await wait_until(lambda: bob.has_media(publishers=1), timeout=30)
    finally:
        for client in (alice, bob, carol):
            if client is not None:
                await client.close()


async def test_a_join_the_token_does_not_allow_is_never_placed(redis_url: str) -> None:
    """An edge checks the token before it claims a room in Redis: a client without a valid
    token cannot fill Redis with rooms, nor reach another worker."""
    base = consecutive_free_ports(2)
    secret = "s" * 48
    server = start_sfu(
        "--workers",
        "2",
        config_yaml=(
            f"auth:\n  secret: {secret}\ncluster:\n  redis_url: {redis_url}\n"
            f"  worker_ports_from: {base}\n"
        ),
    )
    try:
        await server.wait_healthy()
        running = Cluster(server, base, 2)
        await running.wait_up()
        async with aiohttp.ClientSession() as http:
            for index in range(2):
                ws = await http.ws_connect(running.ws(index))
                for i in range(5):
                    await ws.send_str(
                        json.dumps({"type": "join", "room": f"spam{i}", "name": "x", "id": i})
                    )
                    reply = json.loads((await ws.receive(timeout=10)).data)
                    assert reply["type"] == "error" and reply["code"] == "unauthorized"
                await ws.close()
        redis = aioredis.from_url(redis_url)
        try:
            assert [k async for k in redis.scan_iter(match=room_key("*"))] == []
        finally:
            await redis.aclose()
    finally:
        assert await server.aclose() == 0


async def test_garbage_in_a_worker_inbox_changes_nothing(cluster: Cluster, redis_url: str) -> None:
    workers = [cluster.stats(i, admin=True)["cluster"]["worker"] for i in range(2)]
    redis = aioredis.from_url(redis_url)
    try:
        for worker in workers:
            for junk in (
                b"\xff\x00",
                b"{}",
                b'{"kind": "open", "session": "x", "edge": "nobody", "host": "'
                + b"h" * 300
                + b'"}',
                json.dumps(
                    {"kind": "message", "session": "nope", "edge": "e", "host": worker, "text": "{"}
                ).encode(),
                json.dumps(
                    {"kind": "open", "session": "s", "edge": "e", "host": worker, "text": "[]"}
                ).encode(),
            ):
                await redis.publish(inbox(worker), junk)
    finally:
        await redis.aclose()
    # both workers still place and relay
    alice = SignalingClient(cluster.ws(0), "alice")
    bob = SignalingClient(cluster.ws(1), "bob")
    try:
        await alice.connect()
        await bob.connect()
        await alice.join("after-junk")
        joined = await bob.join("after-junk")
        assert [p["name"] for p in joined["participants"]] == ["alice"]
    finally:
        await alice.close()
        await bob.close()


async def test_calls_keep_their_media_through_a_redis_restart(
    cluster: Cluster, redis: RedisServer
) -> None:
    """Redis is only asked at joins and heartbeats: media never waits for it.  Restarted
    empty, it gets the workers' records and their rooms' claims back from their next
    heartbeats, and joins are placed as before."""
    alice = SignalingClient(cluster.ws(0), "alice")
    bob = SignalingClient(cluster.ws(1), "bob")
    carol = SignalingClient(cluster.ws(1), "carol")
    try:
        await alice.connect()
        await bob.connect()
        await alice.join("outage")
        await alice.publish()
        await bob.join("outage")
        await wait_until(lambda: bob.has_media(publishers=1), timeout=30)
        host = 0 if "outage" in cluster.stats(0, admin=True)["rooms"] else 1
        workers = sorted(cluster.stats(i, admin=True)["cluster"]["worker"] for i in range(2))

        # Redis goes down; a relayed request sent meanwhile is answered once it is back
        relayed = bob if host == 0 else alice
        await asyncio.to_thread(redis.stop)
        ping = asyncio.ensure_future(relayed.request({"type": "ping"}, timeout=15))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis.start)
        assert (await ping)["type"] == "pong"
        before = sum(len(p) for p in bob.streams("video").values())
        await asyncio.sleep(3.0)  # longer than the heartbeat timeout (2 s)
        assert sum(len(p) for p in bob.streams("video").values()) > before + 20

        async def registry() -> tuple[list[str], str | None]:
            client = aioredis.from_url(redis.url, decode_responses=True)
            try:
                keys = [k async for k in client.scan_iter(match=worker_key("*"))]
                return sorted(k.split(":", 2)[2] for k in keys), await client.get(
                    room_key("outage")
                )
            finally:
                await client.aclose()

        deadline = asyncio.get_running_loop().time() + 10
        while True:
            names, holder = await registry()
            if names == workers and holder is not None:
                break
            assert asyncio.get_running_loop().time() < deadline, (names, holder)
            await asyncio.sleep(0.2)
        assert holder == cluster.stats(host, admin=True)["cluster"]["worker"]
        # a new join lands in the same room, on its worker
        await carol.connect()
        joined = await carol.join("outage")
        assert sorted(p["name"] for p in joined["participants"]) == ["alice", "bob"]
        # nobody was sent away
        assert not [m for c in (alice, bob) for m in c.messages if m["type"] == "bye"]
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_an_envelope_reaches_a_listening_inbox_and_says_when_none_listens(
    store: ClusterStore,
) -> None:
    envelope = Envelope(kind="message", session="s1", edge="e", host="h", text='{"type":"ping"}')
    assert await store.send("h", envelope) is False  # nobody subscribed: the sender retries
    received: list[Envelope] = []

    async def listen() -> None:
        async for item in store.listen("h"):
            received.append(item)

    task = asyncio.ensure_future(listen())
    try:
        await asyncio.sleep(0.3)  # subscribed by then
        await store.redis.publish(inbox("h"), b"\xff\xfe not an envelope")
        assert await store.send("h", envelope) is True
        await wait_until(lambda: len(received) == 1, timeout=5)
        assert received == [envelope]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_rooms_placed_at_once_spread_over_idle_workers(store: ClusterStore) -> None:
    """A burst of new rooms (a load test, a morning) does not all land on one worker before
    its heartbeat tells its load: a claim counts in the holder's record at once."""
    for worker in ("a", "b", "c"):
        await store.register(info(worker))
    placed = []
    for i in range(6):
        best = least_loaded(await store.workers())
        assert best is not None
        placed.append(await store.claim(f"burst{i}", best.worker))
    assert sorted(placed) == ["a", "a", "b", "b", "c", "c"]
