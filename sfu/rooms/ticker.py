"""A room's periodic work (active speakers, dynacast): every ``interval`` while the room has
participants, a :meth:`RoomTicker.tick`; a fault in one tick is recorded, the next one runs."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .. import faults

if TYPE_CHECKING:
    from .room import Room


class RoomTicker:
    #: what a fault is recorded as
    name = "room ticker"

    def __init__(self, room: Room, interval: float) -> None:
        self.room = room
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Tick every ``interval`` from now on, while the room has participants."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self.room.participants:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            try:
                await self.tick(now)
            except Exception:
                faults.record(self.name, f"room {self.room.name!r}", now)

    async def tick(self, now: float) -> None:
        raise NotImplementedError
