"""Bandwidth probing (sans-IO): when an up-switch needs more than the estimate, send that much
for a short burst (a *probe cluster*) and measure what the link carried.

Every packet sent during the burst (padding and media alike) is tagged with the cluster's id;
from the transport feedback, :class:`ProbeBitrateEstimator` computes the rate the cluster
was sent at and the rate it arrived at, as libwebrtc's ``ProbeBitrateEstimator`` does: the
link carried min(send, receive) rate, and when it arrived markedly slower than it was sent the
link is saturated and its capacity is about the receive rate.  Failed probes back off (0.5 s,
1 s, 2 s ... up to 20 s) so a link at its capacity is not flooded with probes; a success
resets the back-off.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..forwarding.allocator import Allocation, Demand, _ladder

#: a cluster needs this many packets reported received to be measured
MIN_PROBE_PACKETS = 5
#: ... and this share of the packets sent in it
MIN_RECEIVED_RATIO = 0.8
#: received slower than this fraction of the send rate: the link is saturated
MIN_RATIO_FOR_UNSATURATED_LINK = 0.9
#: on a saturated link, the capacity taken is this fraction of the receive rate
TARGET_UTILIZATION_FRACTION = 0.95
#: intervals longer than this are not a burst (seconds)
MAX_PROBE_INTERVAL = 1.0


@dataclass(slots=True)
class _Cluster:
    packets_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    last_send_size: int = 0
    first_arrival: float = 0.0
    first_arrival_size: int = 0
    last_arrival: float = 0.0


class ProbeBitrateEstimator:
    """What probe clusters got through, from the send and arrival times of their packets."""

    def __init__(self, keep: int = 8) -> None:
        self._clusters: dict[int, _Cluster] = {}
        self._keep = keep

    def on_sent(self, cluster: int) -> None:
        stats = self._clusters.get(cluster)
        if stats is None:
            stats = self._clusters[cluster] = _Cluster()
            while len(self._clusters) > self._keep:
                del self._clusters[next(iter(self._clusters))]
        stats.packets_sent += 1

    def on_received(self, cluster: int, send_time: float, arrival: float, size: int) -> None:
        stats = self._clusters.get(cluster)
        if stats is None:
            return
        if stats.packets_received == 0:
            stats.first_send = stats.last_send = send_time
            stats.first_arrival = stats.last_arrival = arrival
            stats.last_send_size = stats.first_arrival_size = size
        else:
            if send_time < stats.first_send:
                stats.first_send = send_time
            if send_time >= stats.last_send:
                stats.last_send, stats.last_send_size = send_time, size
            if arrival < stats.first_arrival:
                stats.first_arrival, stats.first_arrival_size = arrival, size
            if arrival > stats.last_arrival:
                stats.last_arrival = arrival
        stats.packets_received += 1
        stats.bytes_received += size

    def result(self, cluster: int) -> int | None:
        """Bits/s the link carried during the cluster; None if it cannot be told (too few
        packets reported, intervals out of range)."""
        stats = self._clusters.get(cluster)
        if stats is None or stats.packets_received < max(
            MIN_PROBE_PACKETS, MIN_RECEIVED_RATIO * stats.packets_sent
        ):
            return None
        send_interval = stats.last_send - stats.first_send
        receive_interval = stats.last_arrival - stats.first_arrival
        if not (0 < send_interval <= MAX_PROBE_INTERVAL and 0 < receive_interval):
            return None
        if receive_interval > MAX_PROBE_INTERVAL:
            return None
        # the last packet sent took no send time, the first received no receive time
        send_rate = 8 * (stats.bytes_received - stats.last_send_size) / send_interval
        receive_rate = 8 * (stats.bytes_received - stats.first_arrival_size) / receive_interval
        if receive_rate < MIN_RATIO_FOR_UNSATURATED_LINK * send_rate:
            return int(TARGET_UTILIZATION_FRACTION * receive_rate)
        return int(min(send_rate, receive_rate))


class ProbeController:
    def __init__(self, min_interval: float = 0.5, max_interval: float = 20.0) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.interval = min_interval
        self.running = False
        self.probes = 0
        self.successes = 0
        self._next_at = 0.0
        self._cluster = 0
        #: bits/s the last probe measured (None: it could not be told)
        self.last_result: int | None = None

    def start(self, target: int, estimate: int, now: float) -> int | None:
        """The rate to probe at, or None if not now."""
        if self.running or now < self._next_at or target <= estimate:
            return None
        self.running = True
        self.probes += 1
        self._cluster += 1
        return target

    @property
    def cluster(self) -> int:
        """The id of the cluster last started."""
        return self._cluster

    def finish(self, success: bool, now: float, result: int | None = None) -> bool:
        self.running = False
        self.last_result = result
        if success:
            self.successes += 1
            self.interval = self.min_interval
        else:
            self.interval = min(self.max_interval, self.interval * 2)
        self._next_at = now + self.interval
        return success


def needed_for_upgrade(
    demands: list[Demand], allocations: dict[str, Allocation], headroom: float
) -> int | None:
    """The estimate (bits/s) at which every video would get all its other inputs allow (the
    top of its ladder), or None if every video has that already."""
    total = 0
    short = False
    for demand in demands:
        allocation = allocations.get(demand.key)
        ladder = _ladder(demand)
        if allocation is None or not ladder:
            continue
        total += ladder[-1].bitrate
        top = (ladder[-1].spatial, ladder[-1].temporal)
        short = short or allocation.paused or (allocation.spatial, allocation.temporal) != top
    if not short:
        return None
    return int(total / headroom / 0.85)
