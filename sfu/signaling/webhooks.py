"""Webhook delivery, the asyncio/aiohttp edge of :mod:`sfu.events.webhooks`: room events
queued synchronously (O(1), never waiting: media and signaling go on whatever the receiver
does), POSTed one at a time by a single background task with aiohttp's client, retried as
the queue decides, stopped within a bounded time at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from ..config import Settings, WebhookSettings
from ..events.model import RoomEvent
from ..events.webhooks import Delivery, Outcome, WebhookQueue, headers, load_key
from ..rooms.room import RoomManager

logger = logging.getLogger(__name__)

#: seconds the sender may spend at shutdown delivering what is queued
STOP_TIMEOUT = 2.0
#: at most one warning about dropped or failed events per this many seconds
WARN_INTERVAL = 10.0


class WebhookSender:
    """Delivers the room events of this worker to ``settings.url``."""

    def __init__(
        self,
        settings: WebhookSettings,
        key: bytes,
        worker: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        queue: WebhookQueue | None = None,
    ) -> None:
        assert settings.url is not None
        self.url = settings.url
        self.timeout = settings.timeout
        self.key = key
        self.clock = clock
        self.wall = wall
        self.queue = queue or WebhookQueue.from_settings(settings, worker)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        #: the event being POSTed (taken from the queue)
        self._in_flight: Delivery | None = None
        self._warned_at = -WARN_INTERVAL
        self._warned_dropped = 0

    # -- the rooms' side: synchronous ------------------------------------------------------
    def on_room_event(self, event: RoomEvent) -> None:
        """A rooms listener: queue the event, wake the sender."""
        if self._stopping:
            return
        if self.queue.put(event, self.wall(), self.clock()) is not None:
            self._wake.set()
            self._warn_losses()

    # -- the task ------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=1),
        )
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then give up on the rest."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            elif not task.cancelled() and task.exception() is not None:
                logger.warning("webhooks: the sender failed: %r", task.exception())
        lost = len(self.queue) + (self._in_flight is not None)
        if lost:
            logger.warning(
                "webhooks: stopping with %d events undelivered (%s)", lost, self.queue.stats()
            )
        if self._session is not None:
            await self._session.close()
        logger.info("webhooks: stopped; %s", self.queue.stats())

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delivery = self.queue.take(self.clock())
            if delivery is None:
                wait = self.queue.wait(self.clock())
                if wait is None and self._stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            self._in_flight = delivery
            status, retry_after, error = await self._post(delivery)
            self._in_flight = None
            outcome = self.queue.settle(delivery, status, self.clock(), retry_after)
            self._report(delivery, outcome, status, error)

    async def _post(self, delivery: Delivery) -> tuple[int | None, float | None, str | None]:
        """One attempt: (status, Retry-After seconds, error); status None: no answer."""
        assert self._session is not None
        try:
            async with self._session.post(
                self.url,
                data=delivery.body,
                headers=headers(self.key, delivery.id, delivery.body, self.wall()),
                allow_redirects=False,
            ) as response:  # its body is not read: the status is the answer
                return response.status, _seconds(response.headers.get("Retry-After")), None
        except Exception as exc:  # ClientError, TimeoutError, OSError: no answer
            return None, None, f"{type(exc).__name__}: {exc}".rstrip(": ")

    def _report(
        self, delivery: Delivery, outcome: Outcome, status: int | None, error: str | None
    ) -> None:
        answer = f"HTTP {status}" if status is not None else error
        if outcome is Outcome.DELIVERED:
            logger.debug(
                "webhooks: %s %s delivered (attempt %d)",
                delivery.event,
                delivery.id,
                delivery.attempts,
            )
        elif outcome is Outcome.RETRY:
            logger.info(
                "webhooks: %s %s attempt %d: %s; retrying",
                delivery.event,
                delivery.id,
                delivery.attempts,
                answer,
            )
        else:
            logger.warning(
                "webhooks: %s %s %s after %d attempts: %s",
                delivery.event,
                delivery.id,
                outcome.value,
                delivery.attempts,
                answer,
            )

    def _warn_losses(self) -> None:
        """A warning (at most one per WARN_INTERVAL) when events were dropped meanwhile."""
        dropped = self.queue.counts["dropped"]
        if dropped == self._warned_dropped:
            return
        now = self.clock()
        if now - self._warned_at < WARN_INTERVAL:
            return
        self._warned_at = now
        logger.warning(
            "webhooks: queue full (webhooks.max_queue %d): %d events dropped so far, the "
            "oldest first",
            self.queue.max_queue,
            dropped,
        )
        self._warned_dropped = dropped


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: the backoff decides


WEBHOOKS_KEY = web.AppKey("webhooks", WebhookSender)


def install_webhooks(
    app: web.Application, settings: Settings, rooms: RoomManager, worker: str | None
) -> WebhookSender | None:
    """With ``webhooks.url`` set, this worker's room events are delivered there; raises
    ConfigError (the secret)."""
    if settings.webhooks.url is None:
        return None
    sender = WebhookSender(settings.webhooks, load_key(settings.webhooks), worker)
    rooms.listeners.append(sender.on_room_event)
    app[WEBHOOKS_KEY] = sender
    app.cleanup_ctx.append(_webhooks_context)
    return sender


async def _webhooks_context(app: web.Application) -> AsyncIterator[None]:
    sender = app[WEBHOOKS_KEY]
    await sender.start()
    where = urllib.parse.urlsplit(sender.url)  # logged without credentials or query
    port = f":{where.port}" if where.port else ""
    logger.info(
        "webhooks: delivering room events to %s://%s%s%s",
        where.scheme,
        where.hostname,
        port,
        where.path,
    )
    yield
    await sender.stop()
