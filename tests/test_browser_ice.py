"""Chromium (the reference client) against the in-process server: ICE restarts keep the
session, the client restarts ICE by itself when its network changes, and a lossy uplink
(10% of the publisher's datagrams dropped by a relay) keeps the picture through NACK/RTX."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from support.browser import chromium_page, require_chromium
from support.serving import RunningServer

from loadtest.relay import LossyRelay, route_publisher_through
from sfu.adapters import aiortc_plane as plane

require_chromium()

#: the selected candidate pair of one of the client's connections, with the ICE ufrags
PAIR = """async (which) => {
  const pc = window.sfuClient[which];
  const report = await pc.getStats();
  let transport = null;
  report.forEach((s) => { if (s.type === "transport") transport = s; });
  const pair = transport && report.get(transport.selectedCandidatePairId);
  const ufrag = (sdp) => sdp.match(/a=ice-ufrag:(\\S+)/)[1];
  const out = {
    state: pc.connectionState,
    localUfrag: ufrag(pc.localDescription.sdp),
    remoteUfrag: ufrag(pc.remoteDescription.sdp),
  };
  if (pair) {
    const local = report.get(pair.localCandidateId);
    out.pairLocalUfrag = local.usernameFragment;
    out.pairLocalPort = local.port;
    out.requestsReceived = pair.requestsReceived;
  }
  return out;
}"""


async def videos_in(page: Any) -> list[dict[str, Any]]:
    return [
        s for s in await page.evaluate("window.sfuClient.inboundStats()") if s["kind"] == "video"
    ]


async def video_in(page: Any) -> dict[str, Any]:
    stats = await videos_in(page)
    assert len(stats) == 1, stats
    return dict(stats[0])


async def video_out(page: Any) -> dict[str, Any]:
    stats = await page.evaluate("window.sfuClient.outboundStats()")
    return dict(next(s for s in stats if s["kind"] == "video"))


async def wait_decoding(page: Any, timeout: float = 40) -> None:
    start = time.monotonic()
    while True:
        stats = await videos_in(page)
        if stats and (stats[0]["framesDecoded"] or 0) > 0:
            return
        assert time.monotonic() - start < timeout, f"no decoded video in {timeout}s: {stats}"
        await asyncio.sleep(0.5)


class FrameWatch:
    """Samples a page's decoded-frame count every 0.25 s in the background."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.samples: list[tuple[float, int]] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            stats = await video_in(self.page)
            self.samples.append((time.monotonic(), stats["framesDecoded"] or 0))
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def longest_stall(self, since: float = 0.0) -> float:
        """The longest time without a newly decoded frame."""
        samples = [s for s in self.samples if s[0] >= since]
        longest = 0.0
        last_t, last_n = samples[0]
        for t, n in samples[1:]:
            if n > last_n:
                longest = max(longest, t - last_t)
                last_t, last_n = t, n
        return max(longest, samples[-1][0] - last_t)

    def frames_per_window(self, window: float, since: float = 0.0) -> list[int]:
        samples = [s for s in self.samples if s[0] >= since]
        out = []
        start_t, start_n = samples[0]
        for t, n in samples[1:]:
            if t - start_t >= window:
                out.append(n - start_n)
                start_t, start_n = t, n
        return out


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    message: str,
    interval: float = 0.1,
) -> None:
    """Until ``condition()`` (awaited when it is a coroutine) holds; fails with ``message``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        holds = condition()
        if inspect.isawaitable(holds):
            holds = await holds
        if holds:
            return
        assert time.monotonic() < deadline, message
        await asyncio.sleep(interval)


def page_url(server: RunningServer, room: str, query: str) -> str:
    return f"{server.url}/?room={room}&{query}&autojoin=1"


PUBLISHER = "name=pub&res=640x360"
SUBSCRIBER = "name=sub&publish=0&tile=640x360"


async def open_call(
    stack: AsyncExitStack,
    playwright: Any,
    server: RunningServer,
    room: str,
    publisher: str = PUBLISHER,
    relay: LossyRelay | None = None,
) -> tuple[Any, Any]:
    """A publishing page (query ``publisher``; its publish connection through ``relay`` when
    one is given) and a subscribing page in ``room``, once the subscriber decodes video."""

    async def steer(page: Any) -> None:
        assert relay is not None
        await route_publisher_through(page, relay)

    pub = await stack.enter_async_context(
        chromium_page(
            playwright,
            page_url(server, room, publisher),
            before_goto=steer if relay is not None else None,
        )
    )
    sub = await stack.enter_async_context(
        chromium_page(playwright, page_url(server, room, SUBSCRIBER))
    )
    await wait_decoding(sub)
    return pub, sub


async def test_publisher_and_subscriber_restart_ice_mid_call(
    server: RunningServer, playwright: Any
) -> None:
    room_name = "ice-restart"
    async with AsyncExitStack() as stack:
        pub, sub = await open_call(stack, playwright, server, room_name)
        room = server.rooms.rooms[room_name]
        pub_id = await pub.evaluate("window.sfuClient.participantId")
        sub_id = await sub.evaluate("window.sfuClient.participantId")
        participants = dict(room.participants)
        publisher = participants[pub_id].publisher
        subscriber = participants[sub_id].subscriber
        assert publisher is not None and subscriber is not None
        sources = dict(participants[pub_id].sources)
        downtracks = dict(subscriber.downtracks)
        offers = subscriber.offers_sent
        before_in = await video_in(sub)
        watch = FrameWatch(sub)
        try:
            # -- the publisher restarts ICE --------------------------------------------------
            before = await pub.evaluate(PAIR, "publishPc")
            assert before["pairLocalUfrag"] == before["localUfrag"]
            restarted_at = time.monotonic()
            await pub.evaluate("window.sfuClient.restartIce({subscribe: false})")
            await until(
                lambda: publisher.ice.restarts >= 1, 15, "the server's ICE restart did not complete"
            )
            await asyncio.sleep(2)
            after = await pub.evaluate(PAIR, "publishPc")
            print(
                f"\npublish: ufrags {before['localUfrag']}/{before['remoteUfrag']} ->"
                f" {after['localUfrag']}/{after['remoteUfrag']}, port"
                f" {before['pairLocalPort']} -> {after['pairLocalPort']}"
            )
            assert after["state"] == "connected"
            assert after["localUfrag"] != before["localUfrag"]
            assert after["remoteUfrag"] != before["remoteUfrag"]
            assert after["remoteUfrag"] == publisher.ice.local_ufrag()
            # Chromium sends on a pair of the new ICE generation
            assert after["pairLocalUfrag"] == after["localUfrag"]
            assert await pub.evaluate("window.sfuClient.iceRestarts.publish") == 1
            # the same session; the subscriber did not renegotiate and keeps decoding
            assert room.participants == participants
            assert room.participants[pub_id].sources == sources
            assert subscriber.offers_sent == offers
            mid_in = await video_in(sub)
            assert mid_in["ssrc"] == before_in["ssrc"]
            assert mid_in["trackIdentifier"] == before_in["trackIdentifier"]
            stall = watch.longest_stall(since=restarted_at)
            print(f"publish restart: longest stall {stall:.2f}s")
            assert stall < 1.5, stall

            # -- the subscriber restarts ICE -------------------------------------------------
            before_sub = await sub.evaluate(PAIR, "subscribePc")
            restarted_at = time.monotonic()
            await sub.evaluate("window.sfuClient.restartIce({publish: false})")
            await until(
                lambda: subscriber.ice.restarts >= 1,
                15,
                "the subscriber's ICE restart did not complete",
            )
            await asyncio.sleep(2)
            after_sub = await sub.evaluate(PAIR, "subscribePc")
            assert after_sub["state"] == "connected"
            assert after_sub["localUfrag"] != before_sub["localUfrag"]
            assert after_sub["remoteUfrag"] != before_sub["remoteUfrag"]
            assert after_sub["pairLocalUfrag"] == after_sub["localUfrag"]
            assert await sub.evaluate("window.sfuClient.iceRestarts.subscribe") == 1
            assert subscriber.downtracks == downtracks
            assert room.participants == participants
            after_in = await video_in(sub)
            assert after_in["ssrc"] == before_in["ssrc"]
            stall = watch.longest_stall(since=restarted_at)
            print(f"subscribe restart: longest stall {stall:.2f}s")
            assert stall < 1.5, stall

            # consent freshness runs on both new pairs: the server's checks reach Chromium
            await asyncio.sleep(9)
            pub_pair = await pub.evaluate(PAIR, "publishPc")
            sub_pair = await sub.evaluate(PAIR, "subscribePc")
            assert pub_pair["requestsReceived"] > after["requestsReceived"], pub_pair
            assert sub_pair["requestsReceived"] > after_sub["requestsReceived"], sub_pair
            assert min(watch.frames_per_window(3.0)) > 20, watch.frames_per_window(3.0)
            final = await video_in(sub)
            assert final["framesDecoded"] > before_in["framesDecoded"] + 300
        finally:
            await watch.stop()


async def test_the_client_restarts_ice_by_itself_when_its_network_changes(
    server: RunningServer, playwright: Any
) -> None:
    """The publisher's addresses stop working (the relay cuts them off, as when a laptop
    leaves a network, the WebSocket staying up): the client hears nothing more, restarts ICE
    on its own before the server's peer timeout (5 s) gives up on it, new candidates get
    through, and the subscriber's picture comes back, on the same session."""
    room_name = "ice-network-change"
    relay = LossyRelay()
    relay.start()
    try:
        async with AsyncExitStack() as stack:
            pub, sub = await open_call(stack, playwright, server, room_name, relay=relay)
            room = server.rooms.rooms[room_name]
            participants = dict(room.participants)
            pub_id = await pub.evaluate("window.sfuClient.participantId")
            publisher = participants[pub_id].publisher
            assert publisher is not None
            assert relay.counters.uplink > 100  # the media goes through the relay
            before = await pub.evaluate(PAIR, "publishPc")
            watch = FrameWatch(sub)
            try:
                await asyncio.sleep(1)
                cut_at = time.monotonic()
                relay.blocked |= relay.counters.clients

                async def restarted_both() -> bool:
                    restarts = await pub.evaluate("window.sfuClient.iceRestarts.publish")
                    return bool(restarts >= 1 and publisher.ice.restarts >= 1)

                await until(restarted_both, 40, "no ICE restart after the network change", 0.25)
                restarted = time.monotonic() - cut_at
                frames = (await video_in(sub))["framesDecoded"]

                async def picture_back() -> bool:
                    return bool((await video_in(sub))["framesDecoded"] >= frames + 30)

                await until(picture_back, 20, "the picture did not come back", 0.25)
                back = time.monotonic() - cut_at
                stall = watch.longest_stall(since=cut_at)
            finally:
                await watch.stop()
            after = await pub.evaluate(PAIR, "publishPc")
            print(
                f"\nnetwork change: restarted {restarted:.1f}s after the cut, picture back after"
                f" {back:.1f}s (longest stall {stall:.1f}s); port {before['pairLocalPort']} ->"
                f" {after['pairLocalPort']}"
            )
            assert after["state"] == "connected"
            assert after["localUfrag"] != before["localUfrag"]
            assert after["pairLocalPort"] != before["pairLocalPort"]
            assert relay.counters.blocked > 0
            assert room.participants == participants  # the same session throughout
            assert await pub.evaluate("window.sfuClient.bye") is None
            connection = plane.dtls_transport_of(publisher.pc).transport._connection  # type: ignore[union-attr]
            assert connection._nominated.get(1) is not None
    finally:
        relay.close()


async def test_lossy_uplink_keeps_the_picture(server: RunningServer, playwright: Any) -> None:
    """10% of the publisher's datagrams to the SFU are lost (a seeded relay): NACKs and the
    publisher's retransmissions keep the subscriber's picture going."""
    room_name = "lossy-uplink"
    relay = LossyRelay(seed=7)
    relay.start()
    duration = 18.0
    try:
        async with AsyncExitStack() as stack:
            pub, sub = await open_call(
                stack, playwright, server, room_name, f"{PUBLISHER}&codec=VP9", relay
            )
            await asyncio.sleep(3)
            room = server.rooms.rooms[room_name]
            source = next(
                s
                for p in room.participants.values()
                for s in p.sources.values()
                if s.kind == "video"
            )
            out0, in0 = await video_out(pub), await video_in(sub)
            nacks0, plis0, late0 = source.nacks_sent, source.keyframes.sent, source.late_packets
            relay.reset_counters()
            relay.uplink_loss = 0.10
            start = time.monotonic()
            watch = FrameWatch(sub)
            try:
                await asyncio.sleep(duration)
            finally:
                await watch.stop()
                relay.uplink_loss = 0.0
            elapsed = time.monotonic() - start
            out1, in1 = await video_out(pub), await video_in(sub)
            restarts = [await p.evaluate("window.sfuClient.iceRestarts") for p in (pub, sub)]
    finally:
        relay.close()

    counters = relay.counters
    frames = in1["framesDecoded"] - in0["framesDecoded"]
    figures = {
        "uplink datagrams": counters.uplink,
        "dropped": counters.uplink_dropped,
        "loss": round(counters.uplink_loss, 3),
        "media dropped": counters.uplink_media_dropped,
        "server NACKs": source.nacks_sent - nacks0,
        "server PLIs": source.keyframes.sent - plis0,
        "late (retransmitted) packets at the SFU": source.late_packets - late0,
        "publisher nackCount": out1["nackCount"] - out0["nackCount"],
        "publisher retransmittedPacketsSent": (
            out1["retransmittedPacketsSent"] - out0["retransmittedPacketsSent"]
        ),
        "publisher pliCount": out1["pliCount"] - out0["pliCount"],
        "subscriber fps": round(frames / elapsed, 1),
        "subscriber freezeCount": in1["freezeCount"] - in0["freezeCount"],
        "subscriber totalFreezesDuration": round(
            in1["totalFreezesDuration"] - in0["totalFreezesDuration"], 2
        ),
        "subscriber pliCount": in1["pliCount"] - in0["pliCount"],
        "subscriber nackCount": in1["nackCount"] - in0["nackCount"],
        "longest stall s": round(watch.longest_stall(), 2),
        "frames per 3 s": watch.frames_per_window(3.0),
        "width": in1["frameWidth"],
    }
    print(f"\nlossy uplink over {elapsed:.1f}s: {figures}")
    # loss is not silence: no ICE restart
    assert restarts == [{"publish": 0, "subscribe": 0}] * 2, restarts
    # the loss really happened
    assert 0.07 <= counters.uplink_loss <= 0.13, figures
    assert counters.uplink_media_dropped > 100, figures
    # NACKed and retransmitted: the server asked, the publisher resent, the SFU got them
    assert figures["server NACKs"] > 20, figures
    assert figures["publisher nackCount"] > 20, figures
    assert figures["publisher retransmittedPacketsSent"] > 20, figures
    assert figures["late (retransmitted) packets at the SFU"] > 20, figures
    # the picture keeps going: frames in every 3 s window, no stall over 3 s
    assert min(watch.frames_per_window(3.0)) > 0, figures
    assert watch.longest_stall() < 3.0, figures
    assert frames / elapsed > 10, figures
