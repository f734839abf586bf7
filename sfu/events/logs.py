"""The server's log: its setup (level, text or JSON lines, the chatty libraries quieted) and
one line per room event (logger ``sfu.events``), with the event's fields as structured
``extra`` fields (the JSON format writes them out)."""

from __future__ import annotations

import json
import logging
import time
from typing import IO, Any

from .model import RoomEvent

#: the operators' events: joins, leaves, tracks, rooms
logger = logging.getLogger("sfu.events")

#: libraries whose INFO lines come per ICE candidate and connection: at WARNING unless the
#: server's level is DEBUG
CHATTY_LOGGERS = ("aioice", "aiortc")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: what every LogRecord has; anything else was given with ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the fields
    given with ``extra=`` (room, participant_id, ...), and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def apply_level(level: str) -> None:
    """The root logger at ``level``; aioice's and aiortc's at WARNING (or above, with the
    root) unless ``level`` is DEBUG."""
    number = logging.getLevelName(level)
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(number)
    quiet = logging.NOTSET if number <= logging.DEBUG else max(number, logging.WARNING)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def setup_logging(level: str, log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """The root logger's one handler (to ``stream``, default stderr), text or JSON lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    apply_level(level)
    return handler


def event_fields(event: RoomEvent) -> dict[str, Any]:
    """The event's structured fields, for ``extra=`` (only those it has)."""
    fields: dict[str, Any] = {"event": event.name, "room": event.room}
    participant, track = event.participant, event.track
    if participant is not None:
        fields["participant_id"] = participant.id
        fields["participant_name"] = participant.name
        if participant.identity is not None:
            fields["identity"] = participant.identity
        if participant.role is not None:
            fields["role"] = participant.role
        if participant.mirror_of is not None:
            fields["mirror_of"] = participant.mirror_of
    if track is not None:
        fields["track_id"] = track.id
        fields["track_kind"] = track.kind
        fields["codec"] = track.codec
        fields["track_source"] = track.source
    if event.reason is not None:
        fields["reason"] = event.reason
    return fields


def log_event(event: RoomEvent, log: logging.Logger = logger) -> None:
    """One line for the event: INFO, or DEBUG for a participant another worker holds (the
    line is that worker's)."""
    level = logging.DEBUG if event.mirrored else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = event_fields(event)
    p, t = event.participant, event.track
    if event.name == "room_started":
        log.log(level, "room created: %r", event.room, extra=fields)
    elif event.name == "room_finished":
        log.log(level, "room removed: %r", event.room, extra=fields)
    elif p is None:
        log.log(level, "%s: room %r", event.name, event.room, extra=fields)
    elif event.name == "participant_joined":
        log.log(
            level,
            "participant joined: room %r participant %s name %r identity %r role %s%s",
            event.room,
            p.id,
            p.name,
            p.identity,
            p.role,
            f" (mirror of {p.mirror_of})" if p.mirror_of else "",
            extra=fields,
        )
    elif event.name == "participant_left":
        log.log(
            level,
            "participant left: room %r participant %s name %r identity %r reason %s",
            event.room,
            p.id,
            p.name,
            p.identity,
            event.reason,
            extra=fields,
        )
    elif t is not None:
        verb = "published" if event.name == "track_published" else "unpublished"
        log.log(
            level,
            "track %s: room %r participant %s track %s kind %s codec %s source %s",
            verb,
            event.room,
            p.id,
            t.id,
            t.kind,
            t.codec,
            t.source,
            extra=fields,
        )
