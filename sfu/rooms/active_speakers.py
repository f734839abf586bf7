"""A room's active speakers: the asyncio side of :mod:`.speakers`.

While the room has participants (from its first audio track on), every INTERVAL: each
participant's audio level over the interval (the loudest of its unmuted audio tracks, as
their :class:`~sfu.forwarding.audio_level.AudioLevels` summed it) goes to the room's
:class:`~.speakers.SpeakerDetector`; a change it reports goes to every participant
(``active_speakers``), and whoever joins later gets the last one; every subscriber is told
the dominant speaker's video tracks (:meth:`SubscriberPeer.set_speaker
<sfu.adapters.peers.subscriber.SubscriberPeer.set_speaker>`: they go first among equal
priorities).  Nothing of this runs per packet.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import faults
from .. import protocol as m
from .speakers import SpeakerDetector, Speakers
from .ticker import RoomTicker

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

#: seconds between two evaluations
INTERVAL = 0.2


def speakers_message(report: Speakers) -> m.ActiveSpeakers:
    return m.ActiveSpeakers(
        dominant=report.dominant,
        speakers=[
            m.SpeakerInfo(participant_id=s.participant, level=s.level) for s in report.speakers
        ],
    )


class RoomSpeakers(RoomTicker):
    name = "speakers"

    def __init__(self, room: Room) -> None:
        super().__init__(room, INTERVAL)
        self.detector = SpeakerDetector()
        #: the last report sent (None: nothing to report yet), and who has it
        self.last: m.ActiveSpeakers | None = None
        self._told: set[str] = set()

    def sample(self, now: float) -> Speakers | None:
        """The participants' levels since the last call, to the detector; its report."""
        detector = self.detector
        participants = self.room.participants
        for participant in participants.values():
            level: int | None = None
            for source in participant.sources.values():
                levels = source.audio_levels
                if levels is None:
                    continue
                taken = levels.take()
                if taken is not None and not source.muted and (level is None or taken < level):
                    level = taken
            if level is not None:
                detector.observe(participant.id, level)
        for gone in [p for p in detector.participants if p not in participants]:
            detector.remove(gone)
        return detector.evaluate(now)

    async def tick(self, now: float) -> None:
        report = self.sample(now)
        room = self.room
        if report is not None:
            logger.debug(
                "room %r: dominant speaker %s, speaking %s",
                room.name,
                report.dominant,
                [s.participant for s in report.speakers],
            )
            self.last = speakers_message(report)
            self._told.clear()
        self.favour(now)
        last = self.last
        self._told.intersection_update(room.participants)
        if last is None:
            return
        # a change to everyone; to who joined since, the last one unless it says nothing
        news = report is not None or last.dominant is not None or bool(last.speakers)
        for participant in list(room.participants.values()):
            if participant.id in self._told:
                continue
            self._told.add(participant.id)
            if news and participant.mirror_of is None:  # a mirror's own worker tells it
                await participant.send(last)

    def favour(self, now: float) -> None:
        """Every subscriber's videos of the dominant speaker go first (from now on)."""
        room = self.room
        dominant = self.detector.dominant
        speaker = room.participants.get(dominant) if dominant is not None else None
        tracks = frozenset(
            source.track_id
            for source in (speaker.sources.values() if speaker is not None else ())
            if source.kind == "video"
        )
        for participant in list(room.participants.values()):
            subscriber = participant.subscriber
            if subscriber is None:
                continue
            try:
                subscriber.set_speaker(tracks, now)
            except Exception:
                faults.record("speakers", participant.context, now)
