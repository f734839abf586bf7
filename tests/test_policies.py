"""Room policies enforced at the signaling edge: roles, publishers, modes, room size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.clients import SignalingClient
from support.serving import serving

from sfu.config import load_settings, parse_settings
from sfu.signaling.server import create_app

CONFIGS = Path(__file__).parent.parent / "configs"
EXTRA = """
rooms:
  default: {max_participants: 2, codecs: [VP8]}
"""


@pytest.fixture
async def webinar() -> AsyncIterator[str]:
    async with serving(create_app(load_settings(CONFIGS / "webinar.yaml"))) as url:
        yield url


@pytest.fixture
async def small() -> AsyncIterator[str]:
    async with serving(create_app(parse_settings(EXTRA))) as url:
        yield url


async def test_webinar_roles_and_modes(webinar: str) -> None:
    attendee = SignalingClient(webinar, "attendee")
    presenter = SignalingClient(webinar, "presenter")
    try:
        await attendee.connect()
        await presenter.connect()
        await attendee.join("webinar-1")
        reply = await attendee.request({"type": "publish", "sdp": "v=0"})
        assert reply["type"] == "error" and reply["code"] == "forbidden"
        reply = await presenter.request(
            {"type": "join", "room": "webinar-1", "name": "p", "role": "presenter"}
        )
        assert reply["type"] == "joined"
        reply = await presenter.request(
            {"type": "publish", "sdp": "v=0", "scalability_mode": "L1T3"}
        )
        assert reply["type"] == "error" and reply["code"] == "not_allowed"
        assert "L3T3_KEY" in reply["reason"]
    finally:
        await attendee.close()
        await presenter.close()


async def test_room_size_and_codec_preference(small: str) -> None:
    clients = [SignalingClient(small, f"c{i}") for i in range(3)]
    try:
        for c in clients:
            await c.connect()
        await clients[0].join("r")
        await clients[1].join("r")
        reply = await clients[2].request({"type": "join", "room": "r", "name": "late"})
        assert reply["type"] == "error" and reply["code"] == "room_full"
        # the answer offers only the allowed codec (aiortc offers VP8 and H264)
        await clients[0].publish()
        assert clients[0].publish_pc is not None
        answer = clients[0].publish_pc.remoteDescription.sdp
        video = answer[answer.index("m=video") :]
        assert "VP8/90000" in video and "H264" not in video
    finally:
        for c in clients:
            await c.close()
