"""Active speakers end to end: aiortc publishers over real UDP on loopback send Opus tones
of known loudness (aiortc's sender writes the RFC 6464 level of each frame it encodes); the
room names the loudest as the dominant speaker, follows a swap of the levels within a few
seconds, takes a muted track for silence, and tells a latecomer at once."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy
import pytest
from aiortc import AudioStreamTrack
from av import AudioFrame
from support.clients import SignalingClient
from support.serving import RunningServer

from sfu.rtp import extensions as ext

ROOM = "speakers"


class ToneTrack(AudioStreamTrack):
    """A 440 Hz sine whose RFC 6465 level is ``dbov`` (a sine of amplitude A has an RMS of
    A / sqrt 2); None: silence.  ``dbov`` may change while it plays."""

    def __init__(self, dbov: float | None) -> None:
        super().__init__()
        self.dbov = dbov

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        if self.dbov is None:
            return frame
        amplitude = math.sqrt(2) * 10 ** (self.dbov / 20) * 32767
        n = numpy.arange(frame.pts, frame.pts + frame.samples)
        wave = amplitude * numpy.sin(2 * math.pi * 440 * n / frame.sample_rate)
        tone = AudioFrame.from_ndarray(
            wave.astype(numpy.int16).reshape(1, -1), format="s16", layout="mono"
        )
        tone.pts, tone.sample_rate, tone.time_base = frame.pts, frame.sample_rate, frame.time_base
        return tone


class Listener(SignalingClient):
    """Keeps when each ``active_speakers`` arrived."""

    def __init__(self, ws_url: str, name: str) -> None:
        super().__init__(ws_url, name)
        self.heard: list[tuple[float, dict[str, Any]]] = []

    async def on_message(self, data: dict[str, Any]) -> None:
        if data["type"] == "active_speakers":
            self.heard.append((time.monotonic(), data))
        await super().on_message(data)


async def expect(viewer: Listener, predicate: Any, timeout: float) -> dict[str, Any]:
    """The first message ``predicate`` accepts; failing, says what was heard."""
    try:
        return await viewer.wait_for(predicate, timeout)
    except TimeoutError:
        raise AssertionError(f"not heard in {timeout} s; heard: {viewer.heard}") from None


def speakers(message: dict[str, Any]) -> list[str]:
    return [s["participant_id"] for s in message["speakers"]]


def dominant_is(client: SignalingClient, listed: int | None = None) -> Any:
    def check(message: dict[str, Any]) -> bool:
        return (
            message["type"] == "active_speakers"
            and message["dominant"] == client.participant_id
            and (listed is None or len(message["speakers"]) == listed)
        )

    return check


@pytest.mark.timeout(90)
async def test_the_loudest_publisher_dominates_and_a_swap_follows(server: RunningServer) -> None:
    tones = {"loud": ToneTrack(-10), "quiet": ToneTrack(-30), "silent": ToneTrack(None)}
    clients = {name: SignalingClient(server.ws_url, name) for name in tones}
    loud, quiet, silent = clients["loud"], clients["quiet"], clients["silent"]
    viewer = Listener(server.ws_url, "viewer")
    late = SignalingClient(server.ws_url, "late")
    try:
        await viewer.connect(ROOM)
        for name, client in clients.items():
            await client.connect(ROOM)
            await client.publish(video=False, audio_track=tones[name])

        first = await expect(viewer, dominant_is(loud, listed=2), 30)
        assert speakers(first) == [loud.participant_id, quiet.participant_id]
        levels = [s["level"] for s in first["speakers"]]
        assert abs(levels[0] + 10) <= 2 and abs(levels[1] + 30) <= 2, levels
        # the level came in the negotiated header extension of the publisher's Opus stream
        room = server.rooms.rooms[ROOM]
        for client in clients.values():
            (source,) = room.participants[str(client.participant_id)].sources.values()
            assert ext.AUDIO_LEVEL in source.params.extensions
            assert source.audio_levels is not None and source.audio_levels.packets > 50

        tones["loud"].dbov, tones["quiet"].dbov = -30, -10
        swapped = time.monotonic()
        second = await expect(viewer, dominant_is(quiet), 10)
        heard_at = next(at for at, m in viewer.heard if m is second)
        assert heard_at - swapped < 5, viewer.heard
        assert speakers(second)[0] == quiet.participant_id
        # the publishers hear it too; a latecomer is told at once
        await loud.wait_for(dominant_is(quiet), 5)
        await late.connect(ROOM)
        told = await late.wait_for(lambda m: m["type"] == "active_speakers", 5)
        assert told["dominant"] == quiet.participant_id

        # a muted track is silence: the other one takes over
        track = next(
            m["track"]["track_id"]
            for m in viewer.messages
            if m["type"] == "track_published"
            and m["track"]["participant_id"] == quiet.participant_id
        )
        reply = await quiet.request({"type": "mute", "track_id": track, "muted": True}, 5)
        assert reply["type"] == "ok"
        third = await expect(viewer, dominant_is(loud, listed=1), 10)
        assert speakers(third) == [loud.participant_id]

        reports = [m for m in viewer.messages if m["type"] == "active_speakers"]
        assert all(silent.participant_id not in speakers(m) for m in reports)
        assert len(reports) <= 12, reports  # on change only
    finally:
        for client in (*clients.values(), viewer, late):
            await client.close()
