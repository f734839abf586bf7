"""The server's event loop: uvloop where installed (the default install has it on Linux),
asyncio's own otherwise or on request; media flows through `sfu serve` on either."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import pytest
from support.captures import CAPTURES
from support.serving import start_sfu
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu.adapters import aiortc_plane as plane
from sfu.adapters import event_loop
from sfu.adapters.event_loop import LoopUnavailable, loop_name, new_event_loop


def test_the_default_install_runs_on_uvloop() -> None:
    loop, name = new_event_loop()
    try:
        assert name == "uvloop" == loop_name(loop)
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_asyncio_on_request_and_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    loop, name = new_event_loop("asyncio")
    try:
        assert name == "asyncio" == loop_name(loop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()

    real = importlib.import_module

    def without_uvloop(module: str, package: str | None = None) -> Any:
        if module == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(module, package)

    monkeypatch.setattr(event_loop.importlib, "import_module", without_uvloop)
    loop, name = new_event_loop("auto")
    loop.close()
    assert name == "asyncio"
    with pytest.raises(LoopUnavailable, match="uvloop is not installed"):
        new_event_loop("uvloop")


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
async def test_media_flows_through_sfu_serve_on_either_loop(tmp_path: Path, kind: str) -> None:
    plane.install()  # this process's peers negotiate as the server's do
    server = start_sfu("--loop", kind, log=tmp_path / "log.txt")
    publisher = ReplayPublisher(
        server.ws_url, "publisher", read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    )
    subscriber = SimSubscriber(server.ws_url, "subscriber", (1280, 720))
    try:
        await server.wait_healthy()
        assert f"event loop: {kind}" in server.log.read_text()
        for peer in (publisher, subscriber):
            await peer.connect("loop")
        await publisher.publish()
        await wait_until(lambda: subscriber.received > 300, timeout=20)
        frames = sum(c.frames_decodable for c in subscriber.checkers.values())
        undecodable = sum(c.frames_undecodable for c in subscriber.checkers.values())
        assert frames > 20 and undecodable == 0, (frames, undecodable)
        assert "Traceback" not in server.log.read_text()
    finally:
        for peer in (publisher, subscriber):
            await peer.close()
        server.stop()
