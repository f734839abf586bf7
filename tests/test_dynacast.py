"""Dynacast: the publisher is told to encode only the spatial layers some subscriber needs
(``publish_layers``), fewer only after a while, more at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from support.captures import CAPTURES
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu.allocation.dynacast import Dynacast, needed_spatial
from sfu.config import parse_settings
from sfu.forwarding.target import Allocation, LayerCaps
from sfu.protocol import PublishLayers
from sfu.signaling.server import create_app

LADDER = ((320, 180), (640, 360), (1280, 720))


def need(
    window: tuple[int, int] | None = None,
    bandwidth: Allocation | None = None,
    caps: LayerCaps | None = None,
    pin: tuple[int, int] | None = None,
) -> int:
    return needed_spatial(
        LADDER,
        3,
        caps=caps or LayerCaps(),
        window=window,
        pin=pin,
        cpu=None,
        bandwidth=bandwidth,
    )


def test_what_one_subscriber_needs() -> None:
    assert need() == 2  # no window yet: everything
    assert need((320, 180)) == 0
    assert need((480, 270)) == 0  # 640 > 1.2 x 480
    assert need((640, 360)) == 1
    assert need((1920, 1080)) == 2
    assert need((0, 0)) == -1  # not rendered
    assert need(caps=LayerCaps(max_spatial=1)) == 1  # the room's policy
    assert need(pin=(0, 2)) == 0
    # bandwidth holds it at S0: S1 stays, to move up to; nothing fits: S0
    assert need(bandwidth=Allocation(0, 2, False, 0)) == 1
    assert need(bandwidth=Allocation(0, 0, True, 0)) == 0
    assert need((320, 180), bandwidth=Allocation(2, 2, False, 0)) == 0


def test_fewer_layers_only_after_a_while_more_at_once() -> None:
    dynacast = Dynacast(down_after=5.0, min_interval=1.0)
    assert dynacast.update(0, 0.0) is None  # no layers seen yet: nothing to say
    dynacast.observe(LADDER)
    assert dynacast.update(2, 0.0) is None  # all needed: as it is
    # needed fewer: only once it has lasted 5 s, whatever happens in between
    assert dynacast.update(0, 1.0) is None
    assert dynacast.update(0, 5.9) is None
    assert dynacast.update(2, 6.0) is None  # a tile enlarged for a moment: starts over
    assert dynacast.update(0, 7.0) is None
    assert dynacast.update(1, 11.0) is None
    # S2 unused since 7 s: it goes at 12 s; S1, needed at 11 s, stays
    assert dynacast.update(0, 12.0) == 2
    assert dynacast.requested == 2
    # the publisher sends two layers now: the full ladder is remembered
    dynacast.observe(LADDER[:2])
    assert dynacast.full == LADDER
    assert dynacast.update(2, 12.5) is None  # within the minimum interval
    assert dynacast.update(2, 13.0) == 3  # more: at once
    assert dynacast.requested is None
    dynacast.observe(((160, 90), (320, 180), (640, 360)))  # all sent: a new ladder
    assert dynacast.full[2] == (640, 360)


def test_nobody_watching_stops_the_encoding_one_layer_tracks_too() -> None:
    dynacast = Dynacast(down_after=2.0, min_interval=0.0)
    dynacast.observe(((1280, 720),))  # VP8 L1T3: one spatial layer
    assert dynacast.update(0, 0.0) is None
    assert dynacast.update(-1, 1.0) is None
    assert dynacast.update(-1, 3.0) == 0
    assert dynacast.update(0, 3.5) == 1


def test_the_message() -> None:
    message = PublishLayers(track_id="p:1", spatial_layers=1)
    assert message.model_dump() == {
        "type": "publish_layers",
        "track_id": "p:1",
        "spatial_layers": 1,
    }
    with pytest.raises(ValueError):
        PublishLayers(track_id="p:1", spatial_layers=4)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    settings = parse_settings(
        "rooms:\n  policies: {nodyn: {dynacast: false}}\n"
        "  rules: [{match: 'nodyn-*', policy: nodyn}]\n"
    )
    async with running(create_app(settings)) as running_server:
        yield running_server


def layers_told(publisher: ReplayPublisher) -> list[int]:
    return [m["spatial_layers"] for m in publisher.messages if m["type"] == "publish_layers"]


async def test_the_publisher_is_told_what_its_viewers_need(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VP9 L3T3_KEY publisher; a viewer renders it at 320x180: after the hold, the
    publisher is told one layer; the viewer enlarges it to 1280x720: three, at once; a room
    whose policy turns dynacast off tells nothing."""
    monkeypatch.setattr("sfu.allocation.dynacast.DOWN_AFTER", 2.0)
    video = read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    publisher = ReplayPublisher(server.ws_url, "pub", video)
    viewer = SimSubscriber(server.ws_url, "viewer", window=(320, 180))
    other = ReplayPublisher(server.ws_url, "pub2", video)
    other_viewer = SimSubscriber(server.ws_url, "viewer2", window=(320, 180))
    try:
        await publisher.connect("dyn")
        await viewer.connect("dyn")
        await publisher.publish()
        await wait_until(lambda: len(viewer.layers) > 50, 20)
        await wait_until(lambda: layers_told(publisher) == [1], 10)
        track = next(
            m["track"]["track_id"]
            for m in viewer.messages
            if m["type"] == "track_published" and m["track"]["kind"] == "video"
        )
        enlarged = time.monotonic()
        await viewer.send({"type": "window", "track_id": track, "width": 1280, "height": 720})
        await wait_until(lambda: layers_told(publisher) == [1, 3], 5)
        took = time.monotonic() - enlarged
        assert took < 2.0, took

        await other.connect("nodyn-1")
        await other_viewer.connect("nodyn-1")
        await other.publish()
        await wait_until(lambda: len(other_viewer.layers) > 50, 20)
        await wait_until(lambda: time.monotonic() - enlarged > 4.0, 10)
        assert layers_told(other) == []
    finally:
        for peer in (publisher, viewer, other, other_viewer):
            await peer.close()
