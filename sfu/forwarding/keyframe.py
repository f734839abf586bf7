"""Coalescing of keyframe requests (PLI/FIR) towards one publisher track.

Many subscribers may ask for a keyframe at once; the publisher gets at most one request per
``min_interval`` and, while one is pending and no keyframe came, a retry after ``retry_interval``.
A request that comes after the last keyframe but within ``min_interval`` of the last request
is deferred, not dropped: it goes out as soon as ``min_interval`` has passed.
"""

from __future__ import annotations


class KeyframeRequester:
    def __init__(self, min_interval: float = 0.5, retry_interval: float = 1.0) -> None:
        self.min_interval = min_interval
        self.retry_interval = retry_interval
        self.pending = False
        self.sent = 0
        self._last_sent = float("-inf")
        #: a request is waiting for ``min_interval``, none is outstanding
        self._deferred = False

    def request(self, now: float) -> bool:
        """Somebody needs a keyframe: returns ``True`` if a request should go out now."""
        outstanding = self.pending and not self._deferred
        self.pending = True
        if self._maybe_send(now, self.min_interval):
            return True
        # a request sent since the last keyframe will bring one: this one joins it;
        # otherwise the keyframe it needs has not been asked for yet
        self._deferred = not outstanding
        return False

    def poll(self, now: float) -> bool:
        """Called periodically: returns ``True`` if a pending request should be sent now
        (a deferred one, or a retry when no keyframe came)."""
        if not self.pending:
            return False
        return self._maybe_send(now, self.min_interval if self._deferred else self.retry_interval)

    def on_keyframe(self) -> None:
        self.pending = False
        self._deferred = False

    def _maybe_send(self, now: float, interval: float) -> bool:
        if now - self._last_sent < interval:
            return False
        self._last_sent = now
        self.sent += 1
        self._deferred = False
        return True
