"""The demo page in real Chromium (Debian's, driven by Playwright), as people see it: two
pages at 1280x720 and a phone at 480x800 in one room. The tiles fit the page; a click
enlarges a tile and the server sends it a higher spatial layer (its overlay says which);
the stats panel opens; a page leaves and nobody shows an error. Screenshots of every page
in each state go to the test's tmp_path (docs/screenshots/ has one set)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium_page, require_chromium
from support.waiting import wait_for

require_chromium()

#: name, viewport, capture: one VP9 publisher at 720p (three spatial layers, 320 to 1280
#: wide), the others at 360p (less for two cores to encode)
PAGES = [
    ("ann", (1280, 720), "1280x720"),
    ("bob", (1280, 720), "640x360"),
    ("phone", (480, 800), "640x360"),
]

OUTBOUND = "window.sfuClient ? window.sfuClient.outboundStats() : []"

#: every tile's box, and the page's scroll size
BOXES = """() => ({
  width: window.innerWidth, height: window.innerHeight,
  scrollWidth: document.documentElement.scrollWidth,
  tiles: [...document.querySelectorAll('.tile')].map((t) => {
    const r = t.getBoundingClientRect();
    return {id: t.id, left: r.left, top: r.top, right: r.right, bottom: r.bottom,
            width: r.width, height: r.height};
  }),
})"""


async def decoding(page: Any, videos: int) -> bool:
    stats = await page.evaluate("window.sfuClient ? window.sfuClient.inboundStats() : []")
    return sum(1 for s in stats if s["kind"] == "video" and (s["framesDecoded"] or 0) > 0) == videos


async def assert_tiles_fit(page: Any, name: str) -> None:
    """No horizontal scrolling; every tile inside the viewport and none on another."""
    boxes = await page.evaluate(BOXES)
    assert boxes["scrollWidth"] <= boxes["width"], (name, boxes)
    tiles = boxes["tiles"]
    assert tiles, (name, boxes)
    for t in tiles:
        assert t["width"] > 0 and t["height"] > 0, (name, t)
        assert t["left"] >= 0 and t["right"] <= boxes["width"], (name, t)
        assert t["top"] >= 0 and t["bottom"] <= boxes["height"], (name, t)
    for i, a in enumerate(tiles):
        for b in tiles[i + 1 :]:
            apart = (
                a["right"] <= b["left"]
                or b["right"] <= a["left"]
                or a["bottom"] <= b["top"]
                or b["bottom"] <= a["top"]
            )
            assert apart, (name, a, b)


async def tile_of(page: Any, participant: str) -> dict[str, Any]:
    """A remote tile: its size, the layer its overlay shows, its overlay's text."""
    return dict(
        await page.evaluate(
            """(id) => {
              const t = document.getElementById('tile-' + id);
              if (!t) return null;
              const r = t.getBoundingClientRect();
              return {width: r.width, height: r.height, big: t.classList.contains('big'),
                      spatial: t.dataset.spatial ?? '', trackId: t.dataset.trackId ?? null,
                      level: t.querySelector('.level').textContent,
                      figures: t.querySelector('.figures').textContent};
            }""",
            participant,
        )
        or {}
    )


async def shoot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


@pytest.mark.timeout(240)
async def test_demo_pages_fit_enlarge_and_leave(
    sfu_url_fit_off: str, playwright: Any, tmp_path: Path
) -> None:
    room = "demo-layout"
    shots: list[Path] = []
    async with AsyncExitStack() as stack:
        pages = {}
        for name, (width, height), res in PAGES:
            pages[name] = await stack.enter_async_context(
                chromium_page(
                    playwright,
                    f"{sfu_url_fit_off}/?room={room}&name={name}&codec=VP9&res={res}&autojoin=1",
                    width=width,
                    height=height,
                )
            )
        errors: list[str] = []
        for name, page in pages.items():
            page.on("pageerror", lambda e, name=name: errors.append(f"{name}: {e}"))
        for name, page in pages.items():
            await wait_for(f"{name} decodes two videos", lambda p=page: decoding(p, 2), 60)
        ids = {
            name: await p.evaluate("window.sfuClient.participantId") for name, p in pages.items()
        }
        bob, ann = pages["bob"], ids["ann"]

        # the overlay: the layer received and why, its frame rate and bitrate; the grid's
        # tile is smaller than ann's top layer: its window is what holds it below
        async def overlay_filled() -> dict[str, Any] | None:
            tile = await tile_of(bob, ann)
            ok = tile.get("spatial") not in (None, "") and "(window)" in tile.get("level", "")
            return tile if ok and "fps" in tile["figures"] and "bit/s" in tile["figures"] else None

        grid = await wait_for("bob's overlay of ann's tile, held by its window", overlay_filled, 30)
        assert grid["level"].startswith(f"S{grid['spatial']}T"), grid
        out = [s for s in await pages["ann"].evaluate(OUTBOUND) if s["kind"] == "video"][0]
        print(f"\nann sends {out['frameWidth']} wide ({out['qualityLimitationReason']});")
        print(f"bob's grid tile of ann {grid['width']:.0f}x{grid['height']:.0f}: {grid['level']}")

        for name, page in pages.items():
            await assert_tiles_fit(page, name)
            shots.append(await shoot(page, tmp_path, f"grid-{name}"))

        # a click enlarges ann's tile on bob's page: the others become a strip, the tile's
        # window grows and the server sends it a higher spatial layer
        await bob.click(f"#tile-{ann} video")
        big = await tile_of(bob, ann)
        assert big["big"] and big["width"] >= 1.5 * grid["width"], (grid, big)
        await assert_tiles_fit(bob, "bob, enlarged")

        async def higher() -> dict[str, Any] | None:
            tile = await tile_of(bob, ann)
            spatial = tile.get("spatial")
            return tile if spatial and int(spatial) > int(grid["spatial"]) else None

        enlarged = await wait_for("a higher layer for the enlarged tile", higher, 30)
        print(f"enlarged to {big['width']:.0f}x{big['height']:.0f}: {enlarged['level']}")
        level = await bob.evaluate("(id) => window.sfuClient.levels.get(id)", grid["trackId"])
        assert level["spatial"] == int(enlarged["spatial"]) and level["reason"] != "pin", level
        shots.append(await shoot(bob, tmp_path, "enlarged-bob"))

        # the phone enlarges a tile too: the strip goes below it, nothing overflows
        phone = pages["phone"]
        await phone.click(f"#tile-{ann} video")
        assert (await tile_of(phone, ann))["big"]
        await assert_tiles_fit(phone, "phone, enlarged")
        shots.append(await shoot(phone, tmp_path, "enlarged-phone"))

        # the stats panel: the server's view of the downlink, each video's layer and figures
        await bob.click("#statsBtn")
        await bob.wait_for_function(
            "document.querySelector('#statsPanel td') !== null &&"
            " document.getElementById('statsPanel').textContent.includes('downlink estimate')",
            timeout=10000,
        )
        shots.append(await shoot(bob, tmp_path, "stats-bob"))

        # a click on the enlarged tile restores the grid, and the layer follows it down
        await bob.click(f"#tile-{ann} video")
        restored = await tile_of(bob, ann)
        assert not restored["big"] and abs(restored["width"] - grid["width"]) < 2, restored
        await bob.click("#statsBtn")

        async def lower() -> dict[str, Any] | None:
            tile = await tile_of(bob, ann)
            spatial = tile.get("spatial")
            return tile if spatial and int(spatial) <= int(grid["spatial"]) else None

        await wait_for("the grid's layer again", lower, 30)
        await assert_tiles_fit(bob, "bob, restored")

        # the phone leaves: the others lose its tile and show no error
        await phone.click("#leaveBtn")
        await phone.wait_for_function("document.getElementById('status').textContent === 'left'")
        for name in ("ann", "bob"):
            await pages[name].wait_for_function(
                "(id) => !document.getElementById('tile-' + id)", arg=ids["phone"], timeout=20000
            )
        await asyncio.sleep(1.5)  # what a gone tile might still send
        for name, page in pages.items():
            assert await page.evaluate("document.getElementById('error').hidden"), name
            client_errors = await page.evaluate("window.sfuClient.errors")
            assert client_errors == [], (name, client_errors)
            if name != "phone":
                await assert_tiles_fit(page, f"{name}, after the phone left")
            shots.append(await shoot(page, tmp_path, f"left-{name}"))
        assert errors == [], errors
    print("screenshots:", *(str(p) for p in shots), sep="\n  ")
