"""A room's dynacast: the asyncio side of :mod:`sfu.allocation.dynacast`.

Every INTERVAL, for each published video of the room's participants: the highest spatial
layer any subscriber needs (judged against the track's full ladder, see
:func:`~sfu.allocation.dynacast.needed_spatial`), and when its :class:`Dynacast` says so,
``publish_layers`` to the publisher (how many spatial layers to encode; 0: none).  A track
that something else takes whole (the media link to other workers, a recorder: its
``taps``) needs every layer.  A mirror's tracks (cascading) are its own worker's business.
Off when the room's policy says ``dynacast: false``: the publisher is then told to send all
its layers if it had been told fewer.  Nothing of this runs per packet.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import protocol as m
from ..allocation.dynacast import Dynacast, needed_spatial
from ..forwarding.source import MediaSource
from .ticker import RoomTicker

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

logger = logging.getLogger(__name__)

#: seconds between two evaluations
INTERVAL = 0.5


class RoomDynacast(RoomTicker):
    name = "dynacast"

    def __init__(self, room: Room) -> None:
        super().__init__(room, INTERVAL)
        #: track id -> its state
        self.tracks: dict[str, Dynacast] = {}

    def needed(self, source: MediaSource, dynacast: Dynacast) -> int:
        """The highest spatial layer anyone needs of ``source`` (-1: nobody)."""
        full = dynacast.full
        if source.taps or not self.room.policy.dynacast:
            return len(full) - 1
        needed = -1
        temporal = source.temporal_layers
        for participant in self.room.participants.values():
            subscription = participant.subscription(source.track_id)
            if subscription is None:
                continue
            needed = max(
                needed,
                needed_spatial(
                    full,
                    temporal,
                    caps=subscription.caps,
                    window=subscription.window,
                    pin=subscription.pin,
                    cpu=subscription.cpu,
                    bandwidth=subscription.bandwidth,
                    tolerance=subscription.tolerance,
                ),
            )
            if needed >= len(full) - 1:
                break
        return needed

    async def tick(self, now: float) -> None:
        tracks = self.tracks
        seen: set[str] = set()
        for participant in list(self.room.participants.values()):
            if participant.mirror_of is not None:
                continue
            for source in list(participant.sources.values()):
                if source.kind != "video" or source.layers is None:
                    continue
                seen.add(source.track_id)
                dynacast = tracks.get(source.track_id)
                if dynacast is None:
                    dynacast = tracks[source.track_id] = Dynacast()
                dynacast.observe(source.resolutions)
                layers = dynacast.update(self.needed(source, dynacast), now)
                if layers is not None:
                    await self._tell(participant, source, layers, len(dynacast.full))
        for gone in set(tracks) - seen:
            del tracks[gone]

    async def _tell(
        self, participant: Participant, source: MediaSource, layers: int, full: int
    ) -> None:
        logger.info(
            "room %r: %s: %d of %d spatial layers needed",
            self.room.name,
            source.track_id,
            layers,
            full,
        )
        await participant.send(m.PublishLayers(track_id=source.track_id, spatial_layers=layers))

    def stats(self) -> dict[str, object]:
        return {
            track: {"full": len(d.full), "requested": d.requested, "changes": d.changes}
            for track, d in self.tracks.items()
        }
