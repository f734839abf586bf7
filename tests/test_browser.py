"""End to end in real Chromium (Debian's, driven by Playwright): people join a room and see
and hear each other through the SFU."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from support.browser import chromium_page, require_chromium
from support.serving import start_sfu

from loadtest.server import ADMIN_TOKENS

require_chromium()


@pytest.fixture
def sfu_url(sfu_process: tuple[str, subprocess.Popen[bytes]]) -> str:
    return sfu_process[0]


@pytest.fixture
def sfu_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`sfu serve` as users run it, in its own process, stopped by its PID."""
    server = start_sfu()
    try:
        server.wait_healthy_blocking()
        assert server.admin_token is not None
        ADMIN_TOKENS[server.port] = server.admin_token
        yield server.url, server.proc
    finally:
        server.stop()


INBOUND = "window.sfuClient ? window.sfuClient.inboundStats() : []"
OUTBOUND = "window.sfuClient ? window.sfuClient.outboundStats() : []"


async def inbound(page: Any) -> list[dict[str, Any]]:
    return list(await page.evaluate(INBOUND))


async def encoded_frames(page: Any) -> int:
    """Frames the page's video encoder has produced (its top spatial layer's count)."""
    out = [s for s in await page.evaluate(OUTBOUND) if s["kind"] == "video"]
    return int(out[0]["framesEncoded"]) if out else 0


async def wait_for_media(pages: list[Any], remote: int, timeout: float = 60) -> float:
    """Until every page decodes `remote` videos and plays `remote` audio streams."""
    start = time.monotonic()
    while True:
        ready = 0
        for page in pages:
            stats = await inbound(page)
            videos = [s for s in stats if s["kind"] == "video" and (s["framesDecoded"] or 0) > 0]
            audios = [
                s for s in stats if s["kind"] == "audio" and (s["totalSamplesReceived"] or 0) > 0
            ]
            ready += len(videos) == remote and len(audios) == remote
        if ready == len(pages):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            details = [await inbound(p) for p in pages]
            raise AssertionError(f"media did not flow in {timeout}s: {details}")
        await asyncio.sleep(0.5)


#: what each page captures and renders: three SVC encoders and six decoders at 720p saturate
#: two cores (AV1 most), and starved pages then delay the feedback the SFU estimates from;
#: at 360p the machine keeps up and the SFU alone decides the layers (Chromium sends L2T3
#: at this size; three spatial layers from a 720p publisher are the window test's below)
CAPTURE = (640, 360)
#: seconds for every subscriber to reach the publishers' top layer on loopback
TOP_LAYER_WITHIN = 20.0
#: ... and to have kept it this long (the estimate confirmed by probing)
TOP_LAYER_STEADY = 2.0


@pytest.mark.parametrize("codec", ["VP9", "VP8", "AV1"])
async def test_three_pages_see_and_hear_each_other(
    sfu_url: str, playwright: Any, codec: str
) -> None:
    room = f"e2e-{codec.lower()}"
    async with AsyncExitStack() as stack:
        pages = []  # tiles as large as the video: the window fits the top layer
        w, h = CAPTURE
        for i in range(3):
            page = await stack.enter_async_context(
                chromium_page(
                    playwright,
                    f"{sfu_url}/?room={room}&name=p{i}&codec={codec}&res={w}x{h}"
                    f"&tile={w}x{h}&autojoin=1",
                )
            )
            pages.append(page)
        took = await wait_for_media(pages, remote=2)
        print(f"\n{codec}: first decoded frames on all 3 pages {took:.1f}s after the last join")

        ids = [await p.evaluate("window.sfuClient.participantId") for p in pages]
        outbound = {}
        for pid, page in zip(ids, pages, strict=True):
            out = [s for s in await page.evaluate(OUTBOUND) if s["kind"] == "video"]
            assert out and out[0]["scalabilityMode"], out
            outbound[pid] = out[0]

        # the subscribers' downlinks are estimated (the default): the first frames come at
        # the top layer (a level not measured yet is not held back), and the top layer holds
        # once probing has confirmed the room for two videos on each page; until then a
        # video measured above the estimate steps down for a moment
        started = time.monotonic()
        widths: list[int] = []
        top_since: float | None = None
        while time.monotonic() - started < TOP_LAYER_WITHIN:
            widths = [
                s["frameWidth"] for p in pages for s in await inbound(p) if s["kind"] == "video"
            ]
            wanted = [
                w if o["qualityLimitationReason"] == "none" and codec != "VP8" else o["frameWidth"]
                for o in outbound.values()
            ]
            if len(widths) == 6 and min(widths) >= min(wanted):
                top_since = top_since or time.monotonic()
                if time.monotonic() - top_since >= TOP_LAYER_STEADY:
                    break
            else:
                top_since = None
            await asyncio.sleep(0.5)
        print(
            f"{codec}: top layers on every page (for {TOP_LAYER_STEADY:.0f} s)"
            f" {time.monotonic() - started:.1f}s later {widths};"
            f" sent {[o['scalabilityMode'] for o in outbound.values()]}"
        )

        first = {id(p): await inbound(p) for p in pages}
        encoded = {pid: await encoded_frames(p) for pid, p in zip(ids, pages, strict=True)}
        await asyncio.sleep(3)
        latest = {}
        for pid, p in zip(ids, pages, strict=True):
            encoded[pid] = await encoded_frames(p) - encoded[pid]
            latest[pid] = [s for s in await p.evaluate(OUTBOUND) if s["kind"] == "video"][0]
        for page, pid in zip(pages, ids, strict=True):
            stats = await inbound(page)
            videos = [s for s in stats if s["kind"] == "video"]
            audios = [s for s in stats if s["kind"] == "audio"]
            assert len(videos) == 2 and len(audios) == 2, stats
            before = {s["ssrc"]: s for s in first[id(page)]}
            levels = await page.evaluate("Object.fromEntries(window.sfuClient.levels)")
            for s in videos:
                publisher = s["trackIdentifier"].split(":")[0]
                # what the SFU controls: the pictures its publisher encoded arrive (decoded,
                # or dropped by a page too busy to decode them in time), and decode; how many
                # a loaded 2-core machine encodes (three SVC encoders beside six
                # decoders) and its pages decode in time is the machine's
                was = before[s["ssrc"]]
                arrived = (s["framesDecoded"] + s["framesDropped"]) - (
                    was["framesDecoded"] + was["framesDropped"]
                )
                # framesEncoded counts each spatial layer's frame: pictures are a third of it
                mode = outbound[publisher]["scalabilityMode"]
                pictures = encoded[publisher] / int(mode[1] if mode[0] in "LS" else 1)
                assert arrived >= min(10, 0.6 * pictures), (codec, s, was, encoded, mode)
                assert s["framesDecoded"] > was["framesDecoded"] + 5, (codec, s)
                assert publisher in outbound and publisher != pid
                sent = outbound[publisher]
                level = levels.get(s["trackIdentifier"]) or {}
                if level.get("reason") == "cpu":
                    # the page dropped too many frames (a loaded machine): the SFU lowered
                    # its layer for that (receiver-CPU fit), and it decodes what it gets
                    # (a lower spatial layer, or only fewer temporal layers: VP8, or S0)
                    top = max(sent["frameWidth"], latest[publisher]["frameWidth"])
                    assert s["frameWidth"] <= top, (codec, s, level)
                    print(f"\n{codec}: {pid} gets {level['width']} wide for its CPU")
                # every layer is forwarded: the receiver decodes the publisher's top layer
                elif sent["qualityLimitationReason"] == "none" and codec != "VP8":
                    assert s["frameWidth"] == w, (codec, s, sent)
                else:  # the encoder's own size, which CPU adaptation may just have changed
                    widths = (sent["frameWidth"], latest[publisher]["frameWidth"])
                    assert s["frameWidth"] in widths, (codec, s, sent, latest[publisher])
            for s in audios:
                assert s["totalSamplesReceived"] > before[s["ssrc"]]["totalSamplesReceived"]

        # one page leaves: the others see its tracks go
        leaver = ids[2]
        await pages[2].evaluate("window.sfuClient.leave()")
        for page in pages[:2]:
            await page.wait_for_function(
                """(id) => {
                    const c = window.sfuClient;
                    if (c.participants.has(id)) return false;
                    if ([...c.tracks.values()].some((t) => t.participant_id === id)) return false;
                    const ts = c.subscribePc.getTransceivers()
                        .filter((t) => t.receiver.track.id.startsWith(id + ":"));
                    return ts.length === 2 && ts.every((t) => t.currentDirection === "inactive");
                }""",
                arg=leaver,
                timeout=20000,
            )
            assert await page.evaluate("(id) => !document.getElementById('tile-' + id)", leaver)
        # and no error for it: a tile going away sends nothing about its gone track
        await pages[0].wait_for_timeout(1000)
        for page in pages[:2]:
            errors = await page.evaluate("window.sfuClient.errors")
            assert errors == [], errors
            assert await page.evaluate("document.getElementById('error').hidden")


async def video_stats(page: Any) -> list[dict[str, Any]]:
    return [s for s in await inbound(page) if s["kind"] == "video"]


async def wait_width(page: Any, width: int, timeout: float = 15) -> float:
    """Seconds until the page's (single) remote video decodes at `width`."""
    start = time.monotonic()
    while True:
        stats = await video_stats(page)
        if stats and stats[0]["frameWidth"] == width:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            levels = await page.evaluate("Object.fromEntries(window.sfuClient.levels)")
            raise AssertionError(f"frameWidth never reached {width}: {stats}, levels {levels}")
        await asyncio.sleep(0.2)


def admin_stats(url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/stats",
        headers={"Authorization": f"Bearer {ADMIN_TOKENS[int(url.rsplit(':', 1)[1])]}"},
    )
    return dict(json.load(urllib.request.urlopen(request, timeout=5)))


def source_stats(url: str) -> dict[str, Any]:
    stats = admin_stats(url)
    for room in stats["rooms"].values():
        for participant in room["participants"]:
            for track in participant["published"]:
                if track["kind"] == "video":
                    return dict(track)
    raise AssertionError("no published video")


SIZES = [(320, 180), (640, 360), (1280, 720)]


@pytest.mark.parametrize("codec", ["VP9", "AV1"])
async def test_each_subscriber_gets_the_layer_that_fits_its_window(
    sfu_url_fit_off: str, playwright: Any, codec: str
) -> None:
    sfu_url = sfu_url_fit_off
    room = f"layers-{codec.lower()}"
    async with AsyncExitStack() as stack:
        publisher = await stack.enter_async_context(
            chromium_page(playwright, f"{sfu_url}/?room={room}&name=pub&codec={codec}&autojoin=1")
        )
        subscribers = []
        for w, h in SIZES:
            subscribers.append(
                await stack.enter_async_context(
                    chromium_page(
                        playwright,
                        f"{sfu_url}/?room={room}&name=s{w}&publish=0&tile={w}x{h}&autojoin=1",
                    )
                )
            )
        for page, (w, _) in zip(subscribers, SIZES, strict=True):
            await wait_width(page, w, timeout=40)
        out = [s for s in await publisher.evaluate(OUTBOUND) if s["kind"] == "video"][0]
        assert out["frameWidth"] == 1280, out  # else the publisher itself is limited

        # frames keep decoding at each size
        before = [(await video_stats(p))[0]["framesDecoded"] for p in subscribers]
        await asyncio.sleep(2)
        for page, n, (w, _) in zip(subscribers, before, SIZES, strict=True):
            stats = (await video_stats(page))[0]
            assert stats["frameWidth"] == w and stats["framesDecoded"] > n + 20, stats

        # resizing switches layers both ways without a freeze; few keyframe requests
        big = subscribers[2]
        plis_before = source_stats(sfu_url)["keyframe_requests_sent"]
        delays = []
        for w, h in [(320, 180), (1280, 720), (640, 360), (1280, 720)]:
            frames = (await video_stats(big))[0]["framesDecoded"]
            await big.evaluate(f"window.sfuSetTileSize({w}, {h})")
            delays.append(await wait_width(big, w))
            await asyncio.sleep(1)
            after = (await video_stats(big))[0]
            assert after["framesDecoded"] > frames + 15, (w, after)
        plis = source_stats(sfu_url)["keyframe_requests_sent"] - plis_before
        print(
            f"\n{codec}: window-change to frameWidth delays {[round(d, 2) for d in delays]} s;"
            f" {plis} keyframe requests upstream for 4 switches"
        )
        assert plis <= 8, plis  # at most ~one per switch that needs a keyframe, never a storm

        # each page timed what it painted (requestVideoFrameCallback) and reported it with
        # its getStats() figures (receiver_report, every 1.5 s): the server has them
        paints = await big.evaluate("window.sfuClient.switchPaints.map((p) => p.seconds)")
        assert len(paints) >= 3 and all(0 <= p < 5 for p in paints), paints
        firsts = await big.evaluate("[...window.sfuClient.firstFrame.values()]")
        assert len(firsts) == 1 and 0 < firsts[0] < 40, firsts
        await asyncio.sleep(2)  # the next report
        stats = admin_stats(sfu_url)["rooms"][room]
        quality = stats["quality"]
        assert quality["first_frame"]["count"] == len(SIZES), quality
        assert quality["switch_paint"]["count"] >= 3, quality
        viewers = {
            p["name"]: t["viewer"]
            for p in stats["participants"]
            for t in p["subscribed"]
            if t["viewer"] is not None
        }
        assert set(viewers) == {f"s{w}" for w, _ in SIZES}, viewers
        for (w, h), page in zip(SIZES, subscribers, strict=True):
            viewer = viewers[f"s{w}"]
            assert viewer["decoded_frames"] > 30 and viewer["reports"] >= 2, viewer
            if page is not big:  # its tile was resized last to 1280x720
                assert (viewer["element_width"], viewer["element_height"]) == (w, h), viewer
        print(
            "viewers' dropped frames:",
            {name: (v["dropped_frames"], v["decoded_frames"]) for name, v in viewers.items()},
        )

        # a temporal pin of T0 gives about a quarter of the frame rate the subscriber gets
        # without it (whatever rate the publisher manages: on a loaded machine Chromium
        # encodes fewer frames, qualityLimitationReason "cpu")
        small = subscribers[0]
        full = (await video_stats(small))[0]["framesPerSecond"]
        assert full >= 10, full
        track_id = await small.evaluate("[...window.sfuClient.levels.keys()][0]")
        await small.evaluate(f"window.sfuClient.setLevel({json.dumps(track_id)}, 0, 0)")
        await asyncio.sleep(4)
        fps = (await video_stats(small))[0]["framesPerSecond"]
        assert 0.15 * full <= fps <= 0.4 * full, (fps, full)
        level = await small.evaluate(f"window.sfuClient.levels.get({json.dumps(track_id)})")
        assert level["temporal"] == 0 and level["reason"] == "pin", level
        await small.evaluate(f"window.sfuClient.auto({json.dumps(track_id)})")
        # back to every temporal layer (what the SFU decides), and so to about the frame
        # rate it had (what the encoder and decoder manage: a reading per second, polled)
        await small.wait_for_function(
            f"window.sfuClient.levels.get({json.dumps(track_id)}).temporal === 2", timeout=10000
        )
        deadline = asyncio.get_running_loop().time() + 10
        while (rate := (await video_stats(small))[0]["framesPerSecond"]) < 0.6 * full:
            assert asyncio.get_running_loop().time() < deadline, (rate, full)
            await asyncio.sleep(0.5)


async def test_vp8_temporal_layers_and_hidden_video_pauses(sfu_url: str, playwright: Any) -> None:
    room = "layers-vp8"
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(
            chromium_page(playwright, f"{sfu_url}/?room={room}&name=pub&codec=VP8&autojoin=1")
        )
        page = await stack.enter_async_context(
            chromium_page(
                playwright, f"{sfu_url}/?room={room}&name=sub&publish=0&tile=640x360&autojoin=1"
            )
        )
        start = time.monotonic()
        while not (await video_stats(page)) or not (await video_stats(page))[0]["framesDecoded"]:
            assert time.monotonic() - start < 40
            await asyncio.sleep(0.5)
        track_id = await page.evaluate("[...window.sfuClient.levels.keys()][0]")
        # the tile's layer picker offers the levels the stream has: L1T3, one spatial layer
        await page.wait_for_function(
            "document.querySelector('.tile select') &&"
            " document.querySelector('.tile select').options.length > 1",
            timeout=15000,
        )
        offered = await page.evaluate(
            "[...document.querySelector('.tile select').options].map((o) => o.value)"
        )
        assert offered[0] == "auto" and set(offered[1:]) <= {"0,0", "0,1", "0,2"}, offered
        await page.evaluate(f"window.sfuClient.setLevel({json.dumps(track_id)}, 0, 0)")
        await asyncio.sleep(4)
        fps = (await video_stats(page))[0]["framesPerSecond"]
        assert 5 <= fps <= 10, fps
        await page.evaluate(f"window.sfuClient.setLevel({json.dumps(track_id)}, 0, 1)")
        await asyncio.sleep(4)
        fps = (await video_stats(page))[0]["framesPerSecond"]
        assert 11 <= fps <= 19, fps
        await page.evaluate(f"window.sfuClient.auto({json.dumps(track_id)})")
        # hiding the tile pauses the video; showing it again resumes it
        await page.evaluate("window.sfuSetTileSize(0, 0)")
        await page.wait_for_function(
            f"window.sfuClient.levels.get({json.dumps(track_id)}).paused === true", timeout=10000
        )
        await asyncio.sleep(1)
        frozen = (await video_stats(page))[0]["framesDecoded"]
        await asyncio.sleep(2)
        assert (await video_stats(page))[0]["framesDecoded"] <= frozen + 2
        await page.evaluate("window.sfuSetTileSize(640, 360)")
        await asyncio.sleep(4)
        stats = (await video_stats(page))[0]
        assert stats["framesDecoded"] > frozen + 30, stats

        # the publisher stops its camera (the demo's button): the other page's tile says
        # so and gets no more frames; started again, the video comes back
        await pub.click("#camBtn")
        await page.wait_for_function(
            "[...document.querySelectorAll('.tile .muted')].some((e) => "
            "e.textContent.includes('camera off'))",
            timeout=10000,
        )
        await asyncio.sleep(1)
        frozen = (await video_stats(page))[0]["framesDecoded"]
        await asyncio.sleep(2)
        assert (await video_stats(page))[0]["framesDecoded"] <= frozen + 2
        await pub.click("#camBtn")
        await page.wait_for_function(
            "[...document.querySelectorAll('.tile .muted')].every((e) => e.textContent === '')",
            timeout=10000,
        )
        deadline = time.monotonic() + 10
        while (stats := (await video_stats(page))[0])["framesDecoded"] < frozen + 30:
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.5)
        assert await page.evaluate("window.sfuClient.errors") == []


async def test_the_demo_page_shows_the_server_shutting_down(
    sfu_process: tuple[str, subprocess.Popen[bytes]], playwright: Any
) -> None:
    """SIGTERM: the page is told why it lost the room; the server exits 0. Meanwhile, a
    browser that receives paused video only and publishes nothing is never taken for dead."""
    import signal

    url, proc = sfu_process
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            chromium_page(playwright, f"{url}/?room=bye&name=pub&codec=VP8&autojoin=1")
        )
        page = await stack.enter_async_context(
            chromium_page(playwright, f"{url}/?room=bye&name=sub&publish=0&tile=0x0&autojoin=1")
        )
        await page.wait_for_function(
            "window.sfuClient && [...window.sfuClient.levels.values()].some((l) => l.paused)",
            timeout=30000,
        )
        await asyncio.sleep(8)  # more than limits.peer_timeout with no video to acknowledge
        assert await page.evaluate("window.sfuClient.bye") is None
        assert await page.evaluate("window.sfuClient.participants.size") == 1

        proc.send_signal(signal.SIGTERM)
        await page.wait_for_function(
            "document.getElementById('status').textContent.includes('server shutting down')",
            timeout=10000,
        )
        bye = await page.evaluate("window.sfuClient.bye")
        assert bye == {"type": "bye", "code": "shutdown", "reason": "server shutting down"}
        assert await page.evaluate("document.querySelectorAll('.tile').length") == 0
        assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_demo_page_sends_a_token_and_shows_a_refusal(playwright: Any) -> None:
    """A room that requires a token: the page without one is refused and says why; with a
    token typed into the form, or given as ``?token=``, it joins and publishes."""
    from support.serving import serving

    from sfu.auth.tokens import create_token
    from sfu.config import parse_settings
    from sfu.signaling.server import ROOMS_KEY, create_app

    secret = "k" * 40
    app = create_app(
        parse_settings(
            f"auth: {{secret: {secret}}}\n"
            "rooms:\n  policies:\n    private: {require_token: true}\n"
            "  rules: [{match: 'private-*', policy: private}]\n"
        )
    )
    rooms = app[ROOMS_KEY]

    def token(room: str) -> str:
        return create_token(
            secret.encode(),
            room=room,
            identity="ann",
            grants={"publish", "subscribe"},
            ttl=600,
            now=time.time(),
        )

    async def refused(page: Any) -> str:
        await page.wait_for_function("window.sfuJoinError !== undefined", timeout=20000)
        error = page.locator("#error")
        assert await error.is_visible()
        assert await error.get_attribute("data-code") == "unauthorized"
        assert await page.locator("#joinBtn").is_enabled()  # free to try again
        return str(await error.inner_text())

    async def joined(page: Any) -> None:
        await page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('in room private-1')",
            timeout=20000,
        )
        assert await page.locator("#error").is_hidden()
        assert await page.evaluate("window.sfuClient.participantId")

    async with AsyncExitStack() as stack:
        ws_url = await stack.enter_async_context(serving(app))
        base = ws_url.replace("ws://", "http://").removesuffix("/ws")
        page = await stack.enter_async_context(
            chromium_page(playwright, f"{base}/?room=private-1&name=ann&autojoin=1")
        )
        text = await refused(page)
        assert "this room requires an access token" in text and "Token" in text, text
        assert "private-1" not in rooms.rooms

        # the token typed into the form
        await page.fill("#token", token("private-*"))
        await page.click("#joinBtn")
        await joined(page)
        (participant,) = rooms.rooms["private-1"].participants.values()
        assert participant.name == "ann"
        await page.click("#leaveBtn")
        await page.wait_for_function("document.getElementById('status').textContent === 'left'")

        # a token for another room, then a good one, as ?token=
        await page.goto(f"{base}/?room=private-1&name=ann&autojoin=1&token={token('lobby')}")
        assert "token is not for room 'private-1'" in await refused(page)
        await page.goto(f"{base}/?room=private-1&name=bob&autojoin=1&token={token('private-1')}")
        await joined(page)
        assert "token" not in await page.evaluate("location.search")  # out of the address bar
        # the token is who joins: the page shows its identity in the name field
        (participant,) = rooms.rooms["private-1"].participants.values()
        assert participant.name == "ann" and participant.identity == "ann"
        assert await page.input_value("#name") == "ann"
        deadline = time.monotonic() + 30
        while not participant.sources:  # the token's publish grant: camera and microphone
            assert time.monotonic() < deadline, "the page's tracks never arrived"
            await asyncio.sleep(0.2)
        assert {s.kind for s in participant.sources.values()} == {"audio", "video"}
