"""Logs for operators: `sfu serve --log-level/--log-format`, aioice's and aiortc's chatter
quieted, the JSON lines' structured fields, and one INFO line per join, leave (with its
reason), track and room, seen through real rooms."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import SignalingClient
from support.serving import running
from support.waiting import wait_until

from loadtest.signaling import SignalingPeer
from sfu.auth.tokens import create_token
from sfu.cli import build_parser, serve_settings
from sfu.config import AuthSettings, Settings
from sfu.events.logs import CHATTY_LOGGERS, JsonFormatter, log_event, setup_logging
from sfu.events.model import ParticipantRef, RoomEvent, TrackRef
from sfu.rooms.participant import Participant
from sfu.rooms.room import RoomManager
from sfu.signaling.server import create_app

EVENTS = "sfu.events"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging replaces the root's handlers and sets the chatty loggers' levels."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == EVENTS and r.getMessage().startswith(start)]


def test_serve_flags_override_the_log_settings(tmp_path: Path) -> None:
    config = tmp_path / "sfu.yaml"
    config.write_text("log: {level: WARNING, format: text}\n")
    parser = build_parser()
    settings = serve_settings(parser.parse_args(["serve", "--config", str(config)]))
    assert settings is not None and settings.log.level == "WARNING"
    assert logging.getLogger().level == logging.WARNING
    assert all(logging.getLogger(n).level == logging.WARNING for n in CHATTY_LOGGERS)
    assert not isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)

    args = parser.parse_args(
        ["serve", "--config", str(config), "--log-level", "debug", "--log-format", "json"]
    )
    settings = serve_settings(args)
    assert settings is not None
    assert (settings.log.level, settings.log.format) == ("DEBUG", "json")
    assert logging.getLogger().level == logging.DEBUG
    # at DEBUG, aioice and aiortc say everything (they follow the root)
    assert all(logging.getLogger(n).level == logging.NOTSET for n in CHATTY_LOGGERS)
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)

    settings = serve_settings(parser.parse_args(["serve", "--log-level", "INFO"]))
    assert settings is not None and logging.getLogger().level == logging.INFO
    # per-candidate INFO lines off: aioice's and aiortc's loggers at WARNING
    for name in CHATTY_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
        assert logging.getLogger(f"{name}.ice").isEnabledFor(logging.WARNING)
    settings = serve_settings(parser.parse_args(["serve", "--log-level", "ERROR"]))
    assert not logging.getLogger("aioice").isEnabledFor(logging.WARNING)

    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--log-level", "LOUD"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--log-format", "xml"])


def test_json_lines_carry_the_structured_fields() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    event = RoomEvent(
        "participant_left",
        "demo",
        ParticipantRef("p1", "ann", identity="ann", role="presenter"),
        reason="peer_timeout",
    )
    log_event(event)
    logging.getLogger("sfu.test").info("plain %d", 42)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "INFO" and first["logger"] == EVENTS
    assert first["time"].endswith("Z")
    assert "peer_timeout" in first["message"]
    assert first["event"] == "participant_left"
    assert (first["room"], first["participant_id"], first["participant_name"]) == (
        "demo",
        "p1",
        "ann",
    )
    assert (first["identity"], first["role"], first["reason"]) == (
        "ann",
        "presenter",
        "peer_timeout",
    )
    assert second == {
        "time": second["time"],
        "level": "INFO",
        "logger": "sfu.test",
        "message": "plain 42",
    }


def test_a_mirrored_participant_is_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS)
    mirror = ParticipantRef("p2", "bob", mirror_of="node:1:99")
    log_event(RoomEvent("participant_joined", "demo", mirror))
    log_event(RoomEvent("track_published", "demo", mirror, TrackRef("p2:0", "audio", "opus")))
    assert not caplog.records
    caplog.set_level(logging.DEBUG, logger=EVENTS)
    log_event(RoomEvent("participant_joined", "demo", mirror))
    assert caplog.records[0].levelno == logging.DEBUG
    assert "mirror of node:1:99" in caplog.records[0].getMessage()


async def test_join_and_leave_through_a_real_room_are_logged_with_their_reasons(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS)
    async with running(create_app(Settings())) as server:
        ann, bob = SignalingPeer(server.ws_url, "ann"), SignalingPeer(server.ws_url, "bob")
        try:
            await ann.connect("logs", role="presenter")
            await bob.connect("logs")
            await ann.request({"type": "leave"})  # a leave message: "left"
            assert bob.ws is not None
            await bob.ws.close()  # the WebSocket closes: "disconnected"
            await wait_until(lambda: not server.rooms.rooms, timeout=10, interval=0.05)
        finally:
            await ann.close()
            await bob.close()
    joined = lines(caplog, "participant joined")
    assert [r.participant_name for r in joined] == ["ann", "bob"]
    first = joined[0]
    assert first.levelno == logging.INFO
    assert (first.room, first.participant_id, first.role) == (
        "logs",
        ann.participant_id,
        "presenter",
    )
    assert f"participant {ann.participant_id} name 'ann' identity None role presenter" in (
        first.getMessage()
    )
    left = {r.participant_id: r for r in lines(caplog, "participant left")}
    assert left[ann.participant_id].reason == "left"
    assert left[bob.participant_id].reason == "disconnected"
    assert "reason disconnected" in left[bob.participant_id].getMessage()
    assert [r.getMessage() for r in lines(caplog, "room ")] == [
        "room created: 'logs'",
        "room removed: 'logs'",
    ]


async def test_the_same_identity_joining_again_logs_duplicate_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS)
    secret = "s" * 40
    settings = Settings(auth=AuthSettings(secret=secret))
    token = create_token(
        secret.encode(),
        room="dup",
        identity="ann",
        grants={"publish", "subscribe"},
        ttl=60,
        now=time.time(),
    )
    async with running(create_app(settings, environ={})) as server:
        first, second = SignalingPeer(server.ws_url, "ann"), SignalingPeer(server.ws_url, "ann")
        first.token = second.token = token
        try:
            await first.connect("dup")
            await second.connect("dup")
            bye = await first.wait_for(lambda d: d["type"] == "bye", timeout=5)
            assert bye["code"] == "duplicate_identity"
        finally:
            await first.close()
            await second.close()
            await wait_until(lambda: not server.rooms.rooms, timeout=10, interval=0.05)
    left = lines(caplog, "participant left")
    assert left[0].participant_id == first.participant_id
    assert left[0].reason == "duplicate_identity"
    assert left[0].identity == "ann"
    assert "identity 'ann'" in lines(caplog, "participant joined")[0].getMessage()


async def test_a_dead_peer_and_a_shutdown_are_the_reasons(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS)
    sent: list[Any] = []

    async def outbox(message: Any) -> None:
        sent.append(message)

    rooms = RoomManager()
    gone, staying = Participant("gone", outbox), Participant("staying", outbox)
    await rooms.join("r", gone)
    await rooms.join("r", staying)
    gone.remove("peer_timeout", "nothing received for 5.0 s")  # what a silent peer does
    await wait_until(lambda: gone.room is None, timeout=5, interval=0.01)
    await rooms.close()  # the server stops
    await asyncio.sleep(0)
    reasons = {r.participant_name: r.reason for r in lines(caplog, "participant left")}
    assert reasons == {"gone": "peer_timeout", "staying": "shutdown"}
    assert lines(caplog, "room removed")


async def test_published_and_unpublished_tracks_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS)
    async with running(create_app(Settings())) as server:
        ann = SignalingClient(server.ws_url, "ann")
        try:
            await ann.connect("tracks")
            await ann.publish()
            await wait_until(lambda: len(lines(caplog, "track published")) == 2, timeout=10)
            await ann.leave()
            await wait_until(lambda: not server.rooms.rooms, timeout=10, interval=0.05)
        finally:
            await ann.close()
    published = lines(caplog, "track published")
    assert {r.track_kind for r in published} == {"audio", "video"}
    video = next(r for r in published if r.track_kind == "video")
    assert video.codec == "VP8" and video.participant_id == ann.participant_id
    assert "codec VP8" in video.getMessage()
    unpublished = lines(caplog, "track unpublished")
    assert {r.track_id for r in unpublished} == {r.track_id for r in published}
    # the tracks go before their participant
    messages = [r.getMessage() for r in caplog.records if r.name == EVENTS]
    assert max(i for i, m in enumerate(messages) if m.startswith("track unpublished")) < next(
        i for i, m in enumerate(messages) if m.startswith("participant left")
    )
