"""What happens in a room, as plain data: the rooms emit these, the log and the webhooks
report them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import faults
from ..config import EventName

__all__ = ["EventName", "Listener", "ParticipantRef", "RoomEvent", "TrackRef", "dispatch"]


@dataclass(frozen=True, slots=True)
class ParticipantRef:
    id: str
    name: str
    #: the access token's identity (None: a tokenless join, development mode)
    identity: str | None = None
    role: str | None = None
    #: a participant whose connections are on another worker (cascading): that worker;
    #: the worker that holds it reports it, not this one
    mirror_of: str | None = None


@dataclass(frozen=True, slots=True)
class TrackRef:
    id: str
    kind: str
    codec: str
    #: camera or screen
    source: str = "camera"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    name: EventName
    room: str
    participant: ParticipantRef | None = None
    track: TrackRef | None = None
    #: why a participant left: left, disconnected, peer_timeout, peer_failed, ...
    reason: str | None = None

    @property
    def mirrored(self) -> bool:
        """About a participant another worker holds (cascading)."""
        return self.participant is not None and self.participant.mirror_of is not None


#: told of every room event, synchronously: it must not block (queue, count, return)
Listener = Callable[[RoomEvent], None]


def dispatch(event: RoomEvent, listeners: Iterable[Listener]) -> None:
    """``event`` to every listener; one that raises is counted and logged, the others go on."""
    for listener in list(listeners):
        try:
            listener(event)
        except Exception:
            faults.record("event listener", f"{event.name} of room {event.room!r}")
