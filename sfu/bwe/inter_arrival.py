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


@dataclass(frozen=True, slots=True)
class GroupDelta:
    """Deltas between two consecutive, complete send-time groups (seconds, bytes)."""

    send_delta: float
    arrival_delta: float
    size_delta: int


class InterArrival:
    """Turns a stream of (send time, arrival time) pairs into inter-group deltas.

    The group being built and the one before it are plain fields (first send, last send,
    first arrival, last arrival, local time, size), not objects: :meth:`compute_many` runs
    for every packet of every feedback report.
    """

    def __init__(self, group_length: float = SEND_TIME_GROUP_LENGTH) -> None:
        self._group_length = group_length
        self.reset()

    def reset(self) -> None:
        self._current = False  # whether a group is being built
        self._first_send = self._send = self._first_arrival = self._arrival = 0.0
        self._local = 0.0
        self._size = 0
        self._previous = False  # whether a group was completed before it
        self._previous_send = self._previous_arrival = self._previous_local = 0.0
        self._previous_size = 0
        self._reordered = 0

    def compute(
        self, send_time: float, arrival_time: float, local_time: float, size: int
    ) -> GroupDelta | None:
        """Add one received packet, in send order.

        ``local_time`` is the sender's clock when the feedback carrying the packet came in
        (used to detect receiver clock jumps).  Returns the deltas between the two previous
        groups when this packet starts a new group, else None.
        """
        deltas = self.compute_many([send_time], [arrival_time], [size], local_time)
        if not deltas:
            return None
        send_delta, arrival_delta, size_delta, _ = deltas[0]
        return GroupDelta(send_delta, arrival_delta, size_delta)

    def compute_many(
        self,
        send_times: list[float],
        arrival_times: list[float],
        sizes: list[int],
        local_time: float,
    ) -> list[tuple[float, float, int, float]]:
        """Add received packets, in send order, that came in one feedback at ``local_time``
        (see :meth:`compute`): the (send delta, arrival delta, size delta, arrival time of the
        packet that completed it) of each pair of groups completed."""
        deltas: list[tuple[float, float, int, float]] = []
        current = self._current
        first_send, send, first_arrival, arrival = (
            self._first_send,
            self._send,
            self._first_arrival,
            self._arrival,
        )
        local, size = self._local, self._size
        previous = self._previous
        previous_send, previous_arrival = self._previous_send, self._previous_arrival
        previous_local, previous_size = self._previous_local, self._previous_size
        reordered = self._reordered
        group_length = self._group_length
        for send_time, arrival_time, packet_size in zip(
            send_times, arrival_times, sizes, strict=True
        ):
            if not current:
                current = True
                first_send = send = send_time
                first_arrival = arrival = arrival_time
                local = local_time
                size = packet_size
                continue
            if send_time < first_send:
                continue  # reordered (sent before the group being built): skip
            # a packet that arrives right after the group, earlier than its send spacing
            # would predict, was queued behind it (e.g. released together by a link): same
            # group
            send_delta = send_time - send
            if send_delta == 0:
                new_group = False
            else:
                arrival_delta = arrival_time - arrival
                # (the cheaper test first: the same answer, no side effects)
                new_group = send_time - first_send > group_length and not (
                    arrival_delta - send_delta < 0
                    and arrival_delta <= BURST_DELTA_THRESHOLD
                    and arrival_time - first_arrival < MAX_BURST_DURATION
                )
            if new_group:
                if previous:
                    group_send_delta = send - previous_send
                    group_arrival_delta = arrival - previous_arrival
                    local_delta = local - previous_local
                    if group_arrival_delta - local_delta >= ARRIVAL_TIME_OFFSET_THRESHOLD:
                        current = previous = False
                        reordered = 0
                        continue
                    if group_arrival_delta < 0:
                        reordered += 1
                        if reordered >= REORDERED_RESET_THRESHOLD:
                            current = previous = False
                            reordered = 0
                        continue
                    reordered = 0
                    deltas.append(
                        (group_send_delta, group_arrival_delta, size - previous_size, arrival_time)
                    )
                previous = True
                previous_send, previous_arrival = send, arrival
                previous_local, previous_size = local, size
                first_send = send = send_time
                first_arrival = arrival_time
                size = 0
            elif send_time > send:
                send = send_time
            size += packet_size
            arrival = arrival_time
            local = local_time
        self._current = current
        self._first_send, self._send = first_send, send
        self._first_arrival, self._arrival = first_arrival, arrival
        self._local, self._size = local, size
        self._previous = previous
        self._previous_send, self._previous_arrival = previous_send, previous_arrival
        self._previous_local, self._previous_size = previous_local, previous_size
        self._reordered = reordered
        return deltas
