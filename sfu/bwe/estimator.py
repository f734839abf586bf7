"""Send-side bandwidth estimation in the style of Google Congestion Control.

Ties the pieces together the way libwebrtc's goog_cc does (``DelayBasedBwe`` +
``SendSideBandwidthEstimation``), sans-IO: the owner reports every packet sent with its
transport-wide sequence number, hands over transport feedback (draft-holmer-rmcat-transport-
wide-cc-extensions-01), REMB, RTT and probe results, and reads :attr:`BandwidthEstimator.
estimate`.  All times are seconds as floats; ``now`` is the sender's clock, arrival times are
the receiver's.

Per feedback:

1. sequence numbers are unwrapped and matched against the send history; unknown and already
   reported packets are dropped (duplicates, overlapping feedback);
2. newly received packets, in send order, go through :class:`InterArrival` (5 ms groups) into
   the :class:`TrendlineEstimator`, whose hypothesis drives :class:`AimdRateControl` with the
   :class:`AcknowledgedBitrateEstimator` throughput -- the delay-based estimate A_r; an
   overuse counts only while a queue stands (:class:`StandingQueueFilter`: every packet of
   the last 250 ms waited 10 ms or more above the base delay), not while a busy receiver
   stamps some arrivals late;
3. the loss fraction of the packets reported (over intervals of at least 300 ms + RTT, see
   :class:`LossBasedController`) drives the loss-based limit A_s;
4. estimate = min(A_r, A_s, REMB), within [min_bitrate, max_bitrate].
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from .acknowledged import AcknowledgedBitrateEstimator
from .aimd import AimdRateControl
from .inter_arrival import InterArrival
from .loss import LossBasedController, LossWindow
from .probe import ProbeBitrateEstimator
from .standing_queue import StandingQueueFilter
from .trendline import OVERUSING, TrendlineEstimator

#: Sent packets are remembered this long for matching feedback (seconds).
HISTORY_DURATION = 5.0
#: ... and at most this many (well below the 2^15 unwrapping ambiguity; a power of two).
MAX_HISTORY = 16384
#: Loss fraction is computed over the packets reported in this window (seconds).
LOSS_WINDOW = 1.0
#: Without received packets for this long the delay detector starts over (libwebrtc
#: kStreamTimeOut).
STREAM_TIMEOUT = 2.0
#: Without transport feedback for this long REMB becomes the estimate again.
FEEDBACK_TIMEOUT = 5.0
#: Arrival times of transport feedback wrap with the 24-bit reference time (64 ms units).
ARRIVAL_TIME_PERIOD = (1 << 24) * 0.064
#: Under overuse, a last receive-rate window below this fraction of the filtered rate is a
#: sudden capacity drop: the decrease starts from that window's rate.
SUDDEN_DROP = 0.7
#: ... with more than this loss, over the loss window or over the last RECENT_LOSS_WINDOW
SUDDEN_DROP_LOSS = 0.2
SUDDEN_DROP_ONCE = 1.0
#: seconds of reports the recent loss is counted over: the loss window's second of earlier,
#: lossless reports took ~0.2 s to show a sixfold drop's loss above SUDDEN_DROP_LOSS
RECENT_LOSS_WINDOW = 0.2
#: ... counted only over at least this many reports (a high rate falling, not a few packets
#: of a low one lost to a probe's burst)
RECENT_LOSS_MIN_REPORTS = 20
#: A probe overshoots on purpose: overuse and loss of packets sent during a probe cluster
#: and this long after it (its queue draining) do not lower the estimate; the probe's result
#: tells what the link carried (seconds)
PROBE_DRAIN = 0.3
#: Before any throughput is measured an overuse halves the estimate, at most this often.
INITIAL_BACKOFF_INTERVAL = 0.2
#: arrival times this close to the last one are not unwrapped (they could not be nearer
#: after unwrapping)
_QUARTER_PERIOD = ARRIVAL_TIME_PERIOD / 4


def _unwrapped(sequence_numbers: Iterable[int], last: int) -> list[int]:
    """16-bit transport-wide sequence numbers unwrapped around ``last``, the highest sent
    (unwrapped): each to the nearest number to it."""
    out = []
    for sequence_number in sequence_numbers:
        delta = (sequence_number - last) & 0xFFFF
        out.append(last + delta if delta < 0x8000 else last + delta - 0x10000)
    return out


#: A packet's state in the send history
UNREPORTED, LOST, RECEIVED = 0, 1, 2
_MASK = MAX_HISTORY - 1
#: the sequence number of a slot never written (no unwrapped sequence number is this low)
_EMPTY = -(1 << 62)


class SendHistory:
    """The packets sent over the last :data:`HISTORY_DURATION` (before the last one sent), at
    most :data:`MAX_HISTORY`: parallel arrays indexed by the unwrapped transport-wide
    sequence number modulo :data:`MAX_HISTORY`, no object per packet.  A slot is a packet's
    while ``sequences`` holds its sequence number (a later packet takes it over)."""

    __slots__ = ("sequences", "send_times", "sizes", "clusters", "states", "last_send")

    def __init__(self) -> None:
        self.sequences = array("q", [_EMPTY]) * MAX_HISTORY
        self.send_times = array("d", [0.0]) * MAX_HISTORY
        self.sizes = array("i", [0]) * MAX_HISTORY
        #: the probe cluster, -1: none
        self.clusters = array("i", [-1]) * MAX_HISTORY
        #: UNREPORTED, LOST or RECEIVED
        self.states = bytearray(MAX_HISTORY)
        #: when the last packet was sent
        self.last_send = 0.0

    def __len__(self) -> int:
        """How many packets feedback may still be matched with."""
        oldest = self.last_send - HISTORY_DURATION
        send_times = self.send_times
        return sum(
            1
            for i, sequence in enumerate(self.sequences)
            if sequence != _EMPTY and send_times[i] >= oldest
        )


class BandwidthEstimator:
    """GCC-style send-side bandwidth estimator (delay-based AIMD + loss-based limit)."""

    def __init__(
        self,
        initial_bitrate: int = 1_000_000,
        min_bitrate: int = 50_000,
        max_bitrate: int = 20_000_000,
    ) -> None:
        self.min_bitrate = min_bitrate
        self.max_bitrate = max_bitrate
        self._history = SendHistory()
        self._last_sequence: int | None = None
        self._inter_arrival = InterArrival()
        self._trendline = TrendlineEstimator()
        self._queue = StandingQueueFilter()
        self._rate_control = AimdRateControl(initial_bitrate, min_bitrate, max_bitrate)
        self._acknowledged = AcknowledgedBitrateEstimator()
        self._loss = LossBasedController()
        self._loss_window = LossWindow(LOSS_WINDOW)
        self._recent_loss = LossWindow(RECENT_LOSS_WINDOW)
        self._last_arrival: float | None = None
        self._last_received_at: float | None = None
        self._last_feedback: float | None = None
        self._remb: int | None = None
        self._remb_fallback = False
        self._rtt = 0.2
        self._last_initial_backoff: float | None = None
        self._probes = ProbeBitrateEstimator()
        self._sudden_drop_at: float | None = None
        #: the last probe cluster: (id, first send, last send)
        self._probe_span: tuple[int, float, float] | None = None

    # -- inputs -----------------------------------------------------------------------------

    def on_packet_sent(
        self, sequence_number: int, size: int, now: float, cluster: int = -1
    ) -> None:
        """A packet carrying transport-wide sequence number ``sequence_number`` (16-bit,
        wraps) of ``size`` bytes left at ``now``, as part of probe cluster ``cluster`` if
        not -1.  Keeps a bounded history (5 s)."""
        # (for every packet sent to every subscriber: unwrapping inlined)
        last = self._last_sequence
        if last is None:
            sequence = self._last_sequence = sequence_number & 0xFFFF
        else:
            delta = (sequence_number - last) & 0xFFFF
            if delta < 0x8000:
                sequence = self._last_sequence = last + delta
            else:
                sequence = last + delta - 0x10000
        history = self._history
        slot = sequence & _MASK
        history.sequences[slot] = sequence
        history.send_times[slot] = now
        history.sizes[slot] = size
        history.clusters[slot] = cluster
        history.states[slot] = UNREPORTED
        history.last_send = now
        if cluster >= 0:
            self._probes.on_sent(cluster)
            span = self._probe_span
            if span is None or span[0] != cluster:
                self._probe_span = (cluster, now, now)
            else:
                self._probe_span = (cluster, span[1], now)

    def on_packets_left(self, sequence_numbers: list[int], now: float) -> None:
        """The packets of ``sequence_numbers`` (16-bit, as given to :meth:`on_packet_sent`,
        which they were recently) actually left at ``now``: a sender that batches its sends
        tells the send time here, which the delay-based estimate compares arrivals with."""
        last = self._last_sequence
        if last is None:
            return
        history = self._history
        sequences, send_times = history.sequences, history.send_times
        for sequence_number in sequence_numbers:
            delta = (sequence_number - last) & 0xFFFF
            sequence = last + delta if delta < 0x8000 else last + delta - 0x10000
            slot = sequence & _MASK
            if sequences[slot] == sequence:
                send_times[slot] = now
        if now > history.last_send:
            history.last_send = now

    def on_feedback(self, packets: list[tuple[int, float | None]], now: float) -> None:
        """Transport feedback: (transport sequence number, arrival time on the receiver's
        clock in seconds, or None if reported lost).  Unknown sequence numbers, packets
        already reported received, and repeated loss reports are ignored."""
        last = self._last_sequence
        if last is None:
            return
        sequences = _unwrapped([p[0] for p in packets], last)
        self._on_feedback(sequences, [p[1] for p in packets], now, ascending=False)

    def on_feedback_arrivals(
        self, base_sequence: int, arrivals: list[float | None], now: float
    ) -> None:
        """Transport feedback as parsed by
        :func:`~sfu.rtp.twcc.parse_transport_feedback_arrivals`: the packets from
        ``base_sequence`` on (16-bit, wrapping), one arrival time (or None) each; the same as
        :meth:`on_feedback` of ``((base_sequence + i) & 0xFFFF, arrivals[i])``."""
        last = self._last_sequence
        if last is None:
            return
        count = len(arrivals)
        delta = (base_sequence - last) & 0xFFFF
        first = last + delta if delta < 0x8000 else last + delta - 0x10000
        if first + count - 1 - last < 0x8000:
            # the packets unwrap to consecutive numbers (unwrapping turns back 2^16 only past
            # last + 2^15, where nothing was sent): no per-packet unwrapping, and those
            # received are in send order
            self._on_feedback(range(first, first + count), arrivals, now, ascending=True)
        else:  # a report of more than 2^15 packets, or one far ahead: each on its own
            sequences = _unwrapped(range(base_sequence, base_sequence + count), last)
            self._on_feedback(sequences, arrivals, now, ascending=False)

    def _on_feedback(
        self,
        sequences_reported: Iterable[int],
        arrivals: list[float | None],
        now: float,
        ascending: bool,
    ) -> None:
        """The packets of a report, their sequence numbers unwrapped (see
        :func:`_unwrapped`); ``ascending``: in increasing sequence number order."""
        # One pass over the report's packets, for every report of every subscriber: the
        # history lookup, loss counting, arrival unwrapping inlined; the received packets
        # gathered into flat lists for the delay-based part.
        self._last_feedback = now
        self._remb_fallback = False
        history = self._history
        sequences, send_times, states = history.sequences, history.send_times, history.states
        sizes, clusters = history.sizes, history.clusters
        oldest = history.last_send - HISTORY_DURATION
        span = self._probe_span
        probe_first, probe_end = (
            (span[1], span[2] + PROBE_DRAIN) if span is not None else (1.0, 0.0)
        )
        ignore_before = self._loss.ignore_sent_before
        if ignore_before is None:
            ignore_before = float("-inf")
        # a packet sent after both is counted by the loss controller without looking closer
        counted_after = max(ignore_before, probe_end)
        quarter = _QUARTER_PERIOD
        lost: list[int] = []  # newly reported lost
        counted_lost: list[int] = []  # ... and counted by the loss controller
        recovered: list[int] = []  # reported lost before, received now
        uncounted = 0  # newly reported received, not counted by the loss controller
        # the received packets (newly, or after a loss report)
        r_sequences: list[int] = []
        r_sends: list[float] = []
        r_arrivals: list[float] = []
        r_sizes: list[int] = []
        # whether they are in (arrival, size) order
        in_arrival_order = True
        previous_size = 0
        last_arrival = self._last_arrival
        for sequence, arrival in zip(sequences_reported, arrivals, strict=True):
            slot = sequence & _MASK
            if sequences[slot] != sequence:
                continue
            state = states[slot]
            if state == RECEIVED:
                continue
            send_time = send_times[slot]
            if send_time < oldest:
                continue
            if arrival is None:
                if state == UNREPORTED:
                    states[slot] = LOST
                    lost.append(sequence)
                    if send_time >= ignore_before and not probe_first <= send_time <= probe_end:
                        counted_lost.append(sequence)
                continue
            states[slot] = RECEIVED
            size = sizes[slot]
            # the arrival unwrapped (the reference time wraps); last_arrival is the latest
            # so far: while each packet is at or past it (at it: not smaller), they are in
            # (arrival, size) order
            if last_arrival is None:
                last_arrival = arrival
            else:
                if not -quarter < last_arrival - arrival < quarter:
                    arrival += (
                        round((last_arrival - arrival) / ARRIVAL_TIME_PERIOD) * ARRIVAL_TIME_PERIOD
                    )
                if arrival > last_arrival:
                    last_arrival = arrival
                elif arrival < last_arrival or size < previous_size:
                    in_arrival_order = False
            previous_size = size
            if state == LOST:
                recovered.append(sequence)
            elif send_time <= counted_after and (
                send_time < ignore_before or probe_first <= send_time <= probe_end
            ):
                uncounted += 1
            cluster = clusters[slot]
            if cluster >= 0:
                self._probes.on_received(cluster, send_time, arrival, size)
            r_sequences.append(sequence)
            r_sends.append(send_time)
            r_arrivals.append(arrival)
            r_sizes.append(size)
        # (each packet is received once: in send order means strictly increasing)
        in_send_order = ascending or r_sequences == sorted(r_sequences)
        self._last_arrival = last_arrival
        window, recent, loss = self._loss_window, self._recent_loss, self._loss
        received = len(r_sequences) - len(recovered)  # newly reported received
        window.add(now, received + len(lost), lost)
        recent.add(now, received + len(lost), lost)
        loss.on_reports(now, received - uncounted + len(counted_lost), counted_lost)
        for sequence in recovered:
            window.recovered(sequence)
            recent.recovered(sequence)
            loss.recovered(sequence)
        window.expire(now)
        recent.expire(now)
        before = self._target()
        if r_sequences:
            self._update_delay_based(
                r_sequences, r_sends, r_arrivals, r_sizes, in_send_order, in_arrival_order, now
            )
        self._update_loss_based(now)
        if self._target() < before:
            self._loss.on_decrease(now)

    def on_remb(self, bitrate: int, now: float) -> None:
        """Receiver-estimated maximum bitrate: the estimate while no transport feedback is
        available (none yet, or none for 5 s), an upper bound otherwise."""
        self._remb = bitrate
        if self._last_feedback is None or now - self._last_feedback > FEEDBACK_TIMEOUT:
            self._remb_fallback = True
            # Start from REMB should transport feedback (re)appear.
            self._rate_control.set_estimate(bitrate, now)

    def on_rtt(self, rtt: float) -> None:
        """Round-trip time (seconds): paces decreases and the additive increase."""
        if rtt > 0:
            self._rtt = rtt
            self._rate_control.rtt = rtt

    def on_probe_result(self, bitrate: int, now: float) -> None:
        """A probe confirmed the link carried ``bitrate`` without delay growth: raise the
        delay-based estimate to it at once (if higher)."""
        rate_control = self._rate_control
        if bitrate > rate_control.bitrate:
            rate_control.set_estimate(bitrate, now)
            if bitrate > rate_control.link_capacity.upper_bound():
                rate_control.link_capacity.reset()
        self._loss.raise_to(bitrate)

    # -- outputs ----------------------------------------------------------------------------

    def probe_result(self, cluster: int) -> int | None:
        """Bits/s the link carried during probe cluster ``cluster`` (from the feedback so
        far), None if it cannot be told yet."""
        return self._probes.result(cluster)

    @property
    def estimate(self) -> int:
        """Bits/s: min(delay-based, loss-based, REMB) within [min_bitrate, max_bitrate]."""
        if self._remb_fallback and self._remb is not None:
            value = float(self._remb)
        else:
            value = self._target()
        return int(min(max(value, self.min_bitrate), self.max_bitrate))

    @property
    def delay_based_estimate(self) -> int:
        """The delay-based (AIMD) estimate A_r alone, bits/s."""
        return int(self._rate_control.bitrate)

    @property
    def loss_based_estimate(self) -> int | None:
        """The loss-based limit, None while loss has not engaged it."""
        limit = self._loss.limit
        return None if limit is None else int(limit)

    @property
    def acknowledged_bitrate(self) -> int | None:
        """Bits/s received by the peer, from feedback; None before enough feedback."""
        bitrate = self._acknowledged.bitrate
        return None if bitrate is None else int(bitrate)

    @property
    def acknowledged_sample(self) -> int | None:
        """Bits/s received over the last receive-time window alone (unfiltered)."""
        sample = self._acknowledged.last_sample
        return None if sample is None else int(sample)

    @property
    def standing_delay(self) -> float:
        """Seconds of queue every packet sent in the last 250 ms met (see
        :mod:`.standing_queue`)."""
        return self._queue.standing_delay

    @property
    def rtt(self) -> float:
        """The last round-trip time reported (seconds; 0.2 until one is)."""
        return self._rtt

    @property
    def loss_ratio(self) -> float:
        """Fraction of the packets reported in the last second that were lost."""
        return self._loss_window.ratio

    @property
    def state(self) -> str:
        """The delay detector's hypothesis: "normal", "overusing" or "underusing"."""
        return self._trendline.state

    # -- internals --------------------------------------------------------------------------

    def _target(self) -> float:
        value = self._rate_control.bitrate
        if self._loss.limit is not None:
            value = min(value, self._loss.limit)
        if self._remb is not None:
            value = min(value, float(self._remb))
        return value

    def _probe_era(self, send_time: float) -> bool:
        """Whether a packet sent at ``send_time`` met a probe cluster's overshoot."""
        span = self._probe_span
        return span is not None and span[1] <= send_time <= span[2] + PROBE_DRAIN

    def _update_delay_based(
        self,
        sequences: list[int],
        sends: list[float],
        arrivals: list[float],
        sizes: list[int],
        in_send_order: bool,
        in_arrival_order: bool,
        now: float,
    ) -> None:
        """The packets of a report received (their first report), in report order."""
        if self._last_received_at is not None and now - self._last_received_at > STREAM_TIMEOUT:
            self._inter_arrival.reset()
            self._trendline = TrendlineEstimator()
            self._queue.reset()
        self._last_received_at = now
        if in_arrival_order:
            self._acknowledged.update_many(arrivals, sizes)
        else:
            ordered = sorted(zip(arrivals, sizes, strict=True))
            self._acknowledged.update_many([p[0] for p in ordered], [p[1] for p in ordered])
        if not in_send_order:
            order = sorted(range(len(sequences)), key=sequences.__getitem__)
            sends = [sends[i] for i in order]
            arrivals = [arrivals[i] for i in order]
            sizes = [sizes[i] for i in order]
        queue = self._queue
        queue.update_many(sends, arrivals)
        usage = self._trendline.update_many(
            self._inter_arrival.compute_many(sends, arrivals, sizes, now)
        )
        rate_control = self._rate_control
        throughput = self._acknowledged.bitrate
        if usage != OVERUSING:
            rate_control.update(usage, throughput, now)
            return
        if any(self._probe_era(send) for send in sends):
            return  # the probe's own overshoot: its result says what the link carried
        if not queue.standing:
            # the delay slope rose, but some recent packet still got through at the base
            # delay: a receiver slow to stamp arrivals (busy CPU), not a bottleneck's queue
            return
        recent = self._acknowledged.last_sample
        recent_loss = (
            self._recent_loss.ratio if self._recent_loss.total >= RECENT_LOSS_MIN_REPORTS else 0.0
        )
        if (
            throughput is not None
            and recent is not None
            and recent < SUDDEN_DROP * throughput
            and max(self._loss_window.ratio, recent_loss) > SUDDEN_DROP_LOSS
            and (self._sudden_drop_at is None or now - self._sudden_drop_at > SUDDEN_DROP_ONCE)
        ):
            # the queue is growing and overflowing, so the link is saturated: what it
            # delivered in the last window is its capacity now (the filtered rate would take
            # a second to follow a sudden drop; a delay spike alone loses nothing).  Once
            # per episode: as the sender then sends less, later windows measure the sender,
            # not the link, and would compound the decrease.
            self._sudden_drop_at = now
            if rate_control.time_to_reduce_further(now, recent):
                rate_control.update(OVERUSING, recent, now, True)
        elif throughput is not None:
            if rate_control.time_to_reduce_further(now, throughput):
                rate_control.update(usage, throughput, now)
        elif (
            self._last_initial_backoff is None
            or now - self._last_initial_backoff >= INITIAL_BACKOFF_INTERVAL
        ):
            # Overuse before any throughput measurement: halve (libwebrtc).
            rate_control.set_estimate(rate_control.bitrate / 2, now)
            self._last_initial_backoff = now

    def _update_loss_based(self, now: float) -> None:
        delay_based = self._rate_control.bitrate
        if self._remb is not None:
            delay_based = min(delay_based, float(self._remb))
        self._loss.update(
            self._target(),
            delay_based,
            self._acknowledged.bitrate,
            self._rtt,
            now,
        )
