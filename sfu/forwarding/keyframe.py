"""Coalescing of keyframe requests (PLI/FIR) towards one publisher track.

Many subscribers may ask for a keyframe at once; the publisher gets at most one request per
``min_interval`` and, while one is pending and no keyframe came, a retry after ``retry_interval``.
"""

from __future__ import annotations


class KeyframeRequester:
    def __init__(self, min_interval: float = 0.5, retry_interval: float = 1.0) -> None:
        self.min_interval = min_interval
        self.retry_interval = retry_interval
        self.pending = False
        self.sent = 0
        self._last_sent = float("-inf")

    def request(self, now: float) -> bool:
        """Somebody needs a keyframe: returns ``True`` if a request should go out now."""
        self.pending = True
        return self._maybe_send(now, self.min_interval)

    def poll(self, now: float) -> bool:
        """Called periodically: returns ``True`` if a pending request should be retried."""
        if not self.pending:
            return False
        return self._maybe_send(now, self.retry_interval)

    def on_keyframe(self) -> None:
        self.pending = False

    def _maybe_send(self, now: float, interval: float) -> bool:
        if now - self._last_sent < interval:
            return False
        self._last_sent = now
        self.sent += 1
        return True
