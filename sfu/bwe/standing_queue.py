"""Standing queue: how far the *least* delayed recent packet is above the path's base delay.

The trendline detector (:mod:`.trendline`) reads the slope of the delay over the last ~20
packet groups (about 100-300 ms).  A bottleneck that is overused builds a queue that every
later packet waits in: the one-way delay of even the luckiest packet rises.  A receiver that
is merely slow to stamp arrivals -- a starved CPU, a busy network thread, Wi-Fi
aggregation -- delays some packets by tens or hundreds of milliseconds and not others: the
slope spikes, yet within any quarter second some packet still arrives at the base delay.

So an overuse counts only while there is a *standing queue*: the minimum one-way delay
(arrival on the receiver's clock minus send time on ours; the unknown clock offset cancels
out against the base) over the packets sent in the last ``window`` seconds exceeds the
minimum over the last ``base_window`` seconds by ``threshold``.  This is the queue-delay
signal of LEDBAT (RFC 6817: the base delay as a windowed minimum) and of BBR's min-RTT
filter, applied to transport-wide feedback.

Sans-IO: fed (send time, arrival time) of every packet reported received.
"""

from __future__ import annotations

from collections import deque

#: packets sent over this long (seconds) must all have queued for the queue to be standing
RECENT_WINDOW = 0.25
#: the base delay is the least seen over this long (seconds); long enough that a queue
#: kept full by congestion does not become the base, short enough to follow clock drift
BASE_WINDOW = 30.0
#: the base is kept as the minima of buckets this long (seconds)
BASE_BUCKET = 1.0
#: a standing queue of at least this much is a bottleneck's queue (seconds)
STANDING_THRESHOLD = 0.010


class StandingQueueFilter:
    """Windowed minima of the one-way delay: the base delay and the recent least delay."""

    def __init__(
        self,
        window: float = RECENT_WINDOW,
        base_window: float = BASE_WINDOW,
        threshold: float = STANDING_THRESHOLD,
    ) -> None:
        self.window = window
        self.base_window = base_window
        self.threshold = threshold
        #: (send time, delay), delays increasing: the front is the recent minimum
        self._recent: deque[tuple[float, float]] = deque()
        #: (bucket start, least delay in the bucket), oldest first
        self._buckets: deque[list[float]] = deque()
        self._latest_send = float("-inf")

    def reset(self) -> None:
        self._recent.clear()
        self._buckets.clear()
        self._latest_send = float("-inf")

    def update(self, send_time: float, arrival_time: float) -> None:
        """One packet sent at ``send_time`` (our clock) arrived at ``arrival_time`` (the
        receiver's), both in seconds."""
        self.update_many([send_time], [arrival_time])

    def update_many(self, send_times: list[float], arrival_times: list[float]) -> None:
        """:meth:`update` for each packet in turn (a report's packets at once: the state is in
        locals, no call per packet)."""
        recent = self._recent
        buckets = self._buckets
        latest_send = self._latest_send
        window = self.window
        base_window = self.base_window
        oldest = latest_send - window
        if buckets:
            last_bucket = buckets[-1]
            bucket_end = last_bucket[0] + BASE_BUCKET
        else:
            last_bucket = [0.0, 0.0]
            bucket_end = float("-inf")
        for send_time, arrival_time in zip(send_times, arrival_times, strict=True):
            delay = arrival_time - send_time
            # (the window is trimmed only where it changed: it was trimmed after the last
            # packet)
            if send_time >= latest_send:
                latest_send = send_time
                oldest = send_time - window
                while recent and recent[-1][1] >= delay:
                    recent.pop()
                recent.append((send_time, delay))
                while recent[0][0] < oldest and len(recent) > 1:
                    recent.popleft()
            elif not recent or delay < recent[0][1]:
                # reordered in send order: it still bounds the window's minimum from above
                recent.appendleft((send_time, delay))
                while len(recent) > 1 and recent[0][0] < oldest:
                    recent.popleft()
            if send_time < bucket_end:
                if delay < last_bucket[1]:
                    last_bucket[1] = delay
            else:
                last_bucket = [send_time, delay]
                bucket_end = send_time + BASE_BUCKET
                buckets.append(last_bucket)
                expired = send_time - base_window
                while buckets[0][0] < expired:
                    buckets.popleft()
        self._latest_send = latest_send

    @property
    def base_delay(self) -> float | None:
        """The least one-way delay over the base window (seconds, arbitrary offset)."""
        if not self._buckets:
            return None
        return min(bucket[1] for bucket in self._buckets)

    @property
    def standing_delay(self) -> float:
        """Seconds the least delayed packet sent in the recent window waited above the base
        delay: the queue every recent packet met (0 before any packet)."""
        base = self.base_delay
        if base is None or not self._recent:
            return 0.0
        return max(self._recent[0][1] - base, 0.0)

    @property
    def standing(self) -> bool:
        """Whether a bottleneck queue stands: every packet of the recent window queued."""
        return self.standing_delay >= self.threshold
