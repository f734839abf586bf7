"""The demo page's issue-20 features in real Chromium (Debian's, driven by Playwright, fake
camera, microphone and screen): dynacast (the publisher encodes only the spatial layers a
viewer needs, and all of them again once one does), the active speaker's ring and speaker
view, screen share (a tile of its own on the other page, gone when sharing stops), and the
device picker, the role line and the placeholder of a participant without video."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
from support.browser import chromium_page, require_chromium
from support.waiting import wait_for

require_chromium()

OUTBOUND = "window.sfuClient ? window.sfuClient.outboundStats() : []"
INBOUND = "window.sfuClient ? window.sfuClient.inboundStats() : []"
#: every tile: id, classes, the size its video decodes at, its label
TILES = """() => [...document.querySelectorAll('.tile')].map((t) => ({
  id: t.id, classes: [...t.classList], label: t.querySelector('.label').textContent,
  videoWidth: t.querySelector('video').videoWidth,
}))"""


async def camera_out(page: Any) -> dict[str, Any]:
    """The outbound-rtp of the page's camera (the first video m-line)."""
    return [s for s in await page.evaluate(OUTBOUND) if s["kind"] == "video"][0]


async def video_in(page: Any) -> list[dict[str, Any]]:
    return [s for s in await page.evaluate(INBOUND) if s["kind"] == "video"]


async def sending_rate(page: Any, seconds: float = 2.0) -> float:
    """bits/s the page's camera sends, over ``seconds``."""
    return (await sending(page, seconds))[0]


async def sending(page: Any, seconds: float = 2.0) -> tuple[float, float]:
    """bits/s the page's camera sends over ``seconds``, and the share of those seconds its
    encoder spent encoding (``totalEncodeTime``: the encoder's CPU)."""
    before = await camera_out(page)
    await asyncio.sleep(seconds)
    after = await camera_out(page)
    encode = (after.get("totalEncodeTime") or 0) - (before.get("totalEncodeTime") or 0)
    return (after["bytesSent"] - before["bytesSent"]) * 8 / seconds, encode / seconds


async def no_errors(page: Any, name: str) -> None:
    assert await page.evaluate("document.getElementById('error').hidden"), (
        name,
        await page.evaluate("document.getElementById('error').textContent"),
    )
    assert await page.evaluate("window.sfuClient.errors") == [], name


def watch_errors(pages: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for name, page in pages.items():
        page.on("pageerror", lambda e, name=name: errors.append(f"{name}: {e}"))
    return errors


@pytest.mark.timeout(180)
async def two_pages(stack: AsyncExitStack, playwright: Any, url: str, room: str) -> dict[str, Any]:
    """ann's and bob's pages in ``room``, each publishing VP9 at 640x360 (closed with
    ``stack``)."""
    pages = {}
    for name in ("ann", "bob"):
        pages[name] = await stack.enter_async_context(
            chromium_page(
                playwright, f"{url}/?room={room}&name={name}&codec=VP9&res=640x360&autojoin=1"
            )
        )
    return pages


async def test_dynacast_follows_the_viewer_tile(sfu_url_fit_off: str, playwright: Any) -> None:
    """A VP9 L3T3_KEY publisher at 1280x720 (S0 320 wide) and a viewer whose tile is
    320x180: after the server's 5 s the publisher encodes S0 only (L1T3 at a quarter of the
    size), the viewer still decodes; the tile enlarged, every layer comes back and the viewer
    gets the top one; the tile hidden, the publisher's encoding goes inactive."""
    room = "dynacast"
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{sfu_url_fit_off}/?room={room}&name=pub&codec=VP9&res=1280x720&autojoin=1",
            )
        )
        view = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{sfu_url_fit_off}/?room={room}&name=view&publish=0&tile=320x180&autojoin=1",
            )
        )
        errors = watch_errors({"pub": pub, "view": view})

        async def decoding() -> int:
            videos = await video_in(view)
            return videos[0]["framesDecoded"] or 0 if videos else 0

        await wait_for("the viewer decodes", decoding, 40)
        started = time.monotonic()
        track = await pub.evaluate("window.sfuClient.ownTrackId('camera')")
        assert (await pub.evaluate("window.sfuClient.publishOptions.mode")) == "L3T3_KEY"
        full_rate, full_encode = await sending(pub, 3.0)

        async def dynacast(n: int) -> bool:
            layers = await pub.evaluate(f"window.sfuClient.dynacast[{track!r}]")
            return bool(layers == n)

        await wait_for("the publisher told to send S0 only", lambda: dynacast(1), 20)
        lowered_after = time.monotonic() - started

        async def narrow() -> dict[str, Any] | None:
            out = await camera_out(pub)
            return out if out["frameWidth"] == 320 else None

        out = await wait_for("the publisher encodes 320 wide", narrow, 10)
        assert out["scalabilityMode"] == "L1T3", out
        await asyncio.sleep(1)  # the reconfiguration's keyframe
        low_rate, low_encode = await sending(pub, 3.0)
        frames = await decoding()
        await asyncio.sleep(2)
        assert await decoding() > frames + 20  # the viewer goes on at S0
        assert (await video_in(view))[0]["frameWidth"] == 320
        overlay = await pub.evaluate("document.querySelector('#tile-self .level').textContent")
        print(
            f"\ndynacast: S0 only {lowered_after:.1f} s after the viewer decoded;"
            f" the publisher sends {full_rate / 1e3:.0f} kbit/s with 3 layers,"
            f" {low_rate / 1e3:.0f} kbit/s with S0 only; encoding {full_encode:.0%} then"
            f" {low_encode:.0%} of the time; its overlay: {overlay!r}"
        )
        assert low_rate < 0.6 * full_rate, (low_rate, full_rate)

        # the viewer's tile enlarged: every layer again, the top one received
        await view.evaluate("window.sfuSetTileSize(1280, 720)")
        enlarged = time.monotonic()
        await wait_for("the publisher told to send every layer", lambda: dynacast(3), 10)
        told = time.monotonic() - enlarged

        async def top() -> bool:
            videos = await video_in(view)
            return bool(videos and videos[0]["frameWidth"] == 1280)

        await wait_for("the viewer receives 1280 wide", top, 30)
        received = time.monotonic() - enlarged
        assert (await camera_out(pub))["scalabilityMode"] == "L3T3_KEY"
        print(
            f"tile enlarged: publisher back to 3 layers in {told:.1f} s,"
            f" the viewer decodes 1280 wide {received:.1f} s after the resize"
        )

        # the tile hidden: nobody needs the video, the encoding goes inactive; shown, back
        await view.evaluate("window.sfuSetTileSize(0, 0)")
        await wait_for("the publisher told to send nothing", lambda: dynacast(0), 20)
        await asyncio.sleep(1)
        paused_rate = await sending_rate(pub)
        assert paused_rate < 0.1 * full_rate, (paused_rate, full_rate)
        await view.evaluate("window.sfuSetTileSize(320, 180)")
        await wait_for("the publisher sends again", lambda: dynacast(1), 10)
        frames = await decoding()
        await wait_for("the viewer decodes again", lambda: _more(decoding, frames + 15), 15)
        print(f"tile hidden: {paused_rate / 1e3:.0f} kbit/s sent; shown: decoding again")
        await no_errors(pub, "pub")
        await no_errors(view, "view")
        assert errors == [], errors


async def _more(count: Any, than: int) -> bool:
    return bool(await count() > than)


@pytest.mark.timeout(150)
async def test_active_speaker_ring_and_speaker_view(sfu_url_fit_off: str, playwright: Any) -> None:
    """Chromium's fake microphones beep: the dominant speaker's tile has its ring and names
    a participant of the room. One mutes: the other becomes dominant, and speaker view
    enlarges it; a tile the user enlarges wins until clicked back."""
    room = "speakers"
    async with AsyncExitStack() as stack:
        pages = await two_pages(stack, playwright, sfu_url_fit_off, room)
        errors = watch_errors(pages)
        ann, bob = pages["ann"], pages["bob"]
        for page in pages.values():
            await page.wait_for_function(
                "window.sfuClient && window.sfuClient.participantId", timeout=30000
            )
        ids = {n: await p.evaluate("window.sfuClient.participantId") for n, p in pages.items()}

        async def dominant_tile(page: Any) -> dict[str, Any] | None:
            tiles = [t for t in await page.evaluate(TILES) if "speaking-dominant" in t["classes"]]
            return tiles[0] if tiles else None

        for name, page in pages.items():
            tile = await wait_for(
                f"{name}: a dominant speaker's tile", lambda p=page: dominant_tile(p), 30
            )
            me = ids[name]
            shown = me if tile["id"] == "tile-self" else tile["id"].removeprefix("tile-")
            assert shown in ids.values(), (tile, ids)
            assert shown == await page.evaluate("window.sfuClient.dominant"), tile
            print(f"\n{name}: dominant {shown} ({tile['label']})")

        # ann mutes her microphone: bob is the only one speaking, and takes over
        await ann.click("#micBtn")

        async def bob_dominant() -> bool:
            return bool(await ann.evaluate("window.sfuClient.dominant") == ids["bob"])

        await wait_for("bob dominant", bob_dominant, 20)
        bob_tile = f"#tile-{ids['bob']}"
        assert await ann.evaluate(
            f"document.querySelector('{bob_tile}').classList.contains('speaking-dominant')"
        )
        # ... on his own page too: his own tile
        await bob.wait_for_function(
            "document.getElementById('tile-self').classList.contains('speaking-dominant')",
            timeout=5000,
        )

        # speaker view: bob's tile is the large one
        await ann.click("#speakerBtn")
        await ann.wait_for_function(
            f"document.querySelector('{bob_tile}').classList.contains('big')", timeout=5000
        )
        # the user enlarges their own tile: it stays large while bob speaks on
        await ann.click("#tile-self video")
        await asyncio.sleep(2)
        assert await ann.evaluate("document.getElementById('tile-self').classList.contains('big')")
        assert not await ann.evaluate(
            f"document.querySelector('{bob_tile}').classList.contains('big')"
        )
        # clicked back: speaker view again
        await ann.click("#tile-self video")
        await ann.wait_for_function(
            f"document.querySelector('{bob_tile}').classList.contains('big')", timeout=5000
        )
        for name, page in pages.items():
            await no_errors(page, name)
        assert errors == [], errors


@pytest.mark.timeout(150)
async def test_screen_share_has_its_own_tile(sfu_url_fit_off: str, playwright: Any) -> None:
    """ann shares her (fake) screen: bob gets a second tile of hers, class `screen`, large,
    that decodes; ann stops sharing (her button, then the browser's own end of the share):
    the tile goes, and nobody shows an error."""
    room = "screen"
    async with AsyncExitStack() as stack:
        pages = await two_pages(stack, playwright, sfu_url_fit_off, room)
        errors = watch_errors(pages)
        ann, bob = pages["ann"], pages["bob"]

        async def decoding(page: Any) -> bool:
            return any((s["framesDecoded"] or 0) > 0 for s in await video_in(page))

        for name, page in pages.items():
            await wait_for(f"{name} decodes", lambda p=page: decoding(p), 40)

        async def screen_tiles() -> list[dict[str, Any]]:
            return [t for t in await bob.evaluate(TILES) if "screen" in t["classes"]]

        async def decoded_screen() -> dict[str, Any] | None:
            tiles = [t for t in await screen_tiles() if t["videoWidth"] > 0]
            return tiles[0] if tiles else None

        for stop in ("button", "ended"):
            started = time.monotonic()
            await ann.click("#shareBtn")
            tile = await wait_for("bob decodes ann's screen", decoded_screen, 30)
            print(
                f"\nscreen on bob's page {time.monotonic() - started:.1f} s after the click:"
                f" {tile['id']} {tile['label']!r} {tile['videoWidth']} wide"
            )
            assert "big" in tile["classes"], tile  # the page enlarges a screen that appears
            assert "screen" in tile["label"], tile
            assert await ann.evaluate("document.getElementById('shareBtn').textContent") == (
                "Stop sharing"
            )
            assert await ann.evaluate("!!document.getElementById('tile-self-screen')")
            track = await ann.evaluate("window.sfuClient.ownTrackId('screen')")
            info = await bob.evaluate(f"window.sfuClient.tracks.get({track!r})")
            assert info["source"] == "screen", info
            if stop == "button":
                await ann.click("#shareBtn")
            else:  # the browser's own "Stop sharing"
                await ann.evaluate(
                    "window.sfuClient.screenStream.getVideoTracks()[0]"
                    ".dispatchEvent(new Event('ended'))"
                )

            async def gone() -> bool:
                return not await screen_tiles()

            await wait_for(f"the screen tile gone ({stop})", gone, 20)
            await ann.wait_for_function(
                "window.sfuClient.publishPc.signalingState === 'stable'", timeout=10000
            )
            assert not await bob.evaluate(f"window.sfuClient.tracks.has({track!r})")
            assert not await ann.evaluate("!!document.getElementById('tile-self-screen')")
            await asyncio.sleep(1)
            for name, page in pages.items():
                await no_errors(page, name)
        # the cameras went on
        # (summed: the stopped screen's inbound-rtp may still be listed, frozen)
        frames = sum(s["framesDecoded"] for s in await video_in(bob))
        await asyncio.sleep(2)
        assert sum(s["framesDecoded"] for s in await video_in(bob)) > frames + 10
        assert errors == [], errors


@pytest.mark.timeout(150)
async def test_devices_role_and_a_participant_without_video(
    sfu_url_fit_off: str, playwright: Any
) -> None:
    """bob's device picker lists the fake camera and microphones; another microphone
    replaces the one he sends (no renegotiation, still muted); his role line says what
    `joined` said. ann publishes her microphone only: her tile is a placeholder with her
    name, on bob's page and on hers."""
    room = "devices"
    async with AsyncExitStack() as stack:
        ann = await stack.enter_async_context(
            chromium_page(playwright, f"{sfu_url_fit_off}/?room={room}&name=ann&video=0&autojoin=1")
        )
        bob = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{sfu_url_fit_off}/?room={room}&name=bob&codec=VP9&res=640x360&role=presenter&autojoin=1",
            )
        )
        pages = {"ann": ann, "bob": bob}
        errors = watch_errors(pages)
        await bob.wait_for_function(
            "document.querySelectorAll('#camSelect option').length > 0", timeout=30000
        )
        cameras = await bob.evaluate(
            "[...document.querySelectorAll('#camSelect option')].map((o) => o.textContent)"
        )
        mics = await bob.evaluate(
            "[...document.querySelectorAll('#micSelect option')].map((o) => o.value)"
        )
        print(f"\ncameras {cameras}, {len(mics)} microphones")
        assert cameras and all(cameras), cameras
        assert await bob.evaluate("!document.getElementById('camSelect').disabled")
        identity = await bob.evaluate("document.getElementById('identity').textContent")
        assert "role: presenter" in identity and "publish, subscribe" in identity, identity
        ann_id = await ann.evaluate("window.sfuClient.participantId")

        # ann has no video: a placeholder with her name, never a black picture
        await bob.wait_for_function(
            "(id) => { const t = document.getElementById('tile-' + id);"
            " return t && t.classList.contains('no-video')"
            " && getComputedStyle(t.querySelector('.placeholder')).display !== 'none'"
            " && t.querySelector('.placeholder').textContent.includes('ann'); }",
            arg=ann_id,
            timeout=20000,
        )
        assert await ann.evaluate(
            "document.getElementById('tile-self').classList.contains('no-video')"
        )

        async def ann_hears() -> int:
            stats = [s for s in await ann.evaluate(INBOUND) if s["kind"] == "audio"]
            return int(stats[0]["totalSamplesReceived"] or 0) if stats else 0

        await wait_for("ann hears bob", ann_hears, 30)

        # bob mutes his microphone, then switches to another one: replaced, still muted,
        # the publish connection not renegotiated
        if len(mics) > 1:
            await bob.click("#micBtn")
            sdp = await bob.evaluate("window.sfuClient.publishPc.localDescription.sdp")
            current = await bob.evaluate("window.sfuClient.deviceOf('audio')")
            other = next(m for m in mics if m != current)
            await bob.select_option("#micSelect", other)
            await bob.wait_for_function(
                "(id) => window.sfuClient.deviceOf('audio') === id", arg=other, timeout=10000
            )
            assert (
                await bob.evaluate("window.sfuClient.localStream.getAudioTracks()[0].enabled")
                is False
            )
            assert await bob.evaluate("window.sfuClient.publishPc.localDescription.sdp") == sdp
            await bob.click("#micBtn")  # unmuted: ann hears the new microphone
            heard = await ann_hears()
            await wait_for(
                "ann hears bob's other microphone", lambda: _more(ann_hears, heard + 48000), 10
            )
        # the camera: the same (only) fake device again is a no-op; it still sends
        camera = await bob.evaluate("window.sfuClient.deviceOf('video')")
        assert camera and camera in await bob.evaluate(
            "[...document.querySelectorAll('#camSelect option')].map((o) => o.value)"
        )
        for name, page in pages.items():
            await no_errors(page, name)
        assert errors == [], errors
