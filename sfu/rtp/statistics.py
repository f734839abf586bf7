"""Reception statistics of one incoming RTP stream (RFC 3550 appendix A.3 and A.8)."""

from __future__ import annotations

from .rtcp import ReportBlock


class ReceiveStatistics:
    __slots__ = (
        "clock_rate",
        "packets_received",
        "bytes_received",
        "_base_seq",
        "_max_seq",
        "_cycles",
        "_expected_prior",
        "_received_prior",
        "_jitter",
        "_last_transit",
        "_started",
        "last_sr_ntp",
        "last_sr_time",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.packets_received = 0
        self.bytes_received = 0
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_transit: float | None = None
        self._started = False
        self.last_sr_ntp = 0
        self.last_sr_time: float | None = None

    def add(self, sequence_number: int, timestamp: int, arrival: float, size: int) -> None:
        """Count one packet (``arrival`` in seconds)."""
        self.packets_received += 1
        self.bytes_received += size
        if not self._started:
            self._started = True
            self._base_seq = self._max_seq = sequence_number
        else:
            delta = (sequence_number - self._max_seq) & 0xFFFF
            if delta and delta < 0x8000:
                if sequence_number < self._max_seq:
                    self._cycles += 1 << 16
                self._max_seq = sequence_number
        transit = arrival * self.clock_rate - timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d < self.clock_rate * 10:  # ignore timestamp jumps (source change)
                self._jitter += (d - self._jitter) / 16.0
        self._last_transit = transit

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        self.last_sr_ntp = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self.last_sr_time = now

    @property
    def extended_highest(self) -> int:
        return self._cycles | self._max_seq

    @property
    def packets_lost(self) -> int:
        expected = self.extended_highest - self._base_seq + 1
        return expected - self.packets_received

    def report_block(self, ssrc: int, now: float) -> ReportBlock:
        """A report block for this stream; resets the interval counters."""
        expected = self.extended_highest - self._base_seq + 1
        expected_interval = expected - self._expected_prior
        received_interval = self.packets_received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.packets_received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self.last_sr_time is not None:
            dlsr = int((now - self.last_sr_time) * 65536) & 0xFFFFFFFF
        lost = max(-0x800000, min(0x7FFFFF, expected - self.packets_received))
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=self.extended_highest & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=self.last_sr_ntp,
            dlsr=dlsr,
        )
