"""Join/leave churn: a hundred subscribers come and go; the server frees everything (tasks,
sockets, down tracks, participants) and memory stays flat."""

from __future__ import annotations

import asyncio
import gc
import os
from contextlib import AsyncExitStack
from pathlib import Path

from serving import serving

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from loadtest.proc import rss_bytes
from sfu.config import Settings
from sfu.signaling.server import ROOMS_KEY, create_app

CAPTURE = Path(__file__).parent / "fixtures" / "captures" / "vp9_L3T3_KEY.sfucap"
CYCLES = 100


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_join_leave_churn_leaves_nothing_behind() -> None:
    app = create_app(Settings())
    stack = AsyncExitStack()
    url = await stack.enter_async_context(serving(app))
    publisher = ReplayPublisher(url, "pub", read_capture(CAPTURE))
    try:
        await publisher.connect("churn")
        await publisher.publish()

        async def cycle() -> int:
            sub = SimSubscriber(url, "sub", (640, 360))
            await sub.connect("churn")
            for _ in range(100):
                if sub.received > 20:
                    break
                await asyncio.sleep(0.05)
            await sub.request({"type": "leave"})
            await sub.close()
            return sub.received

        for _ in range(5):  # warm up caches, codecs, certificates
            await cycle()
        await asyncio.sleep(1)
        gc.collect()
        tasks, fds, rss = len(asyncio.all_tasks()), open_fds(), rss_bytes(os.getpid())
        received = [await cycle() for _ in range(CYCLES)]
        await asyncio.sleep(2)
        gc.collect()
        room = app[ROOMS_KEY].rooms["churn"]
        (source,) = [s for p in room.participants.values() for s in p.sources.values()]
        print(
            f"\n{CYCLES} cycles: tasks {tasks} -> {len(asyncio.all_tasks())}, fds {fds} -> "
            f"{open_fds()}, RSS {rss / 1e6:.1f} -> {rss_bytes(os.getpid()) / 1e6:.1f} MB"
        )
        assert min(received) > 20  # every subscriber got media
        assert len(room.participants) == 1 and source.downtracks == []
        assert len(asyncio.all_tasks()) <= tasks + 2
        assert open_fds() <= fds + 2
        assert rss_bytes(os.getpid()) - rss < 40e6
    finally:
        await publisher.close()
        await stack.aclose()
