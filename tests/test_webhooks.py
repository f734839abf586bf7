"""Webhooks: bodies and Standard Webhooks signatures, the queue's drops and retries (sans-IO,
fed a clock), and the delivery to a real local HTTP receiver: signed and in order, through a
receiver that is down, answers 500, or never answers; and from the real server's rooms."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from support.serving import running
from support.waiting import wait_until

from loadtest.server import free_port
from loadtest.signaling import SignalingPeer
from sfu.config import ConfigError, Settings, WebhookSettings, parse_settings, webhook_key
from sfu.events.model import ParticipantRef, RoomEvent, TrackRef
from sfu.events.webhooks import (
    MAX_RETRY_DELAY,
    Outcome,
    WebhookQueue,
    WebhookVerificationError,
    headers,
    load_key,
    sign,
    verify,
)
from sfu.signaling.server import create_app
from sfu.signaling.webhooks import WEBHOOKS_KEY, WebhookSender

SECRET = "webhook-secret-for-the-tests-0123456789"
ANN = ParticipantRef("p1", "ann", identity="ann", role="presenter")


def joined(room: str = "demo", participant: ParticipantRef = ANN) -> RoomEvent:
    return RoomEvent("participant_joined", room, participant)


# -- sans-IO: bodies, signatures ---------------------------------------------------------------


def test_the_standard_webhooks_test_vector() -> None:
    """The signature scheme's published vector: any Standard Webhooks library verifies us."""
    key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signed_headers_verify_and_anything_changed_does_not() -> None:
    queue = WebhookQueue(jitter=lambda: 1.0)
    delivery = queue.put(RoomEvent("participant_left", "demo", ANN, reason="peer_timeout"), 1e9)
    assert delivery is not None
    sent = headers(SECRET.encode(), delivery.id, delivery.body, now=1e9 + 1)
    assert sent["webhook-id"] == delivery.id and sent["webhook-timestamp"] == "1000000001"
    event = verify(SECRET, sent, delivery.body, now=1e9 + 30)
    assert event == {
        "id": delivery.id,
        "event": "participant_left",
        "time": 1e9,
        "room": "demo",
        "worker": None,
        "participant": {"id": "p1", "name": "ann", "identity": "ann", "role": "presenter"},
        "reason": "peer_timeout",
    }
    # header names are case-insensitive; a list of signatures may hold one that matches
    upper = {k.upper(): v for k, v in sent.items()}
    upper["WEBHOOK-SIGNATURE"] = "v1,bm9wZQ== " + sent["webhook-signature"]
    assert verify(SECRET.encode(), upper, delivery.body, now=1e9)["id"] == delivery.id
    failures = [
        (SECRET, sent, delivery.body.replace(b"peer_timeout", b"left"), 1e9),  # tampered
        ("another-secret-of-at-least-32-characters", sent, delivery.body, 1e9),
        (SECRET, sent, delivery.body, 1e9 + 3600),  # replayed an hour later
        (SECRET, {k: v for k, v in sent.items() if k != "webhook-id"}, delivery.body, 1e9),
        (SECRET, dict(sent, **{"webhook-timestamp": "soon"}), delivery.body, 1e9),
    ]
    for secret, got, body, now in failures:
        with pytest.raises(WebhookVerificationError):
            verify(secret, got, body, now)


def test_bodies_of_every_event() -> None:
    queue = WebhookQueue(worker="node:0:42")
    track = TrackRef("p1:0", "video", "VP9", "screen")
    bodies = {}
    for event in (
        RoomEvent("room_started", "demo"),
        joined(),
        RoomEvent("track_published", "demo", ANN, track),
        RoomEvent("track_unpublished", "demo", ANN, track),
        RoomEvent("participant_left", "demo", ANN, reason="left"),
        RoomEvent("room_finished", "demo"),
    ):
        delivery = queue.put(event, 1700000000.5)
        assert delivery is not None
        bodies[event.name] = json.loads(delivery.body)
    assert len({b["id"] for b in bodies.values()}) == 6
    assert all(b["id"].startswith("evt_") and "." not in b["id"] for b in bodies.values())
    assert set(bodies["room_started"]) == {"id", "event", "time", "room", "worker"}
    assert bodies["room_started"]["worker"] == "node:0:42"
    assert bodies["track_published"]["track"] == {
        "id": "p1:0",
        "kind": "video",
        "codec": "VP9",
        "source": "screen",
    }
    assert bodies["track_unpublished"]["participant"]["id"] == "p1"
    assert "reason" not in bodies["participant_joined"]
    assert bodies["participant_left"]["reason"] == "left"


def test_only_the_chosen_events_and_no_mirrored_participant() -> None:
    queue = WebhookQueue(events=["participant_joined"])
    assert queue.put(RoomEvent("room_started", "demo"), 0.0) is None
    mirror = ParticipantRef("p2", "bob", mirror_of="node:1:7")
    assert queue.put(joined(participant=mirror), 0.0) is None  # the other worker reports it
    assert queue.put(joined(), 0.0) is not None
    assert queue.counts["filtered"] == 2 and len(queue) == 1


# -- sans-IO: the queue --------------------------------------------------------------------------


def test_a_full_queue_drops_the_oldest() -> None:
    queue = WebhookQueue(max_queue=3)
    ids = [queue.put(joined(f"room{i}"), float(i)) for i in range(5)]
    assert queue.counts["dropped"] == 2 and len(queue) == 3
    taken = [queue.take(0.0) for _ in range(3)]
    assert [d.id for d in taken if d] == [d.id for d in ids[2:] if d]
    assert queue.take(0.0) is None and queue.wait(0.0) is None


def test_retries_back_off_exponentially_until_max_attempts() -> None:
    queue = WebhookQueue(max_attempts=4, retry_delay=1.0, jitter=lambda: 1.0)
    first = queue.put(joined("a"), 0.0)
    second = queue.put(joined("b"), 0.0)
    now = 0.0
    waits = []
    for status in (None, 503, 429):  # connection refused, 5xx, rate limited: retried
        delivery = queue.take(now)
        assert delivery is first
        assert queue.settle(delivery, status, now) is Outcome.RETRY
        wait = queue.wait(now)
        assert wait is not None
        waits.append(wait)
        assert queue.take(now + wait - 0.01) is None  # not before it is due
        now += wait
    assert waits == [1.0, 2.0, 4.0]
    delivery = queue.take(now)
    assert delivery is first and delivery.attempts == 4
    assert queue.settle(delivery, 500, now) is Outcome.FAILED
    # the next one goes at once, and a receiver's refusal is not retried
    delivery = queue.take(now)
    assert delivery is second
    assert queue.settle(delivery, 400, now) is Outcome.REJECTED
    assert queue.counts == dict(
        queued=2, delivered=0, dropped=0, failed=1, rejected=1, filtered=0, attempts=5
    )


def test_retry_after_and_the_longest_wait() -> None:
    queue = WebhookQueue(max_attempts=100, retry_delay=10.0, jitter=lambda: 1.0)
    queue.put(joined(), 0.0)
    delivery = queue.take(0.0)
    assert delivery is not None
    queue.settle(delivery, 503, 0.0, retry_after=30.0)
    assert queue.wait(0.0) == 30.0
    for _ in range(10):
        delivery = queue.take(1e9)
        assert delivery is not None
        queue.settle(delivery, None, 0.0)
    assert queue.wait(0.0) == MAX_RETRY_DELAY
    delivery = queue.take(1e9)
    assert delivery is not None
    assert queue.settle(delivery, 204, 0.0) is Outcome.DELIVERED


def test_a_retry_into_a_queue_filled_meanwhile_is_dropped() -> None:
    queue = WebhookQueue(max_queue=2)
    queue.put(joined("a"), 0.0)
    delivery = queue.take(0.0)
    queue.put(joined("b"), 0.0)
    queue.put(joined("c"), 0.0)
    assert delivery is not None
    assert queue.settle(delivery, None, 0.0) is Outcome.DROPPED
    assert queue.counts["dropped"] == 1 and len(queue) == 2


# -- settings ------------------------------------------------------------------------------------


def test_settings_are_validated_with_clear_errors(tmp_path: Path) -> None:
    def problems(text: str) -> str:
        with pytest.raises(ConfigError) as info:
            parse_settings(text, "sfu.yaml")
        return str(info.value)

    assert Settings().webhooks.url is None  # off by default
    assert "webhooks.url: must be an http:// or https:// URL" in problems(
        f"webhooks: {{url: 'ftp://x', secret: {SECRET}}}"
    )
    assert "webhooks.secret: webhooks.url is set" in problems("webhooks: {url: 'http://x'}")
    assert "webhooks.secret: at least 32 characters, got 5" in problems(
        "webhooks: {url: 'http://x', secret: short}"
    )
    assert "webhooks.secret_file: give secret or secret_file, not both" in problems(
        f"webhooks: {{url: 'http://x', secret: {SECRET}, secret_file: /x}}"
    )
    assert "webhooks.max_queue" in problems("webhooks: {max_queue: 0}")
    assert "webhooks.events.0: must be one of" in problems("webhooks: {events: [joined]}")
    settings = parse_settings(
        f"webhooks: {{url: 'https://hooks.example.com/sfu', secret: {SECRET}, "
        "events: [participant_joined, participant_left]}",
    )
    assert settings.webhooks.events == ["participant_joined", "participant_left"]
    assert load_key(settings.webhooks) == SECRET.encode()
    # a secret file, read at start
    path = tmp_path / "hook-secret"
    path.write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    from_file = WebhookSettings(url="http://127.0.0.1/", secret_file=str(path))
    assert load_key(from_file) == webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    path.write_text("too short\n")
    with pytest.raises(ConfigError, match="webhooks.secret_file: at least 32"):
        load_key(from_file)
    with pytest.raises(ConfigError, match="cannot read"):
        load_key(WebhookSettings(url="http://127.0.0.1/", secret_file=str(tmp_path / "none")))
    with pytest.raises(ConfigError, match="webhooks.secret_file"):  # at start: create_app
        create_app(Settings(webhooks=from_file))


# -- delivery to a real receiver -----------------------------------------------------------------


class Receiver:
    """A local HTTP receiver: answers with ``statuses`` in turn (then 200), or never
    (``hang``) until released."""

    def __init__(self, statuses: list[int] | None = None, hang: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.hang = hang
        self.release = asyncio.Event()
        #: every request: (headers, raw body)
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def events(self) -> list[dict[str, Any]]:
        """The verified events received (each once, by id)."""
        out: dict[str, dict[str, Any]] = {}
        for got, body in self.requests:
            event = verify(SECRET, got, body, time.time())
            out.setdefault(event["id"], event)
        return list(out.values())

    @asynccontextmanager
    async def serving(self, port: int = 0) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        host, bound = runner.addresses[0][:2]
        try:
            yield f"http://{host}:{bound}/hooks"
        finally:
            self.release.set()
            await runner.cleanup()


def sender_for(url: str, **changes: Any) -> WebhookSender:
    settings = WebhookSettings(url=url, secret=SECRET, retry_delay=0.05, **changes)
    return WebhookSender(settings, load_key(settings))


async def test_events_arrive_signed_verifiable_and_in_order() -> None:
    receiver = Receiver()
    async with receiver.serving() as url:
        sender = sender_for(url)
        await sender.start()
        try:
            for i in range(20):
                sender.on_room_event(joined(participant=ParticipantRef(f"p{i}", f"n{i}")))
            await wait_until(lambda: len(receiver.requests) == 20, timeout=10, interval=0.02)
        finally:
            await sender.stop()
    events = receiver.events()
    assert [e["participant"]["id"] for e in events] == [f"p{i}" for i in range(20)]
    first_headers = receiver.requests[0][0]
    assert first_headers["Content-Type"] == "application/json"
    assert first_headers["webhook-signature"].startswith("v1,")
    assert abs(int(first_headers["webhook-timestamp"]) - time.time()) < 5
    assert sender.queue.counts["delivered"] == 20 and sender.queue.counts["attempts"] == 20


async def test_a_receiver_that_is_down_gets_the_event_once_it_is_up() -> None:
    port = free_port()
    sender = sender_for(f"http://127.0.0.1:{port}/hooks", max_attempts=50)
    await sender.start()
    receiver = Receiver()
    try:
        sender.on_room_event(joined())
        sender.on_room_event(RoomEvent("participant_left", "demo", ANN, reason="left"))
        await wait_until(lambda: sender.queue.counts["attempts"] >= 3, timeout=10, interval=0.02)
        assert not sender.queue.counts["delivered"]
        async with receiver.serving(port):
            await wait_until(
                lambda: sender.queue.counts["delivered"] == 2, timeout=10, interval=0.02
            )
    finally:
        await sender.stop()
    assert [e["event"] for e in receiver.events()] == ["participant_joined", "participant_left"]


async def test_a_500_is_retried_with_the_same_id() -> None:
    receiver = Receiver(statuses=[500, 503])
    async with receiver.serving() as url:
        sender = sender_for(url)
        await sender.start()
        try:
            sender.on_room_event(joined())
            await wait_until(lambda: sender.queue.counts["delivered"] == 1, timeout=10)
        finally:
            await sender.stop()
    assert len(receiver.requests) == 3
    assert len({got["webhook-id"] for got, _ in receiver.requests}) == 1
    assert len(receiver.events()) == 1


async def test_a_full_queue_delivers_the_newest() -> None:
    receiver = Receiver()
    async with receiver.serving() as url:
        sender = sender_for(url, max_queue=3)
        for i in range(5):  # queued before the sender runs
            sender.on_room_event(joined(f"room{i}"))
        assert sender.queue.counts["dropped"] == 2
        await sender.start()
        try:
            await wait_until(lambda: sender.queue.counts["delivered"] == 3, timeout=10)
        finally:
            await sender.stop()
    assert [e["room"] for e in receiver.events()] == ["room2", "room3", "room4"]


async def test_a_receiver_that_never_answers_times_out_and_stops_nothing() -> None:
    receiver = Receiver(hang=True)
    async with receiver.serving() as url:
        settings = Settings(
            webhooks=WebhookSettings(url=url, secret=SECRET, timeout=0.5, retry_delay=0.05)
        )
        app = create_app(settings)
        started = time.monotonic()
        async with running(app) as server:
            sender = app[WEBHOOKS_KEY]
            ann = SignalingPeer(server.ws_url, "ann")
            bob = SignalingPeer(server.ws_url, "bob")
            try:
                await ann.connect("hang")
                await wait_until(lambda: len(receiver.requests) == 1, timeout=5, interval=0.01)
                # the POST hangs: signaling goes on, at its pace
                t0 = time.monotonic()
                await bob.connect("hang")
                await bob.request({"type": "ping"})
                assert time.monotonic() - t0 < 1.0
                assert len(sender.queue) >= 2  # room_started's POST hangs, the rest wait
                # the timeout applies: the same event is tried again
                await wait_until(lambda: len(receiver.requests) >= 2, timeout=5, interval=0.02)
                ids = {got["webhook-id"] for got, _ in receiver.requests}
                assert len(ids) == 1
            finally:
                await ann.close()
                await bob.close()
        # the shutdown is bounded whatever the receiver does
        assert time.monotonic() - started < 12
    assert sender.queue.counts["delivered"] == 0


async def test_a_join_and_leave_in_the_real_server_arrive_as_webhooks() -> None:
    receiver = Receiver()
    async with receiver.serving() as url:
        settings = Settings(webhooks=WebhookSettings(url=url, secret=SECRET))
        async with running(create_app(settings)) as server:
            ann = SignalingPeer(server.ws_url, "ann")
            bob = SignalingPeer(server.ws_url, "bob")
            try:
                await ann.connect("hooked", role="presenter")
                await wait_until(lambda: len(receiver.requests) == 2, timeout=10, interval=0.02)
                first, second = receiver.events()
                assert (first["event"], first["room"]) == ("room_started", "hooked")
                assert second["event"] == "participant_joined"
                assert second["participant"] == {
                    "id": ann.participant_id,
                    "name": "ann",
                    "identity": None,
                    "role": "presenter",
                }
                await ann.request({"type": "leave"})
                await bob.connect("hooked")
                await wait_until(lambda: len(receiver.requests) == 5, timeout=10, interval=0.02)
                # the operators' view of the deliveries
                async with (
                    aiohttp.ClientSession(headers=server.admin) as http,
                    http.get(f"{server.url}/metrics") as response,
                ):
                    text = await response.text()
                outcomes = {
                    sample.labels["outcome"]: sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "sfu_webhook_events_total"
                }
                assert outcomes["delivered"] >= 4 and outcomes["dropped"] == 0, outcomes
            finally:
                await ann.close()
        await bob.close()
        # the server stopped with bob still in: his leave and the room's end are delivered
        await wait_until(lambda: len(receiver.requests) == 8, timeout=5, interval=0.02)
    events = receiver.events()
    assert [(e["event"], e.get("reason")) for e in events] == [
        ("room_started", None),
        ("participant_joined", None),
        ("participant_left", "left"),
        ("room_finished", None),
        ("room_started", None),
        ("participant_joined", None),
        ("participant_left", "shutdown"),
        ("room_finished", None),
    ]
    assert events[6]["participant"]["id"] == bob.participant_id
    assert all(e["worker"] is None and e["room"] == "hooked" for e in events)
    times = [e["time"] for e in events]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60
