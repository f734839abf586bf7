"""WHIP and WHEP with clients we did not write, in real Chromium: the whip-whep npm package
(Medooze, vendored unmodified in tests/fixtures/vendor/whip-whep) served from a page of
another origin.  Chromium publishes VP9 SVC (L3T3_KEY) over WHIP, trickling its candidates;
another Chromium plays it over WHEP and decodes it; a demo-page participant of the same
room sees the WHIP publisher; the WHEP layer extension lowers the viewer's layer."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support.browser import require_chromium
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.bandwidth import shaped_setup
from loadtest.browser_bandwidth import namespace_wrapper
from loadtest.chromium import chromium_page
from loadtest.server import server_stats
from sfu.auth.tokens import create_token
from sfu.config import load_settings
from sfu.signaling.server import create_app

require_chromium()

VENDOR = Path(__file__).parent / "fixtures" / "vendor" / "whip-whep"
SECRET = "w" * 40

PUBLISH = """<!doctype html><meta charset="utf-8"><video id="v" muted autoplay></video>
<script type="module">
import { WHIPClient } from "/whip.js";
const q = new URLSearchParams(location.search);
window.whipState = "starting";
try {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true, video: { width: 1280, height: 720, frameRate: 30 } });
  document.getElementById("v").srcObject = stream;
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly" });
  const video = pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly", sendEncodings: [{ scalabilityMode: "L3T3_KEY" }] });
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  video.setCodecPreferences([
    ...codecs.filter((c) => c.mimeType === "video/VP9"),
    ...codecs.filter((c) => c.mimeType !== "video/VP9")]);
  window.pc = pc;
  const whip = new WHIPClient();
  await whip.publish(pc, q.get("endpoint"), q.get("token"));
  window.whip = whip;
  window.whipState = "published";
} catch (e) { window.whipState = "failed: " + e; }
</script>"""

PLAY = """<!doctype html><meta charset="utf-8">
<video id="v" muted autoplay playsinline style="width:1280px;height:720px"></video>
<script type="module">
import { WHEPClient } from "/whep.js";
const q = new URLSearchParams(location.search);
window.whepState = "starting";
try {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (event) => {
    if (event.track.kind === "video")
      document.getElementById("v").srcObject = new MediaStream([event.track]);
  };
  window.pc = pc;
  const whep = new WHEPClient();
  await whep.view(pc, q.get("endpoint"), q.get("token"));
  window.whep = whep;
  window.whepState = "playing";
} catch (e) { window.whepState = "failed: " + e; }
</script>"""

VIDEO_IN = """async () => {
  const out = [];
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video")
      out.push({ framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0 });
  });
  return out[0] || { framesDecoded: 0, frameWidth: 0 };
}"""

VIDEO_OUT = """async () => {
  const out = [];
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video")
      out.push({ frameWidth: s.frameWidth, scalabilityMode: s.scalabilityMode,
                 qualityLimitationReason: s.qualityLimitationReason });
  });
  return out;
}"""


def token(room: str, identity: str, grants: set[str]) -> str:
    return create_token(
        SECRET.encode(), room=room, identity=identity, grants=grants, ttl=600, now=time.time()
    )


@pytest.fixture
async def sfu(tmp_path: Path) -> AsyncIterator[RunningServer]:
    path = tmp_path / "sfu.yaml"
    path.write_text(f"auth:\n  secret: {SECRET}\n")
    async with running(create_app(load_settings(path), str(path))) as server:
        yield server


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    """The client pages and the vendored library, served from another origin (port)."""
    async with running(pages_app()) as server:
        yield server.url


async def wait_state(page: Any, name: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = await page.evaluate(f"window.{name}")
        if state == wanted:
            return
        assert state is None or not str(state).startswith("failed"), state
        assert time.monotonic() < deadline, state
        await page.wait_for_timeout(200)


@pytest.mark.timeout(180)
async def test_third_party_whip_and_whep_clients_in_chromium(
    sfu: RunningServer, pages: str, playwright: Any
) -> None:
    room = "broadcast"
    publish_url = (
        f"{pages}/publish.html?endpoint={sfu.url}/whip/{room}"
        f"&token={token(room, 'studio', {'publish'})}"
    )
    play_url = (
        f"{pages}/play.html?endpoint={sfu.url}/whep/{room}"
        f"&token={token(room, 'viewer', {'subscribe'})}"
    )
    async with AsyncExitStack() as stack:
        publisher = await stack.enter_async_context(chromium_page(playwright, publish_url))
        await wait_state(publisher, "whipState", "published")
        viewer = await stack.enter_async_context(chromium_page(playwright, play_url))
        await wait_state(viewer, "whepState", "playing")

        # the server got the WHIP client's trickled candidates and its VP9 SVC stream
        studio = next(p for p in sfu.rooms.rooms[room].participants.values() if p.name == "studio")
        assert studio.publisher is not None
        await wait_until(lambda: len(studio.sources) == 2, 20)
        video = next(s for s in studio.sources.values() if s.kind == "video")
        assert video.params.codec == "VP9"
        await wait_until(lambda: video.spatial_layers == 3, 20)

        def whep_state() -> object:
            peer = next(
                p for p in sfu.rooms.rooms[room].participants.values() if p.name == "viewer"
            ).subscriber
            assert peer is not None
            return {
                "ice": peer.pc.iceConnectionState,
                "slots": {
                    k: (v.codec, v.binding is not None, v.playing is not None)
                    for k, v in peer._slots.items()  # type: ignore[attr-defined]
                },
                "downtracks": {k: d.packets_sent for k, d in peer.downtracks.items()},
                "candidates": list(peer._candidates),  # type: ignore[attr-defined]
            }

        # the WHEP page decodes it, at the top layer (whatever size Chromium encodes it at:
        # on a loaded machine it lowers its resolution, qualityLimitationReason "cpu")
        async def decoded() -> dict[str, Any]:
            return dict(await viewer.evaluate(VIDEO_IN))

        def top_width() -> int:
            return max(width for width, _ in video.resolutions)

        deadline = time.monotonic() + 40
        while (stats := await decoded())["framesDecoded"] < 60 or stats["frameWidth"] < top_width():
            out = await publisher.evaluate(VIDEO_OUT)
            assert time.monotonic() < deadline, (stats, out, whep_state())
            await viewer.wait_for_timeout(500)

        # a demo-page participant of the room sees (and decodes) the WHIP publisher
        demo_token = token(room, "guest", {"subscribe"})
        demo = await stack.enter_async_context(
            chromium_page(
                playwright,
                f"{sfu.url}/?room={room}&name=guest&publish=0&token={demo_token}&autojoin=1",
            )
        )
        await demo.wait_for_function(
            "window.sfuClient && [...window.sfuClient.participants.values()]"
            ".some((p) => p.name === 'studio' && p.stream)",
            timeout=30000,
        )

        # the layer extension: the base layer, then automatic again
        await viewer.evaluate("window.whep.selectLayer({ spatialLayerId: 0, temporalLayerId: 2 })")
        deadline = time.monotonic() + 20
        while (stats := await decoded())["frameWidth"] != min(w for w, _ in video.resolutions):
            assert time.monotonic() < deadline, stats
            await viewer.wait_for_timeout(300)
        await viewer.evaluate("window.whep.unselectLayer()")
        deadline = time.monotonic() + 20
        while (stats := await decoded())["frameWidth"] < top_width():
            assert time.monotonic() < deadline, stats
            await viewer.wait_for_timeout(300)
        print("\nWHEP viewer:", json.dumps(stats), await publisher.evaluate(VIDEO_OUT))

        # the WHIP client's DELETE ends the session: the room sees the publisher leave
        await publisher.evaluate("window.whip.stop()")
        await wait_until(
            lambda: all(p.name != "studio" for p in sfu.rooms.rooms[room].participants.values()),
            10,
        )


def pages_app() -> web.Application:
    """The client pages and the vendored library."""
    app = web.Application()

    def page(text: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=text, content_type="text/html")

        return handler

    def module(name: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(
                text=(VENDOR / name).read_text(), content_type="application/javascript"
            )

        return handler

    app.router.add_get("/publish.html", page(PUBLISH))
    app.router.add_get("/play.html", page(PLAY))
    app.router.add_get("/whip.js", module("whip.js"))
    app.router.add_get("/whep.js", module("whep.js"))
    return app


@pytest.mark.timeout(150)
async def test_a_whep_viewer_on_a_shaped_link_gets_a_lower_layer(
    namespaces: None, playwright: Any
) -> None:
    """Chromium in a network namespace behind tc plays a replayed VP9 L3T3_KEY publisher over
    WHEP (the whip-whep package's client, its page served from another origin): at 2.5 Mbit/s
    the top layer, at 400 kbit/s a lower one, chosen by the SFU from the page's
    transport-wide feedback."""
    room = "shaped"
    # a development server (no tokens), taking tokenless WHEP from the pages' origin
    extra = 'http: {allowed_origins: ["*"]}\n'
    async with shaped_setup([(0, 2500)], "VP9", room, extra) as setup:
        link, port = setup.link, setup.port
        async with running(pages_app(), host=link.host_address) as pages_server:
            url = (
                f"{pages_server.url}/play.html?endpoint="
                f"http://{link.host_address}:{port}/whep/{room}"
            )
            wrapper = namespace_wrapper(link.name)
            try:
                async with chromium_page(playwright, url, executable=str(wrapper)) as viewer:
                    await wait_state(viewer, "whepState", "playing")

                    def viewer_target() -> list[Any] | None:
                        stats = server_stats(f"http://127.0.0.1:{port}", port)
                        for participant in stats["rooms"][room]["participants"]:
                            for track in participant["subscribed"]:
                                if participant["name"] == "whep" and track.get("target"):
                                    return list(track["target"])
                        return None

                    async def video() -> dict[str, Any]:
                        return dict(await viewer.evaluate(VIDEO_IN))

                    deadline = time.monotonic() + 40
                    while (stats := await video())["frameWidth"] != 1280:
                        assert time.monotonic() < deadline, (stats, viewer_target())
                        await viewer.wait_for_timeout(300)
                    link.set_rate(400)
                    deadline = time.monotonic() + 20
                    while (stats := await video())["frameWidth"] >= 1280:
                        assert time.monotonic() < deadline, (stats, viewer_target())
                        await viewer.wait_for_timeout(300)
                    target = viewer_target()
                    assert target is not None, target
                    assert target[0] < 2 and target[3] == "bandwidth", target
                    before = stats["framesDecoded"]
                    await viewer.wait_for_timeout(3000)
                    after = await video()
                    assert after["framesDecoded"] > before + 10, (before, after)  # playing
                    print("\nWHEP viewer at 400 kbit/s:", after, target)
            finally:
                wrapper.unlink(missing_ok=True)
