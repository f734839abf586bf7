"""SIGTERM with ``cluster.drain_timeout``: the server takes no new room, the calls in
progress go on (media keeps flowing, their rooms take joins), ``/healthz`` says
``draining``; it exits 0 once the last call has ended, or when the timeout passes (the
clients left are told ``bye``), or at once on a second signal.  Real processes, stopped by
PID; two nodes on one Redis for the cluster's part."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.clients import SignalingClient
from support.redis_server import RedisServer
from support.serving import SfuProcess, start_sfu
from support.waiting import wait_until

from sfu.cluster import supervisor as supervisor_module
from sfu.cluster.supervisor import Supervisor


def health(server: SfuProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())["status"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["status"]


async def exits(server: SfuProcess, timeout: float) -> int | None:
    """Its exit code, or None if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return server.proc.returncode
        await asyncio.sleep(0.1)
    return None


async def test_a_draining_server_lets_its_calls_finish(tmp_path: Path) -> None:
    server = start_sfu(log=tmp_path / "sfu.log", config_yaml="cluster: {drain_timeout: 60}\n")
    publisher = SignalingClient(server.ws_url, "pub")
    viewer = SignalingClient(server.ws_url, "viewer")
    late = SignalingClient(server.ws_url, "late")
    stranger = SignalingClient(server.ws_url, "stranger")
    try:
        await server.wait_healthy()
        await publisher.connect()
        await publisher.join("call")
        await publisher.publish()
        await viewer.connect()
        await viewer.join("call")
        await wait_until(lambda: viewer.has_media(publishers=1), timeout=30)

        server.proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: health(server) == (503, "draining"), timeout=10)
        # the call goes on: media flows, its room takes a newcomer ...
        viewer.received.clear()
        await wait_until(lambda: viewer.has_media(publishers=1), timeout=15)
        await late.connect()
        joined = await late.join("call")
        assert sorted(p["name"] for p in joined["participants"]) == ["pub", "viewer"]
        # ... but no new room opens here
        await stranger.connect()
        reply = await stranger.request({"type": "join", "room": "elsewhere", "name": "s"})
        assert reply["type"] == "error" and reply["code"] == "draining", reply
        await stranger.close()
        assert server.proc.poll() is None
        assert not any(m["type"] == "bye" for c in (publisher, viewer) for m in c.messages)

        for client in (late, viewer):
            await client.close()
        assert server.proc.poll() is None  # the publisher is still in its call
        await publisher.close()
        code = await exits(server, 15)  # the last call ended: well before the 60 s
        log = server.log.read_text()
        assert code == 0, log
        assert "drained in" in log and "Traceback" not in log
    finally:
        for client in (publisher, viewer, late, stranger):
            await client.close()
        await server.aclose()


async def test_the_drain_ends_at_its_timeout_or_a_second_signal(tmp_path: Path) -> None:
    """A client that stays is told ``bye`` when the drain times out; with a long timeout, a
    second SIGTERM ends the drain at once."""
    for timeout, second_signal in ((2, False), (600, True)):
        server = start_sfu(
            log=tmp_path / f"sfu-{timeout}.log",
            config_yaml=f"cluster: {{drain_timeout: {timeout}}}\n",
        )
        client = SignalingClient(server.ws_url, "stays")
        try:
            await server.wait_healthy()
            await client.connect()
            await client.join("long-call")
            server.proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            await wait_until(lambda: health(server) == (503, "draining"), timeout=10)  # noqa: B023
            if second_signal:
                await asyncio.sleep(1.0)
                assert server.proc.poll() is None
                server.proc.send_signal(signal.SIGTERM)
            bye = await client.wait_for(lambda m: m["type"] == "bye", timeout=20)
            assert bye["code"] == "shutdown"
            assert await exits(server, 15) == 0, server.log.read_text()
            took = time.monotonic() - sent
            assert took >= (1.0 if second_signal else timeout) and took < 20, took
        finally:
            await client.close()
            await server.aclose()


async def test_a_draining_node_places_new_rooms_on_the_others(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Two nodes on one Redis; east drains: its call goes on (a participant through west
    still receives east's publisher), a new room asked of east is placed on west, and east
    exits once its call has ended."""
    cluster_yaml = (
        f"  redis_url: {redis.url}\n  heartbeat_interval: 0.5\n  heartbeat_timeout: 2.0\n"
    )
    east = start_sfu(
        log=tmp_path / "east.log",
        config_yaml=f"cluster:\n  node: east\n  drain_timeout: 60\n{cluster_yaml}",
    )
    west = start_sfu(
        log=tmp_path / "west.log", config_yaml=f"cluster:\n  node: west\n{cluster_yaml}"
    )
    publisher = SignalingClient(east.ws_url, "east-pub")
    viewer = SignalingClient(west.ws_url, "west-viewer")
    newcomer = SignalingClient(east.ws_url, "newcomer")
    try:
        for server in (east, west):
            await server.wait_healthy()
        await asyncio.sleep(1.0)  # both registered
        await publisher.connect()
        await publisher.join("ongoing")
        await publisher.publish()
        await viewer.connect()
        await viewer.join("ongoing")
        await wait_until(lambda: viewer.has_media(publishers=1), timeout=30)

        east.proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: health(east) == (503, "draining"), timeout=10)
        await asyncio.sleep(1.0)  # east's record says draining
        viewer.received.clear()
        await wait_until(lambda: viewer.has_media(publishers=1), timeout=15)
        assert not any(m["type"] == "bye" for c in (publisher, viewer) for m in c.messages)

        await newcomer.connect()
        await newcomer.join("fresh")
        await publisher.close()  # the call on east ends ...
        assert east.proc.poll() is None  # ... but the newcomer's WebSocket is still on east
        await newcomer.close()
        assert await exits(east, 15) == 0, east.log.read_text()
        logs = east.log.read_text()
        assert "join 'fresh': the room's worker is west" in logs, logs
        assert "drained in" in logs
        await viewer.wait_for(lambda m: m["type"] == "participant_left", timeout=10)
        assert west.proc.poll() is None
    finally:
        for client in (publisher, viewer, newcomer):
            await client.close()
        for server in (east, west):
            await server.aclose()


# -- the supervisor (sfu serve --workers N) passes the drain on -----------------------------

WORKER = """
import pathlib, signal, sys, time
ready = pathlib.Path(sys.argv[1])
def term(*_):  # a draining worker: its calls end after DRAIN seconds
    time.sleep(float(sys.argv[2]))
    sys.exit(0)
def interrupt(*_):  # stopped at once
    sys.exit(5)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGINT, interrupt)
ready.write_text("ready")
while True:
    time.sleep(0.05)
"""


async def run_supervisor(
    tmp_path: Path, redis_url: str, drain_timeout: float, worker_drains: float, signals: int
) -> tuple[list[int | None], float]:
    """One worker (the script above) under a Supervisor; SIGTERM ``signals`` times, 0.5 s
    apart; the worker's exit code and how long the stop took."""
    ready = tmp_path / f"ready-{drain_timeout}-{signals}"
    command = [sys.executable, "-c", WORKER, str(ready), str(worker_drains)]
    supervisor = Supervisor(command, 1, node="t", redis_url=redis_url, drain_timeout=drain_timeout)
    running = asyncio.ensure_future(supervisor.run())
    try:
        await wait_until(ready.exists, timeout=10)
        started = time.monotonic()
        for i in range(signals):
            if i:
                await asyncio.sleep(0.5)
            supervisor._stop(signal.SIGTERM)
        assert await asyncio.wait_for(running, 30) == 0
        process = supervisor.workers[0].process
        assert process is not None
        return [process.returncode], time.monotonic() - started
    finally:
        running.cancel()


async def test_the_supervisor_waits_for_its_workers_drain(
    tmp_path: Path, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url = redis.url
    monkeypatch.setattr(supervisor_module, "STOP_TIMEOUT", 0.3)
    # no drain: a worker still busy after STOP_TIMEOUT is killed
    codes, _ = await run_supervisor(tmp_path, redis_url, 0.0, 1.5, 1)
    assert codes == [-signal.SIGKILL]
    # drain_timeout: the worker gets that long, and exits by itself
    codes, took = await run_supervisor(tmp_path, redis_url, 5.0, 1.5, 1)
    assert codes == [0] and 1.5 <= took < 5.0, took
    # a second signal: the worker is told to stop at once (SIGINT)
    codes, took = await run_supervisor(tmp_path, redis_url, 60.0, 30.0, 2)
    assert codes == [5] and took < 5.0, took
