"""Webhooks, sans-IO: an event's JSON body, its signature, and the queue of deliveries with
its retry policy, fed a clock.  The adapter that POSTs is ``sfu/signaling/webhooks.py``.

Signatures follow Standard Webhooks 1.0 (https://www.standardwebhooks.com/): headers
``webhook-id`` (the event's id: the same on every attempt, an idempotency key),
``webhook-timestamp`` (UNIX seconds of the attempt) and ``webhook-signature``: ``v1,`` and
the base64 HMAC-SHA256, keyed with the secret, of ``{id}.{timestamp}.{body}``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import random
import secrets
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import ConfigError, EventName, WebhookSettings, webhook_key
from .model import RoomEvent

USER_AGENT = "sfu-webhooks/1"
#: the longest wait between two attempts (seconds)
MAX_RETRY_DELAY = 60.0
#: how far a receiver should accept a signature's timestamp from its clock (seconds)
TOLERANCE = 300.0


# -- the body ---------------------------------------------------------------------------------


class ParticipantData(BaseModel):
    id: str
    name: str
    #: the access token's identity; null for a tokenless (development) join
    identity: str | None
    role: str | None


class TrackData(BaseModel):
    id: str
    kind: str
    codec: str
    source: str


class WebhookPayload(BaseModel):
    """The JSON body of every webhook; ``participant`` for participant and track events,
    ``track`` for track events, ``reason`` for ``participant_left``."""

    id: str
    event: EventName
    #: when it happened, UNIX seconds
    time: float
    room: str
    #: the cluster worker that reports it (null: a single process)
    worker: str | None = None
    participant: ParticipantData | None = None
    track: TrackData | None = None
    reason: str | None = None

    def body(self) -> bytes:
        absent = {k for k in ("participant", "track", "reason") if getattr(self, k) is None}
        return self.model_dump_json(exclude=absent).encode()


def new_id() -> str:
    """A unique event id (no ``.``, as the signature scheme asks)."""
    return "evt_" + secrets.token_hex(12)


def payload(event: RoomEvent, event_id: str, now: float, worker: str | None) -> WebhookPayload:
    p, t = event.participant, event.track
    return WebhookPayload(
        id=event_id,
        event=event.name,
        time=round(now, 3),
        room=event.room,
        worker=worker,
        participant=(
            ParticipantData(id=p.id, name=p.name, identity=p.identity, role=p.role)
            if p is not None
            else None
        ),
        track=TrackData(id=t.id, kind=t.kind, codec=t.codec, source=t.source) if t else None,
        reason=event.reason,
    )


# -- signatures -------------------------------------------------------------------------------


def load_key(settings: WebhookSettings) -> bytes:
    """The signing key from ``secret`` or ``secret_file``; raises ConfigError."""
    secret = settings.secret
    if settings.secret_file is not None:
        try:
            secret = Path(settings.secret_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(
                [f"webhooks.secret_file: cannot read {settings.secret_file}: {exc.strerror}"]
            ) from exc
        except UnicodeDecodeError:
            raise ConfigError([f"webhooks.secret_file: {settings.secret_file}: not text"]) from None
    if secret is None:
        raise ConfigError(["webhooks: no secret (webhooks.secret or webhooks.secret_file)"])
    try:
        return webhook_key(secret)
    except ValueError as exc:
        where = "secret_file" if settings.secret_file is not None else "secret"
        raise ConfigError([f"webhooks.{where}: {exc}"]) from None


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``."""
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(key: bytes, event_id: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of one attempt, signed at ``now`` (UNIX seconds)."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, event_id, timestamp, body),
    }


class WebhookVerificationError(ValueError):
    """A webhook whose signature, timestamp or headers do not hold."""


def verify(
    secret: str | bytes,
    request_headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """For receivers: the event, once the signature in ``request_headers`` is found to sign
    ``body`` (the raw bytes received) with ``secret`` (as configured: the string, or the key's
    bytes) within ``tolerance`` seconds of ``now``; raises WebhookVerificationError."""
    found = {k.lower(): v for k, v in request_headers.items()}
    try:
        event_id = found["webhook-id"]
        timestamp = int(found["webhook-timestamp"])
        signatures = found["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook-* headers") from None
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError(f"timestamp {timestamp} is too far from now")
    key = webhook_key(secret) if isinstance(secret, str) else secret
    expected = sign(key, event_id, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookVerificationError("no signature matches")
    event: dict[str, Any] = json.loads(body)
    if event.get("id") != event_id:
        raise WebhookVerificationError("the body's id is not the webhook-id")
    return event


# -- the queue and its retries ----------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """One event to deliver."""

    id: str
    event: EventName
    body: bytes
    #: attempts made so far
    attempts: int = 0
    #: when the next attempt may be made (the queue's clock)
    due: float = 0.0


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    #: back at the head of the queue, for another attempt when due
    RETRY = "retry"
    #: max_attempts made: given up
    FAILED = "failed"
    #: the receiver refused it (a 3xx or 4xx but 408 and 429): not retried
    REJECTED = "rejected"
    #: to be retried, but the queue filled up meanwhile: dropped, the oldest
    DROPPED = "dropped"


def retryable(status: int | None) -> bool:
    """Worth another attempt: no answer (connection error, timeout), 408, 429 or 5xx."""
    return status is None or status in (408, 429) or status >= 500


class WebhookQueue:
    """Events waiting for delivery, oldest first, at most ``max_queue``: when full, the
    oldest is dropped (counted).  One delivery at a time, in order: the head is retried with
    exponential backoff (``retry_delay`` doubled per attempt, at most ``MAX_RETRY_DELAY``,
    ``Retry-After`` respected) until it is delivered or ``max_attempts`` are spent."""

    def __init__(
        self,
        max_queue: int = 1000,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        events: Collection[str] | None = None,
        worker: str | None = None,
        jitter: Callable[[], float] = lambda: random.uniform(0.9, 1.1),
    ) -> None:
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.events = frozenset(events) if events is not None else None
        self.worker = worker
        self.jitter = jitter
        self._queue: deque[Delivery] = deque()
        #: events queued, delivered, dropped (queue full), failed (attempts spent),
        #: rejected (by the receiver), filtered (not wanted), and attempts made
        self.counts = dict.fromkeys(
            ("queued", "delivered", "dropped", "failed", "rejected", "filtered", "attempts"), 0
        )

    @classmethod
    def from_settings(cls, settings: WebhookSettings, worker: str | None = None) -> WebhookQueue:
        return cls(
            settings.max_queue,
            settings.max_attempts,
            settings.retry_delay,
            settings.events,
            worker,
        )

    def __len__(self) -> int:
        return len(self._queue)

    def wants(self, event: RoomEvent) -> bool:
        """Reported here: not about another worker's participant, and a chosen event."""
        return not event.mirrored and (self.events is None or event.name in self.events)

    def put(self, event: RoomEvent, wall: float, now: float = 0.0) -> Delivery | None:
        """Queue ``event`` (which happened at UNIX time ``wall``; due at ``now``): O(1).  None
        if it is not wanted here."""
        if not self.wants(event):
            self.counts["filtered"] += 1
            return None
        event_id = new_id()
        delivery = Delivery(
            event_id, event.name, payload(event, event_id, wall, self.worker).body()
        )
        delivery.due = now
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.counts["dropped"] += 1
        self._queue.append(delivery)
        self.counts["queued"] += 1
        return delivery

    def wait(self, now: float) -> float | None:
        """Seconds until the head is due (0: now); None when nothing waits."""
        if not self._queue:
            return None
        return max(0.0, self._queue[0].due - now)

    def take(self, now: float) -> Delivery | None:
        """The head, for an attempt, if it is due; the caller reports with :meth:`settle`."""
        if not self._queue or self._queue[0].due > now:
            return None
        delivery = self._queue.popleft()
        delivery.attempts += 1
        self.counts["attempts"] += 1
        return delivery

    def settle(
        self,
        delivery: Delivery,
        status: int | None,
        now: float,
        retry_after: float | None = None,
    ) -> Outcome:
        """The attempt's answer: an HTTP status, or None (no answer: connection refused,
        reset, timeout)."""
        if status is not None and 200 <= status < 300:
            self.counts["delivered"] += 1
            return Outcome.DELIVERED
        if not retryable(status):
            self.counts["rejected"] += 1
            return Outcome.REJECTED
        if delivery.attempts >= self.max_attempts:
            self.counts["failed"] += 1
            return Outcome.FAILED
        if len(self._queue) >= self.max_queue:
            self.counts["dropped"] += 1
            return Outcome.DROPPED
        delay = min(MAX_RETRY_DELAY, self.retry_delay * 2 ** (delivery.attempts - 1))
        delay *= self.jitter()
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, MAX_RETRY_DELAY))
        delivery.due = now + delay
        self._queue.appendleft(delivery)
        return Outcome.RETRY

    def stats(self) -> dict[str, int]:
        return dict(self.counts, waiting=len(self._queue))
