"""Messages to one WebSocket, written by one task of its own.

Whoever sends to a participant (the room fanning out an event, a reply) only puts the
message in a bounded queue and goes on: one client that stops reading delays nobody else.
A queue that overflows, or one write stalled past a deadline, ends that connection (the
``on_stalled`` callback, once, with the reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        write: Callable[[str], Awaitable[None]],
        *,
        max_queue: int,
        send_timeout: float,
        on_stalled: Callable[[str], None],
    ) -> None:
        self._write = write
        self.max_queue = max_queue
        self.send_timeout = send_timeout
        self._on_stalled = on_stalled
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False
        #: why the connection was given up (None while it is fine)
        self.stalled: str | None = None
        self.sent = 0
        self._task = asyncio.ensure_future(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, text: str) -> bool:
        """Queue ``text``; False when the outbox is closed or has just overflowed."""
        if self.closed:
            return False
        if len(self._queue) >= self.max_queue:
            self._stall(f"more than {self.max_queue} messages waiting to be read")
            return False
        self._queue.append(text)
        self._idle.clear()
        self._ready.set()
        return True

    def _stall(self, reason: str) -> None:
        if self.stalled is None:
            self.stalled = reason
            self.close()
            self._on_stalled(reason)

    async def _run(self) -> None:
        try:
            while not self.closed:
                if not self._queue:
                    self._idle.set()
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                text = self._queue.popleft()
                try:
                    await asyncio.wait_for(self._write(text), self.send_timeout)
                except TimeoutError:
                    self._stall(f"a write stalled for {self.send_timeout:g} s")
                    return
                except Exception as exc:  # the socket is gone: the reader side notices
                    logger.debug("outbox: write failed: %s", exc)
                    self.close()
                    return
                self.sent += 1
        except asyncio.CancelledError:
            pass
        finally:
            self._queue.clear()
            self._idle.set()

    async def flush(self, timeout: float) -> bool:
        """Until everything queued is written (or ``timeout``); True if it was."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return not self._queue

    def close(self) -> None:
        """Stop writing; what is queued is dropped."""
        if self.closed:
            return
        self.closed = True
        self._ready.set()
        if self._task is not asyncio.current_task():
            self._task.cancel()
