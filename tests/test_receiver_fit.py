"""The receiver-CPU fit end to end: a real server, a VP9 L3T3 publisher, and two subscribers
over real UDP on loopback that report what they render.  One cannot keep up with frames
above 320x180 (it drops half of them, and says so): it gets the base layer within a few
seconds, with reason ``cpu``, then the top layer again once it stops dropping.  The other
keeps the top layer throughout."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.captures import CAPTURES
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher, SimSubscriber
from loadtest.signaling import SignalingPeer
from sfu.config import load_settings
from sfu.signaling.server import create_app

#: a short window and hold, so that a step down and two steps up fit in a test
POLICY = """
rooms:
  default:
    dropped_frame_window: 2.0
    cpu_fit_hold: 3.0
"""


class Viewer(SimSubscriber):
    """Renders the top spatial layer it receives (a frame = a decodable frame of the highest
    spatial layer that arrived in the last half second) and reports, once a second, how
    many frames it rendered and how many it dropped.  While ``slow``, it drops every other
    frame larger than the base layer, as a machine that cannot decode them in time."""

    def __init__(self, ws_url: str, name: str) -> None:
        super().__init__(ws_url, name)
        self.slow = False
        self.frames_decoded = 0
        self.frames_dropped = 0
        self._counted = 0
        self._sid_at: dict[int, float] = {}
        self._odd = False
        self.reports = 0
        self._reporter: asyncio.Task[None] | None = None

    def on_rtp(self, data: bytes, now: float) -> None:
        super().on_rtp(data, now)
        layers = self.layers
        while self._counted < len(layers):
            at, sid, _ = layers[self._counted]
            self._counted += 1
            self._sid_at[sid] = at
            top = max(s for s, seen in self._sid_at.items() if at - seen < 0.5)
            if sid != top:
                continue  # a lower layer of a picture: decoded, not shown
            self.frames_decoded += 1
            if self.slow and sid > 0:
                self._odd = not self._odd
                if self._odd:
                    self.frames_dropped += 1

    def video_track(self) -> str | None:
        for message in self.messages:
            if message["type"] == "track_published" and message["track"]["kind"] == "video":
                return str(message["track"]["track_id"])
        return None

    def start_reports(self) -> None:
        async def report() -> None:
            while True:
                await asyncio.sleep(1.0)
                track = self.video_track()
                if track is None:
                    continue
                await self.send(
                    {
                        "type": "receiver_report",
                        "tracks": [
                            {
                                "track_id": track,
                                "frames_decoded": self.frames_decoded,
                                "frames_dropped": self.frames_dropped,
                            }
                        ],
                    }
                )
                self.reports += 1

        self._reporter = asyncio.ensure_future(report())

    def top_sid(self, seconds: float = 1.0) -> int:
        since = time.monotonic() - seconds
        return max((sid for at, sid, _ in self.layers if at >= since), default=-1)

    def reasons(self) -> list[Any]:
        return [m["reason"] for m in self.messages if m["type"] == "level_changed"]

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await super().close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    path = tmp_path / "sfu.yaml"
    path.write_text(POLICY)
    async with running(create_app(load_settings(path), str(path))) as running_server:
        yield running_server


def camel_case_keys(value: Any, path: str = "") -> Iterator[str]:
    """Keys of ``value`` (nested) that are not snake_case; room names are the operator's."""
    if isinstance(value, dict):
        for key, item in value.items():
            if path != ".rooms" and not re.fullmatch(r"[a-z0-9_]+", str(key)):
                yield f"{path}.{key}"
            yield from camel_case_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from camel_case_keys(item, path)


def cpu_cap(server: RunningServer, viewer: Viewer) -> tuple[int, int] | None:
    room = server.rooms.rooms["room"]
    participant = room.participants[viewer.participant_id]
    track = viewer.video_track()
    assert track is not None
    subscription = participant.subscription(track)
    assert subscription is not None
    return subscription.cpu


async def test_a_viewer_that_drops_frames_gets_lower_layers_then_recovers(
    server: RunningServer,
) -> None:
    publisher = ReplayPublisher(
        server.ws_url, "pub", read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    )
    slow, fast = Viewer(server.ws_url, "slow"), Viewer(server.ws_url, "fast")
    try:
        await publisher.connect("room")
        await slow.connect("room")
        await fast.connect("room")
        await publisher.publish()
        await wait_until(lambda: slow.top_sid() == 2 and fast.top_sid() == 2, 20, interval=0.2)
        slow.start_reports()
        fast.start_reports()

        slow.slow = True
        started = time.monotonic()
        # two steps (S2 -> S1 -> S0), each judged on its own 2 s window of reports
        await wait_until(lambda: cpu_cap(server, slow) == (0, 2), 15, interval=0.2)
        took = time.monotonic() - started
        assert "cpu" in slow.reasons()
        await wait_until(lambda: slow.top_sid() == 0, 5, interval=0.2)
        assert fast.top_sid() == 2 and cpu_cap(server, fast) is None
        assert took < 15, took

        # the drops stop: one rung up per hold (3 s), back to the top layer
        slow.slow = False
        await wait_until(lambda: cpu_cap(server, slow) is None, 25, interval=0.2)
        await wait_until(lambda: slow.top_sid() == 2, 10, interval=0.2)
        assert fast.top_sid() == 2 and "cpu" not in fast.reasons()
        assert slow.reports >= 5
        print(
            f"\ncpu fit: S2 -> S0 in {took:.1f} s, back to S2 {time.monotonic() - started:.1f} s in"
        )

        # what operators see of it
        async with aiohttp.ClientSession(headers=server.admin) as http:
            async with http.get(f"{server.url}/stats") as response:
                stats = await response.json()
            async with http.get(f"{server.url}/metrics") as response:
                text = await response.text()
        subscribed = {p["name"]: p["subscribed"] for p in stats["rooms"]["room"]["participants"]}
        # one naming style throughout /stats (docs/stats.md): snake_case keys
        assert not list(camel_case_keys(stats)), list(camel_case_keys(stats))
        viewer = next(t["viewer"] for t in subscribed["slow"] if t["viewer"] is not None)
        assert viewer["dropped_frames"] > 0 and viewer["decoded_frames"] > viewer["dropped_frames"]
        assert viewer["reports"] >= 5
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for metric in text_string_to_metric_families(text)
            for sample in metric.samples
        }
        decoded = sum(
            v for (name, _), v in samples.items() if name == "sfu_viewer_frames_decoded_total"
        )
        dropped = sum(
            v for (name, _), v in samples.items() if name == "sfu_viewer_frames_dropped_total"
        )
        cpu_switches = sum(
            v
            for (name, labels), v in samples.items()
            if name == "sfu_layer_switches_total" and ("reason", "cpu") in labels
        )
        assert decoded > dropped > 0 and cpu_switches >= 1, (decoded, dropped, cpu_switches)
    finally:
        await slow.close()
        await fast.close()
        await publisher.close()


async def test_hostile_reports_get_clear_errors_and_change_nothing(
    server: RunningServer,
) -> None:
    """Reports are bounded by the schema; a report on a track the viewer does not receive
    is passed over; lies about another viewer's track cannot reach it; the connection and
    the room go on."""
    publisher = ReplayPublisher(
        server.ws_url, "pub", read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap")
    )
    honest, liar = Viewer(server.ws_url, "honest"), SignalingPeer(server.ws_url, "liar")
    try:
        await publisher.connect("room")
        await honest.connect("room")
        await liar.connect("room")
        await publisher.publish()
        await wait_until(lambda: honest.top_sid() == 2, 20, interval=0.2)
        track = honest.video_track()
        assert track is not None
        ok = {"track_id": track, "frames_decoded": 0, "frames_dropped": 0}
        for tracks in (
            [ok] * 33,  # too many
            [{**ok, "frames_decoded": -1}],
            [{**ok, "frames_dropped": 2**60}],
            [{**ok, "switch_paints": [1.0] * 17}],
            [{**ok, "first_frame": "soon"}],
            [{**ok, "cpu": "mine"}],  # unknown field
        ):
            reply = await liar.request({"type": "receiver_report", "tracks": tracks}, timeout=5)
            assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        # a report speaks for the sender's own subscription of the track, never another
        # viewer's: the liar's claims of 100% drops (and of a track that does not exist)
        # leave the honest viewer's layers alone
        for n in range(1, 8):
            report = {**ok, "frames_decoded": 0, "frames_dropped": 30 * n}
            reply = await liar.request(
                {"type": "receiver_report", "tracks": [report, {**report, "track_id": "x"}]},
                timeout=5,
            )
            assert reply["type"] == "ok", reply
            await asyncio.sleep(0.6)
        assert cpu_cap(server, honest) is None and honest.top_sid() == 2
        assert (await liar.request({"type": "ping"}, timeout=5))["type"] == "pong"
    finally:
        await honest.close()
        await liar.close()
        await publisher.close()
