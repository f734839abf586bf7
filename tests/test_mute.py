"""Mute: a publisher mutes its own video; the room hears of it, nothing of it is forwarded
(its audio goes on), and on unmute the video comes back from a keyframe with sequence
numbers that go on where they stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from support.captures import CAPTURES
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu.config import Settings
from sfu.signaling.server import create_app


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    async with running(create_app(Settings())) as running_server:
        yield running_server


def video_since(peer: SimSubscriber, since: float) -> int:
    return sum(1 for at, _, _ in peer.layers if at >= since)


async def test_a_muted_video_is_not_forwarded_and_comes_back_at_a_keyframe(
    server: RunningServer,
) -> None:
    publisher = ReplayPublisher(
        server.ws_url,
        "pub",
        read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap"),
        read_capture(CAPTURES / "opus.sfucap"),
    )
    viewer = SimSubscriber(server.ws_url, "viewer")
    late = SimSubscriber(server.ws_url, "late")
    try:
        await publisher.connect("room")
        await viewer.connect("room")
        await publisher.publish()
        await wait_until(lambda: video_since(viewer, time.monotonic() - 1) > 20, 20)
        video = next(
            m["track"]["track_id"]
            for m in viewer.messages
            if m["type"] == "track_published" and m["track"]["kind"] == "video"
        )
        # only its own tracks: another's is unknown to it
        reply = await viewer.request({"type": "mute", "track_id": video, "muted": True}, 5)
        assert reply["type"] == "error" and reply["code"] == "unknown_track", reply

        reply = await publisher.request({"type": "mute", "track_id": video, "muted": True}, 5)
        assert reply["type"] == "ok", reply
        event = await viewer.wait_for(lambda m: m["type"] == "track_muted", 5)
        assert event == {
            "type": "track_muted",
            "track_id": video,
            "participant_id": publisher.participant_id,
            "muted": True,
        }
        await asyncio.sleep(0.5)  # what was in flight
        muted_at = time.monotonic()
        received = viewer.received
        await asyncio.sleep(2.0)
        assert video_since(viewer, muted_at) == 0
        assert viewer.received > received + 50  # the audio goes on (~50 packets/s)
        # someone joining now learns it is muted
        await late.connect("room")
        joined = next(m for m in late.messages if m["type"] == "joined")
        assert {t["track_id"]: t["muted"] for t in joined["tracks"]}[video] is True

        keyframes = publisher.keyframe_requests
        lost = viewer.lost
        reply = await publisher.request({"type": "mute", "track_id": video, "muted": False}, 5)
        assert reply["type"] == "ok"
        unmuted = time.monotonic()
        await wait_until(lambda: video_since(viewer, unmuted) > 30, 5)
        assert publisher.keyframe_requests > keyframes  # asked for at once
        # the stream goes on where it stopped: no gap read as loss
        assert viewer.lost - lost < 5, viewer.lost - lost
        checker = next(iter(c for c in viewer.checkers.values() if c.decoded))
        assert not checker.keyframe_wanted
    finally:
        for peer in (viewer, late, publisher):
            await peer.close()
