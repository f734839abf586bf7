"""Loss-based controller.

draft-ietf-rmcat-gcc-02 section 6 and libwebrtc's classic loss-based part of
``SendSideBandwidthEstimation`` (modules/congestion_controller/goog_cc/
send_side_bandwidth_estimation.cc), fed by the loss fraction p seen in transport feedback:

    p > 10 %      A_s = A_s * (1 - 0.5 p)
    p < 2 %       A_s grows by 8 %/s
    2 % .. 10 %   A_s is kept (here: creeps up by 2 %/s)

p is measured over consecutive intervals of at least 300 ms + RTT and 20 packets, counting
only packets sent since the estimate last went down, which also spaces decreases.  Further
deviations, for robustness: a decrease starts from no more than the acknowledged bitrate
(what got through), and needs two lost packets more than 10 % (small samples: with 20
packets, 5 % random loss shows 3 or more losses 7.5 % of the time, 5 or more only 0.3 %).

The final target is min(A_s, A_r).  Here A_s is a *limit* that only exists while loss is
not low: more than 2 % loss engages it at the current target; it decreases as above, creeps
up by 2 %/s under moderate loss, grows by 8 %/s once loss is low, and is released as soon
as it has climbed back to the delay-based estimate A_r.  Moderate loss thus stops the
delay-based estimate from growing (quickly) -- which matters when a full drop-tail queue
hides the delay signal: the loss then grows past 10 % and the decrease drains the queue.
"""

from __future__ import annotations

import math
from collections import deque

LOW_LOSS = 0.02
HIGH_LOSS = 0.10
INCREASE_RATE = 0.08
#: Growth while loss is moderate (2-10 %), per second.  The draft keeps A_s; creeping up
#: instead keeps one unlucky sample of random loss from capping the rate for good, and
#: congestion soon pushes the loss back over 10 %.
HOLD_INCREASE_RATE = 0.02
#: Minimum interval between two loss-based decreases, plus one RTT (seconds).
DECREASE_INTERVAL = 0.3
#: How long a bottleneck queue filled by the old rate takes to drain after a decrease
#: (seconds): shapers and router queues hold ~100-200 ms.
DRAIN_TIME = 0.2
#: Fewer packets than this in an interval is no basis for a decision.
MIN_PACKETS = 20
#: High loss must exceed 10 % by this many packets.
LOSS_MARGIN = 2


class LossWindow:
    """Counts of packets lost / reported, over the reports of the last ``duration`` s.

    Packets are known by their (unwrapped) sequence numbers.  A packet reported lost and
    later received is moved from lost to received while it is still in the window.
    """

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.total = 0
        #: (time, packets reported, the sequence numbers of those reported lost)
        self._reports: deque[tuple[float, int, list[int]]] = deque()
        #: the packets of the window counted lost
        self._lost: set[int] = set()

    @property
    def lost(self) -> int:
        return len(self._lost)

    @property
    def ratio(self) -> float:
        return len(self._lost) / self.total if self.total else 0.0

    def add(self, now: float, count: int, lost: list[int]) -> None:
        """``count`` packets reported at ``now`` for the first time, ``lost`` among them."""
        if count:
            self._reports.append((now, count, lost))
            self.total += count
            if lost:
                self._lost.update(lost)

    def recovered(self, sequence: int) -> None:
        """Packet ``sequence``, counted lost, was received after all."""
        self._lost.discard(sequence)

    def expire(self, now: float) -> None:
        reports = self._reports
        oldest = now - self.duration
        while reports and reports[0][0] < oldest:
            _, count, lost = reports.popleft()
            self.total -= count
            if lost:
                self._lost.difference_update(lost)

    def clear(self) -> None:
        self._reports.clear()
        self._lost.clear()
        self.total = 0


class LossBasedController:
    """The loss-based limit A_s (bits/s), or None while not engaged.

    Loss is evaluated over consecutive, non-overlapping intervals (as libwebrtc does with
    its loss reports) of at least 300 ms + RTT and ``MIN_PACKETS`` packets, counting only
    packets sent after the estimate last went down -- losses at the old rate say nothing
    about the new one.  This also spaces decreases by at least 300 ms + RTT.
    """

    def __init__(self) -> None:
        self.limit: float | None = None
        #: Loss fraction of the last completed interval.
        self.interval_loss = 0.0
        self._interval = LossWindow(math.inf)
        self._interval_start: float | None = None
        self._ignore_sent_before: float | None = None
        self._last_update: float | None = None

    @property
    def ignore_sent_before(self) -> float | None:
        """Packets sent before this (our clock) are not counted (see :meth:`on_decrease`)."""
        return self._ignore_sent_before

    def on_reports(self, now: float, count: int, lost: list[int]) -> None:
        """``count`` packets (sent from :attr:`ignore_sent_before` on) were reported received
        or lost for the first time, ``lost`` (sequence numbers) among them."""
        self._interval.add(now, count, lost)

    def recovered(self, sequence: int) -> None:
        """Packet ``sequence``, reported lost before, was reported received."""
        self._interval.recovered(sequence)

    def on_decrease(self, now: float) -> None:
        """The overall estimate went down (for whatever reason): start a new interval, of
        packets sent from DRAIN_TIME on (those sent sooner still meet the queue that the
        higher rate filled, and their loss says nothing of the new rate)."""
        self._interval.clear()
        self._interval_start = now
        self._ignore_sent_before = now + DRAIN_TIME

    def update(
        self,
        target: float,
        delay_based: float,
        acknowledged: float | None,
        rtt: float,
        now: float,
    ) -> None:
        """Called after each feedback.  ``target`` is the current overall estimate,
        ``delay_based`` the delay-based one (the ceiling at which the limit is released),
        ``acknowledged`` the rate the receiver gets."""
        dt = 0.0 if self._last_update is None else min(max(now - self._last_update, 0.0), 1.0)
        self._last_update = now
        if self._interval_start is None:
            self._interval_start = now
        interval = self._interval
        if now - self._interval_start >= DECREASE_INTERVAL + rtt and interval.total >= MIN_PACKETS:
            lost, total = interval.lost, interval.total
            self.interval_loss = lost / total
            interval.clear()
            self._interval_start = now
            if lost > HIGH_LOSS * total + LOSS_MARGIN:
                # Reduce from what actually got through: a rate above the link's keeps its
                # queue full, hiding any delay signal from the delay-based controller.
                base = target if self.limit is None else min(self.limit, target)
                if acknowledged is not None:
                    base = min(base, acknowledged)
                self.limit = base * (1 - 0.5 * self.interval_loss)
                return
            if self.limit is None and self.interval_loss >= LOW_LOSS:
                self.limit = target  # moderate loss: hold the estimate where it is
        if self.limit is None or self.interval_loss > HIGH_LOSS:
            return
        if self.interval_loss < LOW_LOSS:
            self.limit = self.limit * math.pow(1 + INCREASE_RATE, dt) + 1_000 * dt
            if self.limit >= delay_based:
                self.limit = None
        elif self.limit < delay_based:
            grown = self.limit * math.pow(1 + HOLD_INCREASE_RATE, dt) + 1_000 * dt
            self.limit = min(grown, delay_based)

    def raise_to(self, bitrate: float) -> None:
        """A probe proved ``bitrate`` gets through."""
        if self.limit is not None and bitrate > self.limit:
            self.limit = bitrate
