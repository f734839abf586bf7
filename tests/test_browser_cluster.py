"""The demo page on `sfu serve --workers 2` (issue 17), in real Chromium: a publisher and a
viewer whose WebSockets reach different workers see each other; the worker hosting their
room is SIGKILLed mid-call, and both pages come back into the room by themselves (one told
`worker_lost`, the other seeing its WebSocket drop) and the viewer decodes video again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium_page, require_chromium
from support.cluster import Cluster, running_cluster
from support.redis_server import RedisServer
from support.waiting import wait_until

require_chromium()

DECODED = """() => {
  const c = window.sfuClient;
  return c && c.participantId ? c.inboundStats().then(
    (s) => s.filter((x) => x.kind === "video").reduce((n, x) => n + (x.framesDecoded || 0), 0)
  ) : 0;
}"""


@pytest.fixture
async def cluster(redis: RedisServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(redis.url, tmp_path / "sfu.log") as running:
        yield running


async def decoded(page: Any) -> int:
    return int(await page.evaluate(DECODED))


async def test_pages_rejoin_by_themselves_when_their_rooms_worker_dies(
    cluster: Cluster, playwright: Any
) -> None:
    async with AsyncExitStack() as stack:
        publisher = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{cluster.http(0)}/?room=phoenix&name=pub&codec=VP8&res=640x360&autojoin=1",
            )
        )
        viewer = await stack.enter_async_context(
            chromium_page(
                playwright, f"{cluster.http(1)}/?room=phoenix&name=view&publish=0&autojoin=1"
            )
        )
        for page in (publisher, viewer):
            await page.wait_for_function("window.sfuClient && window.sfuClient.participantId")
        deadline = asyncio.get_running_loop().time() + 30
        while await decoded(viewer) < 10:
            assert asyncio.get_running_loop().time() < deadline, "no video before the crash"
            await asyncio.sleep(0.5)
        host = cluster.host_of("phoenix")
        before = {
            "pub": await publisher.evaluate("window.sfuClient.participantId"),
            "view": await viewer.evaluate("window.sfuClient.participantId"),
        }

        os.kill(cluster.pid(host), signal.SIGKILL)
        # the page on the other worker is told, the one on the dead worker loses its socket;
        # both join again by themselves, as new participants of the room placed anew
        relayed = viewer if host == 0 else publisher
        await relayed.wait_for_function(
            "(window.sfuByes || []).includes('worker_lost')", timeout=15000
        )
        for name, page in (("pub", publisher), ("view", viewer)):
            await page.wait_for_function(
                "window.sfuClient && window.sfuClient.participantId && "
                f"window.sfuClient.participantId !== {before[name]!r}",
                timeout=30000,
            )
        await wait_until(lambda: cluster.up(host), timeout=30)
        deadline = asyncio.get_running_loop().time() + 40
        while await decoded(viewer) < 10:
            assert asyncio.get_running_loop().time() < deadline, "no video after rejoining"
            await asyncio.sleep(0.5)
        assert await viewer.evaluate("window.sfuJoinError") is None


@pytest.fixture
async def cascading(redis: RedisServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(
        redis.url, tmp_path / "sfu.log", extra_yaml="  room_participants_per_worker: 1\n"
    ) as running:
        yield running


async def test_pages_of_one_room_on_two_workers_see_each_other(
    cascading: Cluster, playwright: Any
) -> None:
    """A cascaded room in Chromium: each page's connections on its own worker, the tracks
    crossing between the workers; both pages decode the other's video (VP9 SVC)."""
    cluster = cascading
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{cluster.http(0)}/?room=split&name=one&codec=VP9&res=640x360&autojoin=1",
            )
        )
        await first.wait_for_function("window.sfuClient && window.sfuClient.participantId")
        host = cluster.host_of("split")
        second = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{cluster.http(1 - host)}/?room=split&name=two&codec=VP9&res=640x360&autojoin=1",
            )
        )
        await second.wait_for_function("window.sfuClient && window.sfuClient.participantId")
        for page in (first, second):
            deadline = asyncio.get_running_loop().time() + 40
            while await decoded(page) < 10:
                assert asyncio.get_running_loop().time() < deadline, "no video"
                await asyncio.sleep(0.5)
        # each worker holds one page's participant and mirrors the other's
        for index in (0, 1):
            stats = cluster.stats(index, admin=True)
            names = sorted(p["name"] for p in stats["rooms"]["split"]["participants"])
            assert names == ["one", "two"]
            assert stats["cluster"]["cascade"]["tracks_in"] == 2
