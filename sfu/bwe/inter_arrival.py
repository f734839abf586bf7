"""Grouping of packets into send-time groups and inter-group delay deltas.

draft-ietf-rmcat-gcc-02, section 5.1-5.2: the delay-based controller does not look at single
packets but at *groups* -- packets sent within a ``burst_time`` (5 ms) of the first packet of
the group.  For two consecutive groups i-1 and i it measures

    send delta     T(i) - T(i-1)   (last send time of each group, sender clock)
    arrival delta  t(i) - t(i-1)   (last arrival time of each group, receiver clock)

and their difference d(i) is the inter-group delay variation fed to the trendline filter.
Because only differences are used the unknown offset between the clocks cancels out.

This follows libwebrtc's ``InterArrivalDelta`` (modules/congestion_controller/goog_cc/
inter_arrival_delta.cc): packets arriving in a burst (less than 5 ms after the previous one
and "ahead of schedule") are merged into the current group, reordered packets are skipped,
and the state is reset when the receiver clock jumps or groups keep arriving out of order.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Packets sent within this long of a group's first packet belong to the group (seconds).
SEND_TIME_GROUP_LENGTH = 0.005
#: A packet arriving at most this long after the previous one may join its burst (seconds).
BURST_DELTA_THRESHOLD = 0.005
#: Upper bound on the arrival span of a burst (seconds).
MAX_BURST_DURATION = 0.1
#: Arrival delta exceeding the local (feedback) clock delta by this much means the receiver
#: clock jumped: reset (seconds).
ARRIVAL_TIME_OFFSET_THRESHOLD = 3.0
#: Reset after this many consecutive groups with a negative arrival delta.
REORDERED_RESET_THRESHOLD = 3


@dataclass(slots=True)
class _Group:
    first_send: float
    send: float
    first_arrival: float
    arrival: float
    local: float
    size: int


@dataclass(frozen=True, slots=True)
class GroupDelta:
    """Deltas between two consecutive, complete send-time groups (seconds, bytes)."""

    send_delta: float
    arrival_delta: float
    size_delta: int


class InterArrival:
    """Turns a stream of (send time, arrival time) pairs into inter-group deltas."""

    def __init__(self, group_length: float = SEND_TIME_GROUP_LENGTH) -> None:
        self._group_length = group_length
        self._current: _Group | None = None
        self._previous: _Group | None = None
        self._reordered = 0

    def reset(self) -> None:
        self._current = None
        self._previous = None
        self._reordered = 0

    def compute(
        self, send_time: float, arrival_time: float, local_time: float, size: int
    ) -> GroupDelta | None:
        """Add one received packet, in send order.

        ``local_time`` is the sender's clock when the feedback carrying the packet came in
        (used to detect receiver clock jumps).  Returns the deltas between the two previous
        groups when this packet starts a new group, else None.
        """
        current = self._current
        if current is None:
            self._current = _Group(send_time, send_time, arrival_time, arrival_time, local_time, 0)
            self._current.size += size
            return None
        if send_time < current.first_send:
            return None  # reordered (sent before the group being built): skip
        result: GroupDelta | None = None
        if self._is_new_group(current, send_time, arrival_time):
            previous = self._previous
            if previous is not None:
                send_delta = current.send - previous.send
                arrival_delta = current.arrival - previous.arrival
                local_delta = current.local - previous.local
                if arrival_delta - local_delta >= ARRIVAL_TIME_OFFSET_THRESHOLD:
                    self.reset()
                    return None
                if arrival_delta < 0:
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET_THRESHOLD:
                        self.reset()
                    return None
                self._reordered = 0
                result = GroupDelta(send_delta, arrival_delta, current.size - previous.size)
            self._previous = current
            current = _Group(send_time, send_time, arrival_time, arrival_time, local_time, 0)
            self._current = current
        else:
            current.send = max(current.send, send_time)
        current.size += size
        current.arrival = arrival_time
        current.local = local_time
        return result

    def _is_new_group(self, current: _Group, send_time: float, arrival_time: float) -> bool:
        if self._belongs_to_burst(current, send_time, arrival_time):
            return False
        return send_time - current.first_send > self._group_length

    @staticmethod
    def _belongs_to_burst(current: _Group, send_time: float, arrival_time: float) -> bool:
        """A packet that arrives right after the group, earlier than its send spacing would
        predict, was queued behind it (e.g. released together by a link): same group."""
        arrival_delta = arrival_time - current.arrival
        send_delta = send_time - current.send
        if send_delta == 0:
            return True
        propagation_delta = arrival_delta - send_delta
        return (
            propagation_delta < 0
            and arrival_delta <= BURST_DELTA_THRESHOLD
            and arrival_time - current.first_arrival < MAX_BURST_DURATION
        )
