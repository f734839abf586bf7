"""Which NACKed packets a down track resends: not twice within a round trip, not of layers
the subscriber no longer gets, within the transport's allowance when it is limited, and
within the subscriber's retransmission budget; every refusal counted by reason."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from support.captures import VP9, forward, load

from sfu.forwarding.congestion import SendSideCongestion
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.retransmission import MIN_RESEND_INTERVAL, RtxStream
from sfu.forwarding.rtx_budget import RetransmissionBudget
from sfu.rtp.packet import parse_rtp


def _forwarded() -> tuple[DownTrack, list[bytes]]:
    result = forward(load(VP9), {0: (2, 2)}, keep_lower_chain=True)
    return result.downtrack, result.packets


def _redirect(downtrack: DownTrack, send: Callable[[bytes], None]) -> None:
    """What the down track sends from now on, resent packets included, goes to ``send``."""
    downtrack._send = downtrack.retransmitter._send = send


def _seqs_by_layer(downtrack: DownTrack, packets: list[bytes]) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for packet in packets[-500:]:
        seq = parse_rtp(packet).sequence_number
        out.setdefault(downtrack.history.layer(seq), []).append(seq)
    return out


def test_a_packet_is_not_resent_twice_within_a_round_trip() -> None:
    downtrack, packets = _forwarded()
    sent: list[bytes] = []
    _redirect(downtrack, sent.append)
    downtrack.rtt = 0.05
    seq = parse_rtp(packets[-1]).sequence_number
    assert downtrack.retransmit([seq], 10.0) > 0
    assert downtrack.retransmit([seq], 10.02) == 0  # the first copy is still on its way
    assert downtrack.retransmit([seq], 10.06) > 0
    assert len(sent) == 2 and downtrack.retransmissions_skipped == 1
    assert downtrack.refused["resent_recently"] == 1


def test_without_a_round_trip_a_packet_is_resent_at_most_once_per_min_interval() -> None:
    """No receiver reports (an attacker need send none): the floor still holds."""
    downtrack, packets = _forwarded()
    _redirect(downtrack, lambda _: None)
    assert downtrack.rtt is None
    seq = parse_rtp(packets[-1]).sequence_number
    resent = sum(downtrack.retransmit([seq], 50.0 + i * 0.001) > 0 for i in range(100))
    assert resent == math.ceil(0.1 / MIN_RESEND_INTERVAL)
    assert downtrack.refused["resent_recently"] == 100 - resent


def test_layers_the_subscriber_no_longer_gets_are_not_resent() -> None:
    downtrack, packets = _forwarded()
    layers = _seqs_by_layer(downtrack, packets)
    top = [seq for (s, _), seqs in layers.items() if s == 2 for seq in seqs]
    chain = layers[(1, 0)]  # the lower layer's T0 chain, forwarded beside the top layer
    assert top and chain
    selector = downtrack.selector
    assert selector is not None
    selector.set_target(1, 0)  # the allocator lowered the target: S2 frames are of no use
    assert downtrack.retransmit(top[-5:], 20.0) == 0
    assert downtrack.retransmit(chain[-3:], 20.0) > 0
    assert downtrack.retransmissions_skipped == 5 == downtrack.refused["layer"]


def test_retransmissions_stay_within_the_allowance() -> None:
    downtrack, packets = _forwarded()
    congestion = SendSideCongestion()
    downtrack.congestion = congestion
    assert congestion.rtx_allowance == math.inf  # not limited until the owner refills it
    congestion.refill_rtx_allowance(30.0)
    allowance = congestion.rtx_allowance
    # half the estimate, 250 ms of it (no receive rate measured yet)
    assert allowance == 0.5 * congestion.estimator.estimate / 8 * 0.25
    seqs = [parse_rtp(p).sequence_number for p in packets[-200:]]
    sent = downtrack.retransmit(seqs, 30.0)
    assert 0 < sent <= allowance + 1500
    assert congestion.rtx_allowance <= 0
    # once it is used up, the rest of the list is counted at once
    assert downtrack.refused["congestion"] == 200 - downtrack.retransmitted - sum(
        n for reason, n in downtrack.refused.items() if reason != "congestion"
    )
    assert downtrack.refused["congestion"] > 0
    # padding (a probe, RTX copies of recent packets) is not limited by it
    downtrack.retransmitter.rtx = RtxStream(5555, 101, 0)
    assert downtrack.send_padding(30.0) > 0


def _pictures(downtrack: DownTrack, packets: list[bytes]) -> dict[int, list[int]]:
    """Outgoing seqs of the last 500 packets by RTP timestamp (picture)."""
    out: dict[int, list[int]] = {}
    for packet in packets[-500:]:
        rtp = parse_rtp(packet)
        out.setdefault(rtp.timestamp, []).append(rtp.sequence_number)
    return out


def test_a_kept_frame_left_in_an_incomplete_picture_asks_for_a_keyframe() -> None:
    """After a down-switch, a lost top-layer packet is not resent; where its picture also
    carries a frame the subscriber keeps (the lower layer's T0 chain), a receiver that decodes
    whole pictures (libwebrtc) can never decode that frame nor the lower layer after it: a
    keyframe is asked for at once, not after the receiver's own timeout. Once until the next
    keyframe, and never for an upper-layer-only picture or one older than the last keyframe."""
    downtrack, packets = _forwarded()
    source = downtrack.source
    selector = downtrack.selector
    assert selector is not None
    chain_pictures, top_only = [], []
    for seqs in _pictures(downtrack, packets).values():
        layers = [downtrack.history.layer(s)[0] for s in seqs]
        tops = [s for s, spatial in zip(seqs, layers, strict=True) if spatial == 2]
        (chain_pictures if 1 in layers else top_only).append(tops)
    assert chain_pictures and top_only
    selector.set_target(1, 0)
    sent = source.keyframes.sent
    # a top-layer-only picture: nothing the subscriber keeps is lost with it
    assert downtrack.retransmit(top_only[-1], 100.0) == 0
    assert downtrack.incomplete_picture_keyframes == 0 and source.keyframes.sent == sent
    # a chain picture's top-layer packet: the chain frame beside it is lost to the receiver
    assert downtrack.retransmit(chain_pictures[-2][-1:], 100.0) == 0
    assert downtrack.incomplete_picture_keyframes == 1 and source.keyframes.sent == sent + 1
    # ... and so is the lower layer it switched down to: nothing more until the keyframe
    assert not selector.started and selector.keyframe_wanted
    # asked once until the next keyframe
    downtrack.retransmit(chain_pictures[-1][-1:], 101.0)
    assert downtrack.incomplete_picture_keyframes == 1 and source.keyframes.sent == sent + 1
    # a keyframe forwarded after those pictures: they no longer matter
    downtrack._incomplete_asked = False
    downtrack._keyframe_seq = parse_rtp(packets[-1]).sequence_number
    downtrack.retransmit(chain_pictures[-2][-1:], 102.0)
    assert downtrack.incomplete_picture_keyframes == 1


class _CountingGets:
    """The down track's history, counting the look-ups made answering NACKs."""

    def __init__(self, downtrack: DownTrack) -> None:
        self.calls = 0
        self._inner = downtrack.history
        downtrack.retransmitter.history = self  # type: ignore[assignment]

    def get(self, seq: int) -> bytes | None:
        self.calls += 1
        return self._inner.get(seq)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_retransmissions_stay_within_the_subscribers_budget() -> None:
    """Exact: the budget's bytes, RTX overhead included; what is over it is counted at
    once, without a look into the history; padding (probes) is not charged."""
    downtrack, packets = _forwarded()
    sent: list[bytes] = []
    _redirect(downtrack, sent.append)
    downtrack.retransmitter.rtx = RtxStream(5555, 101, 0)
    budget = RetransmissionBudget(ratio=1.0)
    downtrack.budget = budget
    budget.refill(0, 0.0)
    seqs = [parse_rtp(p).sequence_number for p in packets[-300:]]
    # the media of a quarter second, the 40 packets' worth that lie before the window
    budget.refill(sum(len(p) for p in packets[-340:-300]), 0.25)
    room = budget.bytes
    gets = _CountingGets(downtrack)
    total = downtrack.retransmit(seqs, 0.3)
    assert total == sum(len(p) for p in sent) <= room
    assert budget.bytes == room - total
    resent = len(sent)
    assert 0 < resent < 300 and downtrack.retransmitted == resent
    # the one that did not fit, and all after it, counted in one addition
    assert downtrack.refused["rtx_budget"] == 300 - resent
    assert gets.calls == resent + 1  # none looked up after the first refused
    assert all(len(rtx) == len(packets[-300 + i]) + 2 for i, rtx in enumerate(sent))
    # nothing left: nothing looked at
    budget.spend(int(budget.bytes))
    gets.calls = 0
    assert downtrack.retransmit(seqs, 0.4) == 0
    assert gets.calls == 0 and downtrack.refused["rtx_budget"] == 600 - resent
    # probes are bounded by the probe controller, not by NACKs
    assert downtrack.send_padding(0.5) > 0
    assert budget.bytes <= 0 and downtrack.retransmitted == resent


def test_refusals_by_reason_add_up() -> None:
    downtrack, packets = _forwarded()
    _redirect(downtrack, lambda _: None)
    newest = parse_rtp(packets[-1]).sequence_number
    unknown = [(newest + 1 + i) & 0xFFFF for i in range(3)]  # never sent
    assert downtrack.retransmit(unknown, 60.0) == 0
    downtrack.refuse("nack_cap", 7)
    downtrack.refuse("nack_rate", 11)
    assert downtrack.refused["not_in_history"] == 3
    assert downtrack.retransmissions_skipped == 3 + 7 + 11
