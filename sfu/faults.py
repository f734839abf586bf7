"""Faults contained: an exception while handling one peer, room or connection is logged with
its context (room, participant), counted, and goes no further.

:func:`record` is called from an ``except`` block.  It counts the fault under its kind (the
counts are in ``/stats``) and logs it with the traceback, at most once per
:data:`LOG_INTERVAL` for the same kind and context, so that a fault repeated for every packet
does not flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

logger = logging.getLogger("sfu.faults")

#: seconds between two log lines for the same (kind, context)
LOG_INTERVAL = 10.0
_MAX_REMEMBERED = 1024

#: faults contained since the process started, by kind (``rtp``, ``timer``, ``signaling``...)
counts: Counter[str] = Counter()
_logged: dict[tuple[str, str], tuple[float, int]] = {}  # -> (last logged, counted since)


def record(kind: str, context: str, now: float | None = None) -> None:
    """Count the exception being handled and log it with ``context`` (rate-limited)."""
    counts[kind] += 1
    now = time.monotonic() if now is None else now
    key = (kind, context)
    last = _logged.get(key)
    if last is not None and now - last[0] < LOG_INTERVAL:
        _logged[key] = (last[0], last[1] + 1)
        return
    if len(_logged) >= _MAX_REMEMBERED:
        _logged.clear()
    repeated = f" (and {last[1]} more since the last report)" if last and last[1] else ""
    _logged[key] = (now, 0)
    logger.error("%s failed in %s, contained%s", kind, context, repeated, exc_info=True)
