"""The rooms' own counts, read at scrape time: a Prometheus collector over the live objects.

Nothing here runs per packet: the forwarding plane keeps counting on its objects as it does
for ``/stats`` (a down track's packets sent and dropped by reason, a source's keyframe
requests and NACKs, a peer's refused datagrams), and :class:`LiveCollector` reads them when
``/metrics`` is scraped.  Gauges (rooms, participants, tracks) are what is live now; the
counters are :class:`~.totals.RunningTotals`: what left keeps counting (see there), and an
object's counts stay under the policy of its room when it was first counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import faults
from ..adapters.peers import PublisherPeer, SubscriberPeer
from ..adapters.peers.base import Peer
from ..forwarding.downtrack import DownTrack
from ..forwarding.drops import DropReason, Refusal
from ..forwarding.source import MediaSource
from .totals import Label, RunningTotals


class LiveParticipant(Protocol):
    """What the collector reads of a participant (:class:`sfu.rooms.room.Participant`)."""

    @property
    def sources(self) -> Mapping[str, MediaSource]: ...

    @property
    def publisher(self) -> PublisherPeer | None: ...

    @property
    def subscriber(self) -> SubscriberPeer | None: ...


class LiveRoom(Protocol):
    """What the collector reads of a room (:class:`sfu.rooms.room.Room`)."""

    @property
    def policy_name(self) -> str: ...

    @property
    def participants(self) -> Mapping[str, LiveParticipant]: ...


class LiveRooms(Protocol):
    """What the collector reads of the rooms (:class:`sfu.rooms.room.RoomManager`)."""

    @property
    def rooms(self) -> Mapping[str, LiveRoom]: ...


# -- what is read of each kind of object, in order ---------------------------------------------

#: a down track's counters (label: policy, kind), then its drops by DropReason and its
#: refused NACKed packets by Refusal
DOWNTRACK = (
    "packets_sent",
    "bytes_sent",
    "retransmitted",
    "retransmitted_bytes",
    "keyframe_requests",
    "nacks_received",
)
_DROPS = len(DOWNTRACK)
_REFUSALS = _DROPS + len(DropReason)
DOWNTRACK_WIDTH = _REFUSALS + len(Refusal)

#: a source's counters (label: policy, kind)
SOURCE = (
    "packets_received",
    "bytes_received",
    "rejected",
    "duplicate",
    "keyframes_received",
    "keyframe_requests_sent",
    "nacks_sent",
    "unrecovered",
)

#: a peer connection's counters (label: policy, role)
PEER = (
    "unknown_ssrc",
    "malformed_rtp",
    "malformed_rtcp",
    "srtp_refused",
    "rtp_rate_limited",
    "rtcp_rate_limited",
    "send_errors",
)


def downtrack_values(downtrack: DownTrack) -> list[int]:
    refused = downtrack.refused
    return [
        downtrack.packets_sent,
        downtrack.bytes_sent,
        downtrack.retransmitted,
        downtrack.retransmitted_bytes,
        downtrack.keyframe_requests,
        downtrack.nacks_received,
        *downtrack.drops,
        *(refused.get(reason, 0) for reason in Refusal),
    ]


def source_values(source: MediaSource) -> list[int]:
    return [
        source.stats.packets_received,
        source.stats.bytes_received,
        source.packets_dropped,
        source.duplicate_packets,
        source.keyframes_received,
        source.keyframes.sent,
        source.nacks_sent,
        source.nack.given_up if source.nack is not None else 0,
    ]


def peer_values(peer: Peer) -> list[int]:
    raw = peer.raw
    return [
        peer.unknown_ssrc,
        peer.malformed_rtp,
        peer.malformed_rtcp,
        raw.unprotect_failures if raw is not None else 0,
        raw.rtp_rate_limited if raw is not None else 0,
        raw.rtcp_rate_limited if raw is not None else 0,
        raw.send_errors if raw is not None else 0,
    ]


class _Gauges:
    """What is live now, per policy (and kind)."""

    def __init__(self) -> None:
        self.rooms: dict[str, int] = {}
        self.participants: dict[str, int] = {}
        self.published: dict[Label, int] = {}
        self.subscribed: dict[Label, int] = {}
        self.paused: dict[str, int] = {}


def _add(into: dict[Label, int], label: Label, value: int) -> None:
    into[label] = into.get(label, 0) + value


class LiveCollector(Collector):
    """Reads the rooms (:meth:`watch`) when the registry is collected."""

    def __init__(self) -> None:
        self.rooms: LiveRooms | None = None
        self.downtracks = RunningTotals(DOWNTRACK_WIDTH)
        self.sources = RunningTotals(len(SOURCE))
        self.peers = RunningTotals(len(PEER))

    # -- reading ----------------------------------------------------------------------------
    def note_participant(self, policy: str, participant: LiveParticipant) -> None:
        """Read ``participant``'s objects now (it is leaving: what it counted since the last
        scrape is kept)."""
        for source in list(participant.sources.values()):
            self.sources.note(source, (policy, source.kind), source_values(source))
        for peer in (participant.publisher, participant.subscriber):
            if peer is not None:
                self.peers.note(peer, (policy, peer.role), peer_values(peer))
        subscriber = participant.subscriber
        if subscriber is not None:
            for downtrack in list(subscriber.downtracks.values()):
                self.note_downtrack(policy, downtrack)

    def note_downtrack(self, policy: str, downtrack: DownTrack) -> None:
        self.downtracks.note(
            downtrack, (policy, downtrack.source.kind), downtrack_values(downtrack)
        )

    def _read(self) -> _Gauges:
        gauges = _Gauges()
        rooms = self.rooms
        if rooms is None:
            return gauges
        for room in list(rooms.rooms.values()):
            policy = room.policy_name
            gauges.rooms[policy] = gauges.rooms.get(policy, 0) + 1
            for participant in list(room.participants.values()):
                gauges.participants[policy] = gauges.participants.get(policy, 0) + 1
                try:
                    self.note_participant(policy, participant)
                    for source in participant.sources.values():
                        _add(gauges.published, (policy, source.kind), 1)
                    subscriber = participant.subscriber
                    if subscriber is not None:
                        for downtrack in subscriber.downtracks.values():
                            _add(gauges.subscribed, (policy, downtrack.source.kind), 1)
                            selector = downtrack.selector
                            if selector is not None and selector.paused:
                                gauges.paused[policy] = gauges.paused.get(policy, 0) + 1
                except Exception:  # one broken participant must not hide the others
                    faults.record("metrics", f"room policy {policy!r}")
        return gauges

    # -- the families -----------------------------------------------------------------------
    def describe(self) -> Iterable[Metric]:
        return list(_families(_Gauges(), {}, {}, {}))

    def collect(self) -> Iterable[Metric]:
        gauges = self._read()
        return list(
            _families(gauges, self.downtracks.totals(), self.sources.totals(), self.peers.totals())
        )


def _by(
    totals: dict[Label, list[int]], index: int, keep: tuple[int, ...]
) -> dict[tuple[str, ...], int]:
    """``totals``' counter ``index`` summed over what the label positions ``keep`` leave out."""
    out: dict[tuple[str, ...], int] = {}
    for label, values in totals.items():
        key = tuple(label[i] for i in keep)
        out[key] = out.get(key, 0) + values[index]
    return out


def _counter(
    name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label, value in sorted(values.items()):
        family.add_metric(list(label), value)
    return family


def _gauge(
    name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label, value in sorted(values.items()):
        family.add_metric(list(label), value)
    return family


#: the plain counters of each down track: (metric, help, by kind as well as policy, field)
_DOWNTRACK_COUNTERS: tuple[tuple[str, str, bool, str], ...] = (
    (
        "sfu_forwarded_packets",
        "RTP packets forwarded to subscribers (first transmissions).",
        True,
        "packets_sent",
    ),
    (
        "sfu_forwarded_bytes",
        "Bytes of RTP forwarded to subscribers (first transmissions, headers included).",
        True,
        "bytes_sent",
    ),
    (
        "sfu_retransmitted_packets",
        "Packets resent for subscribers' NACKs.",
        False,
        "retransmitted",
    ),
    (
        "sfu_retransmitted_bytes",
        "Bytes resent to subscribers: NACKed packets and bandwidth probes (RTX).",
        False,
        "retransmitted_bytes",
    ),
    (
        "sfu_nacks_received",
        "NACK messages received from subscribers.",
        False,
        "nacks_received",
    ),
    (
        "sfu_keyframe_requests_received",
        "Keyframe requests (PLI, FIR) received from subscribers.",
        False,
        "keyframe_requests",
    ),
)


#: the plain counters of each source: (metric, help, by kind as well as policy, field)
_SOURCE_COUNTERS: tuple[tuple[str, str, bool, str], ...] = (
    (
        "sfu_received_packets",
        "RTP packets received from publishers (RTX unwrapped, duplicates included).",
        True,
        "packets_received",
    ),
    (
        "sfu_received_bytes",
        "Bytes of RTP payload received from publishers.",
        True,
        "bytes_received",
    ),
    (
        "sfu_keyframes_received",
        "Keyframes received from publishers.",
        False,
        "keyframes_received",
    ),
    (
        "sfu_keyframe_requests_sent",
        "Keyframe requests (PLI) sent to publishers (subscribers' requests coalesced).",
        False,
        "keyframe_requests_sent",
    ),
    (
        "sfu_nacks_sent",
        "NACK messages sent to publishers.",
        False,
        "nacks_sent",
    ),
    (
        "sfu_unrecovered_packets",
        "Packets lost from publishers for good (every NACK for them spent).",
        False,
        "unrecovered",
    ),
)


def _families(
    gauges: _Gauges,
    downtracks: dict[Label, list[int]],
    sources: dict[Label, list[int]],
    peers: dict[Label, list[int]],
) -> Iterator[Metric]:
    policy = ["policy"]
    pk = ["policy", "kind"]
    yield _gauge("sfu_rooms", "Rooms open.", policy, {(k,): v for k, v in gauges.rooms.items()})
    yield _gauge(
        "sfu_participants",
        "Participants in the rooms.",
        policy,
        {(k,): v for k, v in gauges.participants.items()},
    )
    yield _gauge("sfu_published_tracks", "Tracks published.", pk, gauges.published)
    yield _gauge(
        "sfu_subscribed_tracks",
        "Tracks forwarded to subscribers (one per subscriber and track).",
        pk,
        gauges.subscribed,
    )
    yield _gauge(
        "sfu_subscribed_tracks_paused",
        "Subscribed video tracks paused now (no bandwidth for their lowest layer, or a "
        "window of size 0).",
        policy,
        {(k,): v for k, v in gauges.paused.items()},
    )

    both, first = (0, 1), (0,)
    d = DOWNTRACK.index
    for name, documentation, by_kind, field in _DOWNTRACK_COUNTERS:
        yield _counter(
            name,
            documentation,
            pk if by_kind else policy,
            _by(downtracks, DOWNTRACK.index(field), both if by_kind else first),
        )
    dropped = CounterMetricFamily(
        "sfu_dropped_packets",
        "Packets of a source not forwarded to one subscriber, by reason (DropReason: paused, "
        "invalid, waiting_for_keyframe, layer, late_chain, unresolved_reference, too_old); "
        "counted once per subscriber.",
        labels=["policy", "reason"],
    )
    for drop in DropReason:
        for (p,), value in sorted(_by(downtracks, _DROPS + drop, first).items()):
            dropped.add_metric([p, drop.name.lower()], value)
    yield dropped
    refused = CounterMetricFamily(
        "sfu_retransmissions_refused",
        "Packets NACKed by subscribers and not resent, by reason (Refusal).",
        labels=["policy", "reason"],
    )
    asked: dict[tuple[str, ...], int] = dict(_by(downtracks, d("retransmitted"), first))
    for offset, refusal in enumerate(Refusal):
        for key, value in sorted(_by(downtracks, _REFUSALS + offset, first).items()):
            refused.add_metric([key[0], refusal.value], value)
            asked[key] = asked.get(key, 0) + value
    yield refused
    yield _counter(
        "sfu_nacked_packets",
        "Packets subscribers asked for again (NACK items): resent or refused.",
        policy,
        asked,
    )

    s = SOURCE.index
    for name, documentation, by_kind, field in _SOURCE_COUNTERS:
        yield _counter(
            name,
            documentation,
            pk if by_kind else policy,
            _by(sources, SOURCE.index(field), both if by_kind else first),
        )
    ingress = CounterMetricFamily(
        "sfu_ingress_dropped_packets",
        "RTP packets from publishers not forwarded at all, by reason: rejected (a payload "
        "type or RTX packet not negotiated), duplicate, unknown_ssrc, malformed.",
        labels=["policy", "reason"],
    )
    for reason, values in (
        ("rejected", _by(sources, s("rejected"), first)),
        ("duplicate", _by(sources, s("duplicate"), first)),
    ):
        for (p,), value in sorted(values.items()):
            ingress.add_metric([p, reason], value)
    publishers = {label: v for label, v in peers.items() if label[1] == "publish"}
    for reason, index in (("unknown_ssrc", "unknown_ssrc"), ("malformed", "malformed_rtp")):
        for (p,), value in sorted(_by(publishers, PEER.index(index), first).items()):
            ingress.add_metric([p, reason], value)
    yield ingress

    transport = CounterMetricFamily(
        "sfu_transport_dropped_datagrams",
        "Datagrams a peer connection dropped, by reason: srtp_refused, rtp_rate_limited, "
        "rtcp_rate_limited, malformed_rtcp; role: publish or subscribe.",
        labels=["policy", "role", "reason"],
    )
    for reason in ("srtp_refused", "rtp_rate_limited", "rtcp_rate_limited", "malformed_rtcp"):
        for (p, role), value in sorted(_by(peers, PEER.index(reason), both).items()):
            transport.add_metric([p, role, reason], value)
    yield transport
    yield _counter(
        "sfu_send_errors",
        "Datagrams the socket refused to send.",
        ["policy", "role"],
        _by(peers, PEER.index("send_errors"), both),
    )
