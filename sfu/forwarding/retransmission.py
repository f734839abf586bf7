"""Answering one subscriber's NACKs for one down track: what may be resent, and resending it.

:class:`Retransmitter` walks a NACK's lost packets through the rules that bound what a
subscriber can make the SFU send (RFC 4585 generic NACK; the budget is this project's, see
``docs/security.md``):

* the packet must still be in the history;
* the down track's layer policy must want it (a packet of a layer the subscriber no longer
  gets is of no use to it: ``keeps``, given by the down track);
* the transport's congestion allowance (transport-cc) and the subscriber's retransmission
  budget must have room for it; once either is used up, the rest of the NACK is refused at
  once, not looked at;
* the same packet is resent at most once per round trip.

What is refused is counted by :class:`~sfu.forwarding.drops.Refusal`, never queued.  What is
resent goes out on the RTX stream when one is negotiated (RFC 4588, :class:`RtxStream`), with
a new transport-wide sequence number (:func:`restamp`).  Probes (padding) resend recent packets
the same way, bypassing the rules.
"""

from __future__ import annotations

from collections.abc import Callable

from ..rtp.packet import first_extension_offset, wrap_rtx
from .congestion import SendSideCongestion
from .drops import Refusal
from .history import RetransmissionBuffer
from .rtx_budget import RetransmissionBudget

#: a packet is resent at most once per round trip, and at most once in this many seconds
#: whatever the round trip (unknown, or measured from reports the subscriber may forge)
MIN_RESEND_INTERVAL = 0.02


class RtxStream:
    """The RTX stream of one down track (RFC 4588): its SSRC, payload type, sequence."""

    __slots__ = ("ssrc", "payload_type", "sequence_number")

    def __init__(self, ssrc: int, payload_type: int, sequence_number: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence_number = sequence_number

    def wrap(self, packet: bytes) -> bytes:
        """``packet`` as the next packet of this RTX stream."""
        seq = self.sequence_number
        self.sequence_number = (seq + 1) & 0xFFFF
        return wrap_rtx(packet, self.payload_type, seq, self.ssrc)


def restamp(packet: bytes, twcc_id: int, congestion: SendSideCongestion, now: float) -> bytes:
    """``packet`` with a new transport-wide sequence number, if it carries one first (every
    packet sent is one the feedback reports on)."""
    at = first_extension_offset(packet, twcc_id)
    if at is None:
        return packet
    twcc = congestion.stamp(len(packet), now)
    return b"".join((packet[:at], twcc.to_bytes(2, "big"), packet[at + 2 :]))


class Retransmitter:
    __slots__ = (
        "history",
        "rtx",
        "congestion",
        "twcc_id",
        "budget",
        "refused",
        "retransmitted",
        "retransmitted_bytes",
        "_send",
    )

    def __init__(
        self,
        history: RetransmissionBuffer,
        send: Callable[[bytes], None],
        rtx: RtxStream | None = None,
    ) -> None:
        self.history = history
        self.rtx = rtx
        self._send = send
        #: the subscriber transport's congestion control (with transport-cc), else None
        self.congestion: SendSideCongestion | None = None
        self.twcc_id: int | None = None
        #: the subscriber's retransmission budget (shared by its down tracks); None: unbounded
        self.budget: RetransmissionBudget | None = None
        #: NACKed packets not resent, by reason
        self.refused: dict[Refusal, int] = dict.fromkeys(Refusal, 0)
        #: packets and bytes resent for NACKs (probes count in the bytes only)
        self.retransmitted = 0
        self.retransmitted_bytes = 0

    def answer(
        self,
        lost: list[int],
        now: float,
        interval: float,
        keeps: Callable[[int, float], bool] | None = None,
    ) -> int:
        """Resend what may be of ``lost`` (see the module's rules); returns bytes sent.
        ``interval``: the least time between two resends of one packet (a round trip);
        ``keeps(seq, now)``: whether the subscriber still wants that packet's layer."""
        sent = 0
        history = self.history
        congestion = self.congestion
        budget = self.budget
        refused = self.refused
        rtx_overhead = 2 if self.rtx is not None else 0
        for index, seq in enumerate(lost):
            if budget is not None and budget.bytes <= 0:
                refused[Refusal.RTX_BUDGET] += len(lost) - index
                break
            packet = history.get(seq)
            if packet is None:
                refused[Refusal.NOT_IN_HISTORY] += 1
                continue
            if keeps is not None and not keeps(seq, now):
                refused[Refusal.LAYER] += 1
                continue
            if congestion is not None and congestion.rtx_allowance <= 0:
                refused[Refusal.CONGESTION] += len(lost) - index
                break
            if budget is not None and len(packet) + rtx_overhead > budget.bytes:
                refused[Refusal.RTX_BUDGET] += len(lost) - index
                break
            if not history.resend_allowed(seq, now, interval):
                refused[Refusal.RESENT_RECENTLY] += 1
                continue
            size = self._resend(packet, now)
            self.retransmitted += 1
            if congestion is not None:
                congestion.rtx_allowance -= size
            if budget is not None:
                budget.spend(size)
            sent += size
        return sent

    def pad(self, seq: int, now: float) -> int:
        """Resend ``seq`` as a probe, whatever the rules; returns bytes sent (0: not in the
        history)."""
        packet = self.history.get(seq)
        return 0 if packet is None else self._resend(packet, now)

    def refuse(self, reason: Refusal, count: int) -> None:
        """``count`` NACK items refused before reaching :meth:`answer` (the caps)."""
        self.refused[reason] += count

    def _resend(self, packet: bytes, now: float) -> int:
        if self.rtx is not None:
            packet = self.rtx.wrap(packet)
        congestion = self.congestion
        if congestion is not None and self.twcc_id is not None:
            packet = restamp(packet, self.twcc_id, congestion, now)
        self.retransmitted_bytes += len(packet)
        self._send(packet)
        return len(packet)
