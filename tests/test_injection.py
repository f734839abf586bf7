"""A publisher cannot feed another publisher's stream: packets on an SSRC it did not
negotiate, or with a payload type it did not negotiate, are dropped and counted; even an SSRC
it negotiated that collides with another publisher's feeds only its own track."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from support.serving import RunningServer
from support.waiting import wait_until

from loadtest.peers import RawPublisher, SimSubscriber
from sfu.forwarding.source import MediaSource
from sfu.rooms.participant import Participant

MARK = b"INJECTED-BY-B"
_HEADER = struct.Struct("!BBHII")


class MarkCountingSubscriber(SimSubscriber):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.marked = 0
        self.by_ssrc: dict[int, int] = {}

    def on_rtp(self, data: bytes, now: float) -> None:
        if MARK in data:
            self.marked += 1
        ssrc = struct.unpack_from("!I", data, 8)[0]
        self.by_ssrc[ssrc] = self.by_ssrc.get(ssrc, 0) + 1
        super().on_rtp(data, now)


def participant(server: RunningServer, room: str, name: str) -> Participant:
    return next(p for p in server.rooms.rooms[room].participants.values() if p.name == name)


def video_source(p: Participant) -> MediaSource:
    (source,) = p.sources.values()
    return source


def injected(ssrc: int, payload_type: int, first_seq: int, count: int) -> list[bytes]:
    # VP8 descriptor of a keyframe's first packet, then the mark
    payload = b"\x10\x00" + MARK + bytes(200)
    return [
        _HEADER.pack(0x80, 0x80 | payload_type, (first_seq + i) & 0xFFFF, 90000 * i, ssrc) + payload
        for i in range(count)
    ]


@asynccontextmanager
async def publisher_a_and(
    server: RunningServer, room: str, other: str
) -> AsyncIterator[tuple[RawPublisher, RawPublisher, MarkCountingSubscriber]]:
    """In ``room``: subscriber "c", publisher "a" publishing, and publisher ``other`` (not
    connected yet); all closed on exit."""
    a = RawPublisher(server.ws_url, "a", pps=100, payload_size=300)
    b = RawPublisher(server.ws_url, other, pps=100, payload_size=300)
    c = MarkCountingSubscriber(server.ws_url, "c", (640, 360))
    try:
        await c.connect(room)
        await a.connect(room)
        await a.publish()
        yield a, b, c
    finally:
        for peer in (a, b, c):
            await peer.close()


async def test_a_publisher_cannot_inject_into_another_publishers_stream(
    server: RunningServer,
) -> None:
    async with publisher_a_and(server, "inject", "b") as (a, b, c):
        await b.connect("inject")
        await b.publish()
        await wait_until(lambda: len([n for n in c.by_ssrc.values() if n > 50]) == 2)
        assert a.binding is not None and b.binding is not None and b.raw is not None

        pa, pb = participant(server, "inject", "a"), participant(server, "inject", "b")
        sa, sb = video_source(pa), video_source(pb)
        assert pb.publisher is not None and c.marked == 0
        tapped: list[bytes] = []
        sa.taps.append(lambda data, now: tapped.append(data))
        subscriber = participant(server, "inject", "c").subscriber
        assert subscriber is not None
        a_out = subscriber.downtracks[sa.track_id].ssrc
        unknown, dropped_b, dropped_a = pb.publisher.unknown_ssrc, sb.packets_dropped, 0
        from_a = c.by_ssrc[a_out]

        # B, on its own transport: A's SSRC and payload type...
        for packet in injected(a.binding.ssrc, a.binding.payload_type, 40000, 200):
            b.raw.send_rtp(packet)
            await asyncio.sleep(0.001)
        # ...and its own SSRC (continuing its sequence numbers: SRTP refuses to reuse one)
        # with a payload type it never negotiated
        assert b._task is not None
        b._task.cancel()
        await asyncio.sleep(0.05)
        bad_pt = next(pt for pt in (111, 100, 35) if pt != b.binding.payload_type)
        for packet in injected(b.binding.ssrc, bad_pt, b.sent, 200):
            b.raw.send_rtp(packet)
            await asyncio.sleep(0.001)
        await asyncio.sleep(1.0)

        assert pb.publisher.unknown_ssrc - unknown >= 190  # counted (loopback may lose a few)
        assert sb.packets_dropped - dropped_b >= 190
        assert sa.packets_dropped == dropped_a  # A's source never saw them
        assert tapped and not any(MARK in data for data in tapped)
        assert c.marked == 0  # nobody received them
        assert c.by_ssrc[a_out] > from_a + 50  # A's stream flowed on meanwhile
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/stats", headers=server.admin) as r:
                stats = await r.json()
        (entry,) = [e for e in stats["rooms"]["inject"]["participants"] if e["name"] == "b"]
        assert entry["ingress"]["unknown_ssrc"] >= 190
        assert entry["published"][0]["packets_dropped"] >= 190


async def test_a_colliding_ssrc_feeds_only_its_own_publishers_track(
    server: RunningServer,
) -> None:
    """D negotiates A's very SSRC: its packets go to D's track, A's subscribers see A's only."""
    async with publisher_a_and(server, "collide", "d") as (a, d, c):
        assert a.binding is not None
        original = d.pc.addTransceiver

        def same_ssrc(*args: Any, **kwargs: Any) -> Any:
            transceiver = original(*args, **kwargs)
            transceiver.sender._ssrc = a.binding.ssrc  # type: ignore[union-attr]
            return transceiver

        d.pc.addTransceiver = same_ssrc  # type: ignore[method-assign]
        await d.connect("collide")
        await d.publish()
        assert d.binding is not None and d.binding.ssrc == a.binding.ssrc
        await wait_until(lambda: len(server.rooms.rooms["collide"].tracks) == 2)
        sa = video_source(participant(server, "collide", "a"))
        sd = video_source(participant(server, "collide", "d"))
        assert sa is not sd and sa.params.ssrc == sd.params.ssrc
        await wait_until(lambda: len([n for n in c.by_ssrc.values() if n > 100]) == 2)
        sent_a, sent_d = a.sent, d.sent
        received_a, received_d = sa.stats.packets_received, sd.stats.packets_received
        await asyncio.sleep(2.0)
        # each source counts its own publisher's packets, not both
        grew_a = sa.stats.packets_received - received_a
        grew_d = sd.stats.packets_received - received_d
        assert grew_a <= (a.sent - sent_a) + 20 and grew_d <= (d.sent - sent_d) + 20
        assert grew_a > 100 and grew_d > 100
        assert sa.packets_dropped == 0 and sd.packets_dropped == 0
