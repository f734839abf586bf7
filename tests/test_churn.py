"""Join/leave churn: hundreds of subscribers come and go; the server frees everything (tasks,
sockets, participants, down tracks, peer connections and their transports) and its memory
reaches a steady state.

Findings behind the bounds (2-core test machine): no object of a cycle outlives its leave
(aiortc's connection objects are cyclic, so the cyclic collector, not reference counting,
frees them). After the warm-up the resident set grows by 10-16 MB over the first 150 cycles
(glibc and pymalloc arenas sized for the concurrent connections; ``malloc_trim`` hands most
of it back) and by 0.2-1.2 MB over the next 150; a 400-cycle run was flat from cycle 250 on.
A leaked subscriber (peer connection, transports, down track) costs ~400 KB a cycle.
"""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import aioice
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from support.serving import serving

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from loadtest.proc import rss_bytes
from sfu.adapters.peers import PublisherPeer, SubscriberPeer
from sfu.config import Settings
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.forwarding.subscription import Subscription
from sfu.rooms.participant import Participant
from sfu.signaling.server import ROOMS_KEY, SignalingSession, create_app

CAPTURE = Path(__file__).parent / "fixtures" / "captures" / "vp9_L3T3_KEY.sfucap"
CYCLES = 300
LANES = 4  # subscribers coming and going at the same time
WARM_UP = 5  # cycles per lane before the baseline

#: classes of which no instance may outlive its subscriber's leave
TRACKED = (
    Participant,
    SignalingSession,
    SubscriberPeer,
    PublisherPeer,
    DownTrack,
    Subscription,
    MediaSource,
    RTCPeerConnection,
    RTCDtlsTransport,
    RTCIceTransport,
    aioice.Connection,
    SimSubscriber,
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def instances() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, TRACKED))


@pytest.mark.timeout(280)
async def test_join_leave_churn_leaves_nothing_behind() -> None:
    app = create_app(Settings())
    stack = AsyncExitStack()
    url = await stack.enter_async_context(serving(app))
    publisher = ReplayPublisher(url, "pub", read_capture(CAPTURE))
    #: weak references to what each cycle created, client and server side
    created: list[tuple[str, weakref.ref[object]]] = []
    try:
        await publisher.connect("churn")
        await publisher.publish()
        room = app[ROOMS_KEY].rooms["churn"]

        async def cycle() -> int:
            sub = SimSubscriber(url, "sub", (640, 360))
            await sub.connect("churn")
            for _ in range(100):
                if sub.received > 20:
                    break
                await asyncio.sleep(0.05)
            joined = next(m for m in sub.messages if m["type"] == "joined")
            participant = room.participants[joined["participant_id"]]
            peer = participant.subscriber
            objects: list[object] = [sub, sub.pc, participant]
            if peer is not None:
                objects += [peer, peer.pc, *peer.downtracks.values()]
                objects += [*peer.subscriptions.values()]
                objects += [peer.raw.dtls] if peer.raw is not None else []
            objects += [sub.raw.dtls, sub.raw.dtls.transport] if sub.raw is not None else []
            created.extend((type(o).__name__, weakref.ref(o)) for o in objects)
            del objects, participant, peer
            await sub.request({"type": "leave"})
            await sub.close()
            # the publisher's latency log fills up (to SENT_LOG_SIZE packets) as it sends: the
            # test's own memory, not the server's
            publisher.sent_log.clear()
            return sub.received

        async def lanes(cycles: int, rss_marks: dict[int, int] | None = None) -> list[int]:
            done: list[int] = []

            async def lane() -> None:
                for _ in range(cycles // LANES):
                    done.append(await cycle())
                    if rss_marks is not None:
                        rss_marks.setdefault(len(done), rss_bytes(os.getpid()))

            await asyncio.gather(*(lane() for _ in range(LANES)))
            return done

        await lanes(LANES * WARM_UP)  # warm up caches, codecs, certificates, arenas
        await asyncio.sleep(1)
        before = instances()
        created.clear()
        tasks, fds, rss = len(asyncio.all_tasks()), open_fds(), rss_bytes(os.getpid())

        marks: dict[int, int] = {}
        received = await lanes(CYCLES, marks)
        await asyncio.sleep(2)
        after = instances()
        survivors = Counter(name for name, ref in created if ref() is not None)
        (source,) = [s for p in room.participants.values() for s in p.sources.values()]
        rss_half, rss_end = marks[CYCLES // 2], rss_bytes(os.getpid())
        print(
            f"\n{CYCLES} cycles ({LANES} at a time): tasks {tasks} -> {len(asyncio.all_tasks())}, "
            f"fds {fds} -> {open_fds()}, participants {len(room.participants)}, "
            f"down tracks {len(source.downtracks)}, RSS {rss / 1e6:.1f} -> "
            f"{rss_half / 1e6:.1f} (cycle {CYCLES // 2}) -> {rss_end / 1e6:.1f} MB\n"
            f"instances before {dict(before)}\ninstances after  {dict(after)}\n"
            f"{len(created)} objects created by the cycles, surviving: {dict(survivors)}"
        )
        assert len(received) == CYCLES and min(received) > 20  # every subscriber got media
        assert len(created) >= 8 * CYCLES  # the weak references were taken
        assert survivors == Counter()
        assert after == before
        assert len(room.participants) == 1 and source.downtracks == []
        assert len(asyncio.all_tasks()) <= tasks + 2
        assert open_fds() <= fds + 2
        # warm-up of the allocators, then flat: a leak of 40 KB a cycle would show here
        assert rss_end - rss < 35e6
        assert rss_end - rss_half < 6e6
    finally:
        await publisher.close()
        await stack.aclose()
