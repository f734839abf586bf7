"""Debian's Chromium driven by Playwright (never a downloaded browser), with the flags that
work on this kind of machine: headless, no sandbox, fake camera and microphone, loopback ICE."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

CHROMIUM = os.environ.get("SFU_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_available() -> bool:
    return os.path.exists(CHROMIUM)


@asynccontextmanager
async def chromium_page(
    playwright: Any,
    url: str,
    width: int = 1280,
    height: int = 800,
    before_goto: Callable[[Any], Awaitable[None]] | None = None,
    executable: str = CHROMIUM,
) -> AsyncIterator[Any]:
    """A page in its own Chromium process with a fresh profile, closed on exit;
    ``before_goto(page)`` runs before the page loads (e.g. to route its WebSocket);
    ``executable``: what Playwright starts instead of Debian's Chromium itself (a wrapper that
    ends in it, e.g. one that enters a network namespace)."""
    profile = tempfile.mkdtemp(prefix="sfu-chromium-")
    context = await playwright.chromium.launch_persistent_context(
        profile,
        executable_path=executable,
        headless=True,
        args=CHROMIUM_ARGS,
        ignore_default_args=["--headless", "--mute-audio"],
        viewport={"width": width, "height": height},
    )
    try:
        page = context.pages[0] if context.pages else await context.new_page()
        if before_goto is not None:
            await before_goto(page)
        await page.goto(url)
        yield page
    finally:
        await context.close()
        shutil.rmtree(profile, ignore_errors=True)
