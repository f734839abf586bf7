"""Recording a room end to end: a policy's ``record`` (or the operator's request) taps each
published track, segments are written while the room runs (a live manifest over HTTP),
the last ones when it empties (``endlist``); a publisher's reconnect is a discontinuity; the
files are served with ranges and cache headers, behind the ``recordings`` grant; what is
served decodes at every level (PyAV)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from support.captures import CAPTURES
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu.auth.tokens import create_token
from sfu.config import parse_settings
from sfu.recording.manifest import Manifest
from sfu.recording.playback import read_level
from sfu.signaling.server import create_app

SECRET = "s" * 40
POLICY = (
    "rooms:\n"
    "  policies: {recorded: {record: true}}\n"
    "  rules: [{match: 'rec-*', policy: recorded}]\n"
)


async def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def manifest(server: RunningServer, room: str, ident: str) -> Manifest:
    status, _, body = await get(f"{server.url}/recordings/{room}/{ident}/manifest.json")
    assert status == 200, body
    return Manifest.model_validate_json(body)


async def recordings(server: RunningServer, room: str) -> list[dict[str, Any]]:
    status, _, body = await get(f"{server.url}/recordings/{room}/")
    assert status == 200, body
    return list(json.loads(body)["recordings"])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = parse_settings(
        f"recording: {{dir: '{tmp_path}', segment_duration: 1.0, fsync: false}}\n" + POLICY
    )
    async with running(create_app(settings)) as running_server:
        yield running_server


def publisher(server: RunningServer, name: str = "pub") -> ReplayPublisher:
    return ReplayPublisher(
        server.ws_url,
        name,
        read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap"),
        read_capture(CAPTURES / "opus.sfucap"),
    )


async def test_a_recorded_room_is_served_live_then_whole(server: RunningServer) -> None:
    pub = publisher(server)
    viewer = SimSubscriber(server.ws_url, "viewer")  # keeps the room while pub reconnects
    again = publisher(server)
    try:
        await viewer.connect("rec-1")
        await pub.connect("rec-1")
        await pub.publish()
        await wait_until(lambda: len(viewer.layers) > 100, 20)
        # live: the manifest grows while the room records
        listed: list[dict[str, Any]] = []

        async def has_segments() -> bool:
            nonlocal listed
            listed = await recordings(server, "rec-1")
            if not listed:
                return False
            m = await manifest(server, "rec-1", listed[0]["id"])
            return len(m.tracks) == 2 and all(len(t.segments) >= 2 for t in m.tracks)

        deadline = time.monotonic() + 20
        while not await has_segments():
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.5)
        ident = listed[0]["id"]
        assert listed[0]["live"] is True
        live = await manifest(server, "rec-1", ident)
        assert not live.endlist
        status, headers, _ = await get(f"{server.url}/recordings/rec-1/{ident}/manifest.json")
        assert "no-cache" in headers["cache-control"]

        # the publisher reconnects under the same name: the same tracks go on
        await pub.close()
        await asyncio.sleep(0.5)
        await again.connect("rec-1")
        await again.publish()
        await wait_until(lambda: len(viewer.layers) > 200, 20)
        await asyncio.sleep(3.0)
        for peer in (again, viewer):
            await peer.close()
        # the room is empty: the recording ends, the last segments written
        deadline = time.monotonic() + 10
        while not (await manifest(server, "rec-1", ident)).endlist:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    finally:
        for peer in (pub, again, viewer):
            await peer.close()

    whole = await manifest(server, "rec-1", ident)
    assert (await recordings(server, "rec-1"))[0]["live"] is False
    video = next(t for t in whole.tracks if t.kind == "video")
    audio = next(t for t in whole.tracks if t.kind == "audio")
    assert (video.name, audio.name) == ("pub-video", "pub-audio")
    assert [s.discontinuity for s in video.segments].count(True) == 1
    assert [len(lv.layers) for lv in video.levels][-1] == 3  # S0, S1, S2 files

    # files: immutable, byte ranges, nothing outside the folder
    first = video.segments[0].files["s0"]
    url = f"{server.url}/recordings/rec-1/{ident}/{first.name}"
    status, headers, body = await get(url)
    assert status == 200 and len(body) == first.bytes
    assert "immutable" in headers["cache-control"] and headers.get("etag")
    status, headers, part = await get(url, Range=f"bytes=0-{first.key_bytes - 1}")
    assert status == 206 and part == body[: first.key_bytes]
    for bad in (
        f"{ident}/..%2f..%2fetc%2fpasswd",
        f"{ident}/../manifest.json",
        "20990101T000000Z-abcdef/manifest.json",
        f"{ident}/notes.txt",
    ):
        status, _, _ = await get(f"{server.url}/recordings/rec-1/{bad}")
        assert status == 404, bad

    # what is served decodes, every segment at every level
    async with aiohttp.ClientSession() as session:
        cache: dict[str, bytes] = {}
        for segment in video.segments:
            for f in segment.files.values():
                async with session.get(f"{server.url}/recordings/rec-1/{ident}/{f.name}") as r:
                    cache[f.name] = await r.read()

    def fetch(name: str, length: int | None) -> bytes:
        data = cache[name]
        return data if length is None else data[:length]

    for level in video.levels:
        ctx = av.CodecContext.create("libvpx-vp9", "r")
        sizes = set()
        for segment in video.segments:
            for unit in read_level(video, segment, level, fetch):
                sizes |= {(f.width, f.height) for f in ctx.decode(av.Packet(unit.data))}
        assert sizes == {(level.width, level.height)}, (level, sizes)


async def test_the_operator_starts_and_stops_a_recording(server: RunningServer) -> None:
    pub = publisher(server)
    try:
        await pub.connect("plain")
        await pub.publish()
        await asyncio.sleep(1.0)
        assert await recordings(server, "plain") == []  # no policy: not recorded
        url = f"{server.url}/admin/rooms/plain/recording"
        async with aiohttp.ClientSession() as session:
            async with session.post(url) as r:  # no admin credential
                assert r.status == 401
            async with session.post(url, headers=server.admin) as r:
                assert r.status == 200
                ident = (await r.json())["recording"]
            await asyncio.sleep(3.0)
            async with session.delete(url, headers=server.admin) as r:
                assert r.status == 200 and (await r.json())["recording"] == ident
        done = await manifest(server, "plain", ident)
        assert done.endlist and all(t.segments for t in done.tracks)
    finally:
        await pub.close()


async def test_recordings_need_the_recordings_grant(tmp_path: Path) -> None:
    folder = tmp_path / "room-a" / "20261207T000000Z-abcdef"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"endlist": true}')
    settings = parse_settings(f"auth: {{secret: {SECRET}}}\nrecording: {{dir: '{tmp_path}'}}\n")
    async with running(create_app(settings)) as server:
        url = f"{server.url}/recordings/room-a/20261207T000000Z-abcdef/manifest.json"
        now = time.time()

        def token(grants: set[str], room: str = "room-a") -> str:
            return create_token(
                SECRET.encode(), room=room, identity="v", grants=grants, ttl=60, now=now
            )

        assert (await get(url))[0] == 401
        assert (await get(url, Authorization=f"Bearer {token({'subscribe'})}"))[0] == 401
        other = token({"recordings"}, room="room-b")
        assert (await get(url, Authorization=f"Bearer {other}"))[0] == 401
        status, headers, _ = await get(url, Authorization=f"Bearer {token({'recordings'})}")
        assert status == 200 and headers["cache-control"].startswith("private")
        assert (await get(f"{url}?token={token({'recordings'})}"))[0] == 200


async def test_an_address_that_asks_too_much_is_refused(tmp_path: Path) -> None:
    """Recordings take from the client address's request budget: beyond it, 429."""
    settings = parse_settings(
        f"recording: {{dir: '{tmp_path}'}}\n"
        "limits: {address_cost_per_second: 1, address_cost_burst: 10}\n"
    )
    async with running(create_app(settings)) as server:
        statuses = [(await get(f"{server.url}/recordings/room-a/"))[0] for _ in range(15)]
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        assert statuses.count(429) >= 4
