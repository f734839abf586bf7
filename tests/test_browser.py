"""End to end in real Chromium (Debian's, driven by Playwright): people join a room and see
and hear each other through the SFU."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from browser import chromium_available, chromium_page

pytestmark = pytest.mark.browser

if not chromium_available():  # CI installs it; a developer machine may not have it
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser tests: /usr/bin/chromium is missing")
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)

from playwright.async_api import async_playwright  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sfu_url() -> Iterator[str]:
    """`sfu serve` as users run it, in its own process, stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfu", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sfu serve did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


INBOUND = "window.sfuClient ? window.sfuClient.inboundStats() : []"
OUTBOUND = "window.sfuClient ? window.sfuClient.outboundStats() : []"


async def inbound(page: Any) -> list[dict[str, Any]]:
    return list(await page.evaluate(INBOUND))


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


@pytest.fixture
async def playwright() -> AsyncIterator[Any]:
    async with async_playwright() as p:
        yield p


@pytest.mark.parametrize("codec", ["VP9", "VP8", "AV1"])
async def test_three_pages_see_and_hear_each_other(
    sfu_url: str, playwright: Any, codec: str
) -> None:
    room = f"e2e-{codec.lower()}"
    async with AsyncExitStack() as stack:
        pages = []
        for i in range(3):
            page = await stack.enter_async_context(
                chromium_page(
                    playwright, f"{sfu_url}/?room={room}&name=p{i}&codec={codec}&autojoin=1"
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

        first = {id(p): await inbound(p) for p in pages}
        await asyncio.sleep(3)
        for page, pid in zip(pages, ids, strict=True):
            stats = await inbound(page)
            videos = [s for s in stats if s["kind"] == "video"]
            audios = [s for s in stats if s["kind"] == "audio"]
            assert len(videos) == 2 and len(audios) == 2, stats
            before = {s["ssrc"]: s for s in first[id(page)]}
            for s in videos:
                assert s["framesDecoded"] > before[s["ssrc"]]["framesDecoded"] + 20, (codec, s)
                publisher = s["trackIdentifier"].split(":")[0]
                assert publisher in outbound and publisher != pid
                sent = outbound[publisher]
                # every layer is forwarded: the receiver decodes the publisher's top layer
                if sent["qualityLimitationReason"] == "none" and codec != "VP8":
                    assert s["frameWidth"] == 1280, (codec, s, sent)
                else:
                    assert s["frameWidth"] == sent["frameWidth"], (codec, s, sent)
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
