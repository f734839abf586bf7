"""Bandwidth probing (sans-IO): when an up-switch needs more than the estimate, send that much
for a short burst (a *probe cluster*) and measure what the link carried.

Every packet sent during the burst (padding and media alike) is tagged with the cluster's id;
from the transport feedback, :class:`ProbeBitrateEstimator` computes the rate the cluster
was sent at and the rate it arrived at, as libwebrtc's ``ProbeBitrateEstimator`` does: the
link carried min(send, receive) rate, and when it arrived markedly slower than it was sent the
link is saturated and its capacity is about the receive rate.  One deviation: the receive rate
is measured from the packets after the first quarter to arrive, since a shaper's burst
allowance (a token bucket full after a quiet moment) passes the first few packets of a
cluster at line rate and, in a cluster of ten, overstated a 400 kbit/s link by 5-15 %.
Failed probes back off (0.5 s,
1 s, up to 1.5 s) so a link at its capacity is not flooded with probes; a success
resets the back-off.  What the videos would need (the rate asked for) and when probing is
wanted are the downlink allocator's (:mod:`sfu.allocation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
#: a probe that got this share of its rate through found the link not full
UNSATURATED_SHARE = 0.85
#: careful probing ends with a probe that got this many times the rate at which the link was
#: last found full through
CAREFUL_RELEASE = 1.5
#: ... probes at least this many times that rate
CAREFUL_TARGET = 1.6
#: ... and a result below this many times that rate proves nothing
CAREFUL_PROOF = 1.2
#: the probe after careful probing ended asks for up to this many times the proven rate
GROWN_SCALE = 4
#: a careful probe asks for this much more than the next level needs
STEP_MARGIN = 1.1
#: the receive rate leaves out this share of the packets, the first to arrive (they may have
#: ridden a shaper's burst allowance)
SKIP_FIRST_ARRIVALS = 0.25


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
    #: (arrival, size) of each packet reported received
    arrivals: list[tuple[float, int]] = field(default_factory=list)


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
        stats.arrivals.append((arrival, size))

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
        arrivals = sorted(stats.arrivals)
        skip = int(len(arrivals) * SKIP_FIRST_ARRIVALS)
        if skip and arrivals[-1][0] > arrivals[skip][0]:
            # from the first packet after the burst allowance on (which takes no receive time)
            later = sum(size for _, size in arrivals[skip + 1 :])
            receive_rate = min(receive_rate, 8 * later / (arrivals[-1][0] - arrivals[skip][0]))
        if receive_rate < MIN_RATIO_FOR_UNSATURATED_LINK * send_rate:
            return int(TARGET_UTILIZATION_FRACTION * receive_rate)
        return int(min(send_rate, receive_rate))


class ProbeController:
    """When to probe, at what rate, and what a result proves.

    Normally a probe asks for what the videos want, up to 2x the proven rate.  Once the link
    has been found full (overuse, or a probe that did not get its rate through) probing is
    *careful*: one level up at a time, and a result counts only when it clearly exceeds the
    rate at which the link was full, since a shaper's burst allowance lets a short probe
    through 5-20 % above the link's rate.  Careful probing ends when a probe gets
    CAREFUL_RELEASE x that rate through (the link has grown).
    """

    def __init__(self, min_interval: float = 0.5, max_interval: float = 1.5) -> None:
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
        self.careful = False
        #: bits/s the link delivered when it was last found full
        self.full_at = 0
        #: bits/s the link has been shown to carry: follows the estimate down at once, but up
        #: only by probe results (None: no estimate yet)
        self.proven: int | None = None
        self._grown = False

    def follow(self, estimate: int) -> int:
        """The proven rate, given the estimate now.  An estimate that grew by itself (the
        additive increase of a sender that is application limited may reach 1.5 x what it
        sends) proves nothing; climbing on it was what overshot a 400 kbit/s link."""
        if self.proven is None or estimate < self.proven:
            self.proven = estimate
        return self.proven

    def on_congestion(self, delivered: int | None) -> None:
        """The link was found full (overuse or loss); ``delivered``: bits/s it delivered
        meanwhile, if known (under overuse, with its queue full, that is its capacity)."""
        self.careful = True
        if delivered:
            self.full_at = delivered

    def target(self, wanted: int, next_level: int | None) -> int:
        """The rate to probe at, for videos that want ``wanted`` in all and
        ``next_level`` for one level more."""
        proven = self.proven or 0
        if not self.careful:
            # right after a careful probe found the link grown, it may have grown a lot
            # (400 kbit/s -> 2.5 Mbit/s): a bigger step first
            return min(wanted, (GROWN_SCALE if self._grown else 2) * proven)
        # not capped at 2x the proven rate: after a deep fall that could stay below what a
        # result must reach to count, and the link would never be found to have grown
        step = max(
            int(STEP_MARGIN * (next_level or wanted)),
            int(STEP_MARGIN * proven),
            int(CAREFUL_TARGET * self.full_at),
        )
        return min(wanted, step)

    def start(self, target: int, now: float) -> int | None:
        """The rate to probe at, or None if not now."""
        if self.running or now < self._next_at or target <= (self.proven or 0):
            return None
        self.running = True
        self.probes += 1
        self._cluster += 1
        return target

    @property
    def cluster(self) -> int:
        """The id of the cluster last started."""
        return self._cluster

    def finish(self, now: float, result: int | None, rate: int) -> bool:
        """A probe at ``rate`` measured ``result`` (None: it could not be told); True if it
        proved more than the proven rate (which it then raises)."""
        self.running = False
        self.last_result = result
        proven = self.proven or 0
        success = result is not None and result > proven
        if result is not None and self.careful and result < CAREFUL_PROOF * self.full_at:
            success = False  # within what a shaper's burst allowance lets through
        if success and result is not None:
            self.proven = result
        released = False
        was_careful = self.careful
        if result is None or result < UNSATURATED_SHARE * rate:
            self.careful = True
            if result:
                # it arrived slower than sent: about the link's capacity; the most of these
                # (a congested link's own measure, on_congestion, may lower it), since a
                # probe that met a burst of media gets less through than the link carries
                self.full_at = max(self.full_at, result) if was_careful else result
        elif self.careful and result >= CAREFUL_RELEASE * self.full_at:
            self.careful = False
            released = True
        self._grown = released
        if success:
            self.successes += 1
            self.interval = self.min_interval
        else:
            self.interval = min(self.max_interval, self.interval * 2)
        self._next_at = now + self.interval
        return success
