"""Active speakers, sans-IO: the dominant-speaker detector fed exact level sequences (a
cough does not flip it, a sustained speaker takes over after the minimum time, the hold
after a switch, silence and noise give nobody, hostile values break nothing), the levels a
source sums from its packets (a real Chromium Opus capture), the room's side (who is told
what, a muted track is silence) and the speaker's video first in a subscriber's allocation."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from support.captures import CAPTURES, VP9, forward, load
from support.forwarding import feed, make_source

from loadtest.capturefile import read_capture, stream_parameters
from sfu import protocol as m
from sfu.adapters.peers import PeerSettings, SubscriberPeer
from sfu.forwarding.audio_level import AudioLevels
from sfu.forwarding.source import MediaSource
from sfu.forwarding.subscription import Subscription
from sfu.forwarding.target import LayerCaps
from sfu.rooms import speakers as sp
from sfu.rooms.active_speakers import RoomSpeakers
from sfu.rooms.speakers import Speaker, SpeakerDetector, Speakers
from sfu.rtp.packet import parse_rtp

STEP = 0.2
Levels = dict[str, Callable[[float], float | None]]


def run(
    levels: Levels, until: float, detector: SpeakerDetector | None = None
) -> tuple[list[tuple[float, Speakers]], dict[float, str | None]]:
    """Evaluates every STEP from 0 to ``until``, each participant observed once per interval
    at the level its function gives for the interval's end (None: nothing heard).  Returns
    the reports with their times, and the dominant after each evaluation."""
    detector = detector or SpeakerDetector()
    detector.evaluate(0.0)
    reports: list[tuple[float, Speakers]] = []
    dominant: dict[float, str | None] = {}
    for k in range(1, round(until / STEP) + 1):
        t = round(k * STEP, 6)
        for participant, level in levels.items():
            value = level(t)
            if value is not None:
                detector.observe(participant, value)
        report = detector.evaluate(t)
        if report is not None:
            reports.append((t, report))
        dominant[t] = detector.dominant
    return reports, dominant


def constant(level: float | None) -> Callable[[float], float | None]:
    return lambda t: level


def during(start: float, end: float, level: int, otherwise: int = 127) -> Callable[[float], int]:
    """``level`` for the intervals ending in (start, end], ``otherwise`` else."""
    return lambda t: level if start < t <= end + 1e-9 else otherwise


def listed(report: Speakers) -> list[str]:
    return [s.participant for s in report.speakers]


# -- the detector ---------------------------------------------------------------------------


def test_silence_and_background_noise_give_no_speaker() -> None:
    reports, dominant = run(
        {
            "silent": constant(127),
            "hum": constant(55),  # -55 dBov: below the silence threshold
            "noise": constant(46),  # -46 dBov: 4 dB above it, all the time: not speech
            "absent": constant(None),  # no packet (DTX, or nothing sent)
        },
        30.0,
    )
    assert reports == []
    assert set(dominant.values()) == {None}


def test_a_sustained_speaker_is_listed_then_takes_over_after_the_minimum_time() -> None:
    reports, dominant = run({"ann": constant(20), "bob": constant(127)}, 5.0)
    # listed once its activity reaches 1/2 (4 intervals); dominant after leading 0.6 s more
    assert reports == [
        (0.8, Speakers(None, (Speaker("ann", -20),))),
        (1.4, Speakers("ann", (Speaker("ann", -20),))),
    ]
    assert dominant[1.2] is None and dominant[1.4] == "ann"


def test_a_cough_does_not_flip_the_dominant_speaker() -> None:
    # a lone cough, full scale, 300 ms (the intervals ending at 0.2 and 0.4): nobody
    assert run({"cougher": during(0.0, 0.3, 0)}, 10.0)[0] == []
    # while someone speaks: nothing changes
    reports, dominant = run({"ann": constant(30), "cougher": during(3.0, 3.4, 0)}, 10.0)
    assert [t for t, _ in reports] == [0.8, 1.4]
    assert set(list(dominant.values())[7:]) == {"ann"}
    # nor while the dominant speaker pauses (silent since 3 s, a cough at 5 s)
    reports, dominant = run({"ann": during(0.0, 3.0, 30), "cougher": during(5.0, 5.4, 0)}, 10.0)
    assert all("cougher" not in listed(r) for _, r in reports)
    assert dominant[10.0] == "ann"
    # two coughs in a row do not make a speaker either
    assert run({"c": lambda t: 0 if t <= 0.2 + 1e-9 or 0.4 < t <= 0.6 + 1e-9 else 127}, 5)[0] == []


def test_levels_that_swap_move_the_dominance_within_two_seconds() -> None:
    reports, dominant = run(
        {"ann": lambda t: 10 if t <= 5 else 30, "bob": lambda t: 30 if t <= 5 else 10}, 12.0
    )
    assert dominant[5.0] == "ann"
    (switch,) = [(t, r) for t, r in reports if r.dominant == "bob"]
    assert switch[0] == 7.0  # the levels swapped in the interval after 5.0: 2 s later
    assert listed(switch[1]) == ["bob", "ann"]
    assert [s.level for s in switch[1].speakers] == [-10, -30]


def test_a_new_speaker_waits_for_the_hold_after_a_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    # ann dominates at 1.4 s and stops; bob starts at full scale: he leads from 2.2 s,
    # long enough from 2.8 s, but the switch waits for the hold (1.4 + 2.0)
    levels: Levels = {"ann": during(0.0, 1.4, 10), "bob": during(1.4, 99.0, 0)}
    _, dominant = run(levels, 5.0)
    assert dominant[1.4] == "ann" and dominant[3.2] == "ann" and dominant[3.4] == "bob"
    monkeypatch.setattr(sp, "MIN_HOLD", 0.0)
    _, dominant = run(levels, 5.0)
    assert dominant[2.6] == "ann" and dominant[2.8] == "bob"


def test_reports_and_switches_are_rate_limited_whatever_the_levels() -> None:
    rng = random.Random(7)
    detector = SpeakerDetector()
    detector.evaluate(0.0)
    reported: list[float] = []
    switches: list[float] = []
    for k in range(1, 4000):  # every 50 ms, for 200 s: bursts of speech from four people
        t = round(k * 0.05, 6)
        for name in "abcd":
            detector.observe(name, rng.choice([5, 20, 35, 60, 127, 127]))
        before = detector.dominant
        if detector.evaluate(t) is not None:
            reported.append(t)
        if detector.dominant != before:
            switches.append(t)
    assert len(reported) > 10 and len(switches) > 2
    assert min(b - a for a, b in zip(reported, reported[1:], strict=False)) >= 0.5 - 1e-9
    assert min(b - a for a, b in zip(switches, switches[1:], strict=False)) >= 2.0 - 1e-9


def test_reordering_alone_is_no_change() -> None:
    reports, _ = run(
        {
            "ann": constant(10),
            "bob": lambda t: 30 if t <= 5 else 40,
            "cid": lambda t: 34 if t <= 5 else 24,
        },
        12.0,
    )
    assert [(t, listed(r)) for t, r in reports] == [
        (0.8, ["ann", "bob", "cid"]),
        (1.4, ["ann", "bob", "cid"]),
    ]


def test_a_dominant_speaker_that_leaves_is_reported_gone() -> None:
    detector = SpeakerDetector()
    run({"ann": constant(20)}, 3.0, detector)
    assert detector.dominant == "ann"
    detector.remove("ann")
    detector.remove("nobody")
    assert detector.evaluate(3.2) == Speakers(None, ())
    assert detector.evaluate(3.4) is None


def test_hostile_levels_and_clocks_break_nothing() -> None:
    # levels beyond 0..127: clamped (below 0 is full scale); what is no number is silence
    reports, dominant = run(
        {
            "loud": constant(-40),
            "beyond": constant(1000),
            "nan": constant(math.nan),
            "inf": constant(math.inf),
            "ninf": constant(-math.inf),
        },
        3.0,
    )
    assert dominant[3.0] == "loud"
    assert listed(reports[-1][1]) == ["loud"]
    assert reports[-1][1].speakers[0].level == 0
    # time that goes back, or is no number, stands still; a jump forward smooths as 1 s
    detector = SpeakerDetector()
    detector.evaluate(10.0)
    for now in (5.0, math.nan, math.inf, -math.inf, 10.0):
        detector.observe("ann", 0)
        assert detector.evaluate(now) is None
    detector.observe("ann", 0)
    detector.evaluate(1e12)  # one step of at most MAX_STEP: listed, not yet dominant
    assert detector.dominant is None and detector.speaking() == ["ann"]
    # a first evaluation at no number does not break the clock either
    fresh = SpeakerDetector()
    assert fresh.evaluate(math.nan) is None
    run({"ann": constant(10)}, 2.0, fresh)
    assert fresh.dominant == "ann"
    # at most max_participants are followed
    bounded = SpeakerDetector(max_participants=2)
    for name in ("a", "b", "c"):
        bounded.observe(name, 10)
    assert bounded.participants == ["a", "b"]


# -- the levels a source sums ------------------------------------------------------------------


def test_audio_levels_are_an_energy_mean_without_the_v_flag() -> None:
    levels = AudioLevels()
    assert levels.take() is None
    levels.add(0x80 | 20)  # V set
    levels.add(20)
    assert levels.take() == 20
    levels.add(0)
    levels.add(127)  # half the energy of full scale: -3 dBov
    assert levels.take() == 3
    assert levels.take() is None and levels.packets == 4


def test_a_source_sums_the_levels_of_a_chromium_opus_stream() -> None:
    """Chromium's fake microphone: a beep every 0.5 s, from -9 dBov fading out in ~0.35 s
    (each packet of the capture carries its level, the V flag set)."""
    capture = read_capture(CAPTURES / "opus.sfucap")
    params = stream_parameters(capture.info)
    source = MediaSource("pub:0", params, send_rtcp=lambda data: None, rtcp_ssrc=1)
    assert source.audio_levels is not None
    start = capture.packets[0][0]
    intervals: list[int | None] = []
    end = start + 0.1
    for at, packet in capture.packets:
        while at >= end:
            intervals.append(source.audio_levels.take())
            end += 0.1
        source.on_rtp(packet, parse_rtp(packet), at)
    # each beep's first 200 ms are loud, the next ones fade out
    assert intervals[:5] == [17, 16, 52, 73, 99]
    assert all(level is not None and level <= 17 for level in intervals[::5])
    assert min(level or 127 for level in intervals) == 13
    assert source.audio_levels.take() is not None  # the last interval's
    assert source.audio_levels.packets == len(capture.packets) == 250
    # what a muted track sends is not summed; video has no levels
    source.set_muted(True, 10.0)
    feed(source, 0, extensions=[(1, bytes([0]))])
    assert source.audio_levels.take() is None
    video, _ = make_source("video")
    assert video.audio_levels is None


# -- the room's side ---------------------------------------------------------------------------


class FakeSubscriber:
    def __init__(self) -> None:
        self.calls: list[tuple[frozenset[str], float]] = []

    def set_speaker(self, tracks: frozenset[str], now: float) -> None:
        self.calls.append((tracks, now))


def participant(pid: str, *sources: MediaSource, mirror: str | None = None) -> Any:
    sent: list[m.ServerMessage] = []

    async def send(message: m.ServerMessage) -> None:
        sent.append(message)

    return SimpleNamespace(
        id=pid,
        sources={s.track_id: s for s in sources},
        mirror_of=mirror,
        subscriber=FakeSubscriber(),
        context=f"participant {pid}",
        send=send,
        sent=sent,
    )


def speaking(sent: list[m.ServerMessage]) -> list[tuple[str | None, list[str]]]:
    return [
        (s.dominant, [i.participant_id for i in s.speakers])
        for s in sent
        if isinstance(s, m.ActiveSpeakers)
    ]


async def test_the_room_tells_everyone_of_a_change_and_a_latecomer_once() -> None:
    mic, _ = make_source("audio")
    camera, _ = make_source("video")
    camera.track_id = "ann:video"
    ann = participant("ann", mic, camera)
    bob = participant("bob")
    mirror = participant("mir", mirror="worker-2")
    room = SimpleNamespace(name="r", participants={"ann": ann, "bob": bob, "mir": mirror})
    speakers = RoomSpeakers(room)  # type: ignore[arg-type]
    seq = 0

    async def tick(t: float, level: int | None = 20) -> None:
        nonlocal seq
        for _ in range(10):  # 10 packets of 20 ms
            seq += 1
            if level is not None:
                feed(mic, seq, extensions=[(1, bytes([level]))])
        await speakers.tick(t)

    for k in range(11):  # 0.0 .. 2.0
        await tick(round(k * STEP, 6))
    assert speaking(bob.sent) == [(None, ["ann"]), ("ann", ["ann"])]
    assert speaking(ann.sent) == speaking(bob.sent)
    assert mirror.sent == []  # its own worker tells it
    # the dominant speaker's video goes first for every subscriber, from the switch on
    assert bob.subscriber.calls[-1] == (frozenset({"ann:video"}), 2.0)
    assert (frozenset(), 1.2) in bob.subscriber.calls
    # a latecomer gets the last report at the next tick, once
    cid = participant("cid")
    room.participants["cid"] = cid
    await tick(2.2)
    await tick(2.4)
    assert speaking(cid.sent) == [("ann", ["ann"])]
    # a muted track is silence: ann stops speaking, and stays dominant
    mic.set_muted(True, 2.4)
    for k in range(13, 30):
        await tick(round(k * STEP, 6))
    assert speaking(bob.sent)[-1] == ("ann", [])
    # she leaves: nobody dominates any more
    del room.participants["ann"]
    await tick(6.0)
    assert speaking(bob.sent)[-1] == (None, [])
    assert speakers.detector.participants == []
    assert bob.subscriber.calls[-1] == (frozenset(), 6.0)


# -- the speaker's video first -------------------------------------------------------------------


def camera_subscription(track_id: str) -> tuple[Subscription, float]:
    """A subscription of a real VP9 L3T3 camera, forwarded at its top level (S2T2)."""
    result = forward(load(VP9), {0: (2, 2)})
    result.source.track_id = track_id
    subscription = Subscription(result.source, LayerCaps())
    subscription.bind(result.downtrack, result.duration)
    return subscription, result.duration


async def test_the_speakers_camera_gets_the_higher_layer_when_bandwidth_is_short() -> None:
    # 1.45 Mbit/s for two equal cameras (S2T2 alone costs 1.5): one can have S2T1 (925k),
    # the other what is left (S1T1, 310k).  (One ``now`` throughout: the levels are measured
    # over the last seconds of the capture, and would fade as time goes on.)
    settings = PeerSettings(subscriber_max_bitrate=1_450_000)
    subscriber = SubscriberPeer(lambda sdp: asyncio.sleep(0), settings)
    try:
        ann, now = camera_subscription("ann:video")
        bob, _ = camera_subscription("bob:video")
        subscriber.subscriptions = {"ann:video": ann, "bob:video": bob}

        def levels() -> dict[str, tuple[int, int]]:
            out = {}
            for key, subscription in subscriber.subscriptions.items():
                allocation = subscription.bandwidth
                assert allocation is not None and not allocation.paused
                out[key] = (allocation.spatial, allocation.temporal)
            return out

        subscriber.set_speaker(frozenset({"bob:video"}), now)
        assert levels() == {"bob:video": (2, 1), "ann:video": (1, 1)}
        subscriber.allocate(now)  # the next tick: the same
        assert levels() == {"bob:video": (2, 1), "ann:video": (1, 1)}
        # the speaker changes: the allocation follows at once, and holds nobody back
        subscriber.set_speaker(frozenset({"ann:video"}), now)
        assert levels() == {"ann:video": (2, 1), "bob:video": (1, 1)}
        assert bob.bandwidth_down_at == -math.inf and bob.up_hold == Subscription.MIN_UP_HOLD
        subscriber.set_speaker(frozenset({"bob:video"}), now)  # and back, at once
        assert levels() == {"bob:video": (2, 1), "ann:video": (1, 1)}
        assert ann.up_hold == Subscription.MIN_UP_HOLD  # no doubled hold either
        # nobody speaks: equal cameras, in the order they came
        subscriber.set_speaker(frozenset(), now)
        assert levels()["ann:video"] >= levels()["bob:video"]
    finally:
        await subscriber.close()
