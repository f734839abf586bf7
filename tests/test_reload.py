"""Live reload of room policies under a running room: the forwarded layer changes without
reconnecting; a malformed file changes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from support.captures import CAPTURES
from support.serving import RunningServer, running, serving, start_sfu
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import CountingSubscriber, ReplayPublisher
from sfu.config import load_settings
from sfu.signaling.server import create_app

POLICY = "rooms:\n  default:\n    max_spatial_layer: {layer}\n"


@pytest.fixture
async def configured(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, Path]]:
    path = tmp_path / "sfu.yaml"
    path.write_text(POLICY.format(layer=2))
    async with running(create_app(load_settings(path), str(path))) as server:
        yield server, path


async def reload(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/admin/reload", headers=headers) as r,
    ):
        return r.status, await r.json()


def top_layer(sub: CountingSubscriber, since: float) -> int:
    return max((sid for at, sid, _ in sub.layers if at >= since), default=-1)


async def test_reload_changes_the_forwarded_layer_without_reconnecting(
    configured: tuple[RunningServer, Path],
) -> None:
    server, path = configured
    url, ws = server.url, server.ws_url
    publisher = ReplayPublisher(ws, "pub", read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap"))
    subscriber = CountingSubscriber(ws, "sub")
    try:
        await publisher.connect("room")
        await subscriber.connect("room")
        await publisher.publish()
        loop = asyncio.get_running_loop()
        await wait_until(lambda: top_layer(subscriber, 0) == 2, 15, interval=0.1)
        offers = sum(1 for m in subscriber.messages if m["type"] == "subscribe_offer")

        path.write_text(POLICY.format(layer=0))
        status, body = await reload(url, server.admin)
        assert status == 200 and body["ok"] and body["rooms"] == {"room": "default"}
        changed = loop.time()
        await wait_until(
            lambda: any(
                m["type"] == "level_changed" and m["spatial"] == 0 for m in subscriber.messages
            ),
            5,
            interval=0.1,
        )
        took = loop.time() - changed
        event = next(
            m for m in subscriber.messages if m["type"] == "level_changed" and m["spatial"] == 0
        )
        assert event["reason"] == "policy" and event["width"] == 320
        await asyncio.sleep(1.0)
        since = time.monotonic()
        await asyncio.sleep(1.5)
        assert top_layer(subscriber, since) == 0  # only the base layer flows now
        assert took < 2.0, took
        # same connection: no new subscribe offer, packets still flowing
        assert sum(1 for m in subscriber.messages if m["type"] == "subscribe_offer") == offers
        assert any(at >= since for at, _, _ in subscriber.layers)

        # a malformed file is rejected with the error; the room keeps its policy
        path.write_text("rooms:\n  default:\n    max_spatial_layer: 7\n")
        status, body = await reload(url, server.admin)
        assert status == 400 and not body["ok"]
        assert "rooms.default.max_spatial_layer: must be 0..2, got 7" in body["errors"][0]
        assert server.rooms.rooms["room"].policy.max_spatial_layer == 0
        since = time.monotonic()
        await asyncio.sleep(1.0)
        assert top_layer(subscriber, since) == 0

        # and back up (K-SVC: at the next keyframe, which the SFU asks the publisher for)
        path.write_text(POLICY.format(layer=2))
        assert (await reload(url, server.admin))[0] == 200
        await wait_until(
            lambda: top_layer(subscriber, time.monotonic() - 0.3) == 2, 5, interval=0.1
        )
        assert publisher.keyframe_requests >= 1
    finally:
        await subscriber.close()
        await publisher.close()


async def test_sighup_reloads_and_rejects(tmp_path: Path) -> None:
    """`sfu serve --config FILE` re-reads FILE on SIGHUP (a real process, stopped by PID)."""
    import signal
    import urllib.request

    path = tmp_path / "sfu.yaml"
    path.write_text(POLICY.format(layer=2))
    server = start_sfu("--config", str(path), log=tmp_path / "log.txt")
    proc, port, log = server.proc, server.port, server.log
    try:
        await server.wait_healthy()

        async def wait_log(text: str) -> None:
            end = time.monotonic() + 10
            while text not in log.read_text():
                assert time.monotonic() < end, log.read_text()
                await asyncio.sleep(0.1)

        path.write_text(POLICY.format(layer=1))
        proc.send_signal(signal.SIGHUP)
        await wait_log("reloaded")
        path.write_text("rooms: {default: {max_spatial_layer: 9}}\n")
        proc.send_signal(signal.SIGHUP)
        await wait_log("rejected")
        assert "rooms.default.max_spatial_layer: must be 0..2, got 9" in log.read_text()
        assert proc.poll() is None  # still serving
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        server.stop()


async def test_publisher_gets_transport_cc_feedback_when_enabled(tmp_path: Path) -> None:
    from sfu.config import parse_settings

    app = create_app(parse_settings("media: {publisher_transport_cc: true}\n"))
    async with serving(app) as ws:
        publisher = ReplayPublisher(ws, "pub", read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap"))
        try:
            await publisher.connect("room")
            await publisher.publish()
            assert publisher.pc.remoteDescription is not None
            assert "transport-wide-cc" in publisher.pc.remoteDescription.sdp
            await wait_until(lambda: publisher.transport_feedback >= 10, 5, interval=0.1)
        finally:
            await publisher.close()
