"""The two peer connections of a participant, as the SFU drives them.

:class:`PublisherPeer` answers a client's offer and turns each received track into a
:class:`~sfu.forwarding.source.MediaSource`; :class:`SubscriberPeer` offers the client one
send-only transceiver per track it subscribes to and feeds it through a
:class:`~sfu.forwarding.downtrack.DownTrack`.  Both receive their packets raw through the
transport sink installed by :mod:`sfu.adapters.aiortc_plane`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters

from .. import faults
from ..allocation.allocator import Demand
from ..allocation.downlink import DownlinkAllocator, Link, VideoState, reallocate_now
from ..forwarding.congestion import SendSideCongestion
from ..forwarding.downtrack import DownTrack
from ..forwarding.rtx_budget import (
    NACK_ITEMS_PER_PACKET,
    NACK_ITEMS_PER_SECOND,
    RETRANSMISSION_RATIO,
    RetransmissionBudget,
)
from ..forwarding.source import MediaSource
from ..forwarding.subscription import Subscription
from ..rtp import extensions as ext
from ..rtp import rtcp
from ..rtp.packet import RtpError, parse_rtp
from ..rtp.twcc import TransportFeedbackBuilder
from ..sdp.limits import SdpLimits
from . import aiortc_plane as plane

logger = logging.getLogger(__name__)

TICK_INTERVAL = 0.05
REPORT_INTERVAL = 1.0
#: ``videoBitrate`` is what was sent over this window (seconds)
VIDEO_BITRATE_WINDOW = 0.5
#: how long a probe cluster is sent for (seconds): long enough for a few packets at low
#: rates and to get past a shaper's burst allowance, short enough not to flood the link
PROBE_CLUSTER_DURATION = 0.1
PROBE_MIN_PACKETS = 8


@dataclass
class PeerSettings:
    start_bitrate_kbps: int = 1500
    #: REMB sent to publishers: the most we let a publisher send
    publisher_max_bitrate: int = 10_000_000
    keyframe_min_interval: float = 0.5
    #: downlink cap of a subscriber (policy), bits/s
    subscriber_max_bitrate: int | None = None
    bandwidth_estimation: bool = False
    #: answer publishers' transport-wide-cc with feedback (else they estimate from REMB/loss)
    publisher_transport_cc: bool = False
    bandwidth_headroom: float = 0.9
    priorities: dict[str, int] = field(default_factory=lambda: {"screen": 2, "camera": 1})
    #: seconds without any packet from the client (RTP, RTCP or ICE check) before the
    #: connection is declared dead; 0: never (ICE consent, ~30 s, still applies)
    peer_timeout: float = 5.0
    #: a subscriber's retransmission budget (see RetransmissionBudget): retransmitted bytes
    #: <= this x the media bytes forwarded to it over any second
    retransmission_ratio: float = RETRANSMISSION_RATIO
    #: NACK items handled per RTCP packet from a subscriber, and per second
    nack_items_per_packet: int = NACK_ITEMS_PER_PACKET
    nack_items_per_second: int = NACK_ITEMS_PER_SECOND
    #: seconds from the first offer (the client's accepted, on the publish connection; ours,
    #: on the subscribe one) until the connection is connected (ICE and DTLS); and from each
    #: subscribe offer until it is answered
    setup_timeout: float = 20.0
    #: bounds on the client's offers and answers (size, m-lines, ICE candidates)
    sdp_limits: SdpLimits = field(default_factory=SdpLimits)


class _Peer:
    #: seconds between calls of ``tick`` (NACK and keyframe-request retries need it often)
    tick_interval = TICK_INTERVAL
    #: "publish" or "subscribe", for messages
    role = "peer"

    def __init__(self, settings: PeerSettings, context: str = "") -> None:
        self.settings = settings
        #: who this peer belongs to (room, participant), for logs
        self.context = f"{context} {self.role}".strip()
        self.pc = plane.create_peer_connection()
        self.ice = plane.IceRestarter(self.pc)
        self.raw: plane.RawTransport | None = None
        self.rtcp_ssrc = random.getrandbits(32)
        self.malformed_rtp = 0
        self.malformed_rtcp = 0
        self.unknown_ssrc = 0
        #: when a packet (RTP or RTCP) last came from the client
        self.heard_at = 0.0
        self._probed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        #: the connection is dead: called once with a code and a reason
        self.on_failed: Callable[[str, str], None] | None = None
        self.failed = False
        #: the connection has been connected (ICE and DTLS) at least once
        self.was_connected = False
        #: when the client's first offer was accepted (publish) or our first offer sent
        #: (subscribe), ``time.monotonic()``: the setup deadline runs from then until
        #: connected
        self.setup_started_at: float | None = None
        self._setup_timer: asyncio.TimerHandle | None = None

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            state = self.pc.connectionState
            if state == "connected" and not self.closed:
                self.was_connected = True
                self._watch_setup()
                dtls = plane.dtls_transport_of(self.pc)
                if dtls is not None:
                    # judged alive or dead from now on (the peer timeout), also if no
                    # stream ever binds the transport
                    self._bind_transport(dtls)
            elif state == "failed":
                self._fail("peer_failed", f"ICE or DTLS failed on the {self.role} connection")
            elif state == "closed" and not self.closed and self.ice.failed:
                # aiortc closes a connection whose ICE restart failed by itself
                self._fail("peer_failed", f"the ICE restart of the {self.role} connection failed")
            elif state == "closed" and not self.closed:
                self._fail("peer_closed", f"the client closed its {self.role} connection")

    def __repr__(self) -> str:
        return self.context

    def _fail(self, code: str, reason: str) -> None:
        if self.failed or self.closed:
            return
        self.failed = True
        if self.on_failed is not None:
            self.on_failed(code, reason)

    def _ensure_transport(self, transceiver: RTCRtpTransceiver) -> plane.RawTransport:
        return self._bind_transport(transceiver.receiver.transport)

    def _bind_transport(self, dtls: RTCDtlsTransport) -> plane.RawTransport:
        """The raw transport on ``dtls`` (BUNDLE: one for all), and the tick loop."""
        if self.raw is None:
            self.raw = plane.RawTransport(dtls)
            self.raw.attach_sink(self)
            self.heard_at = time.monotonic()
            self._task = asyncio.ensure_future(self._run())
        return self.raw

    # -- the setup deadline: a loop timer, from the first offer (no tick runs before a
    # -- transport is bound, and none ever is if the client never connects)

    def start_setup(self, now: float) -> None:
        """An offer is accepted or sent: the setup deadline starts (once) and is watched."""
        if self.setup_started_at is None:
            self.setup_started_at = now
        self._watch_setup()

    def setup_deadline(self) -> float | None:
        """When what is pending of the setup must be done (``time.monotonic()``), or None."""
        if self.was_connected or self.setup_started_at is None:
            return None
        return self.setup_started_at + self.settings.setup_timeout

    def setup_overdue(self, now: float) -> str | None:
        """Why the setup failed, if its deadline has passed (sans-IO: the timer calls it)."""
        deadline = self.setup_deadline()
        if deadline is None or now < deadline:
            return None
        timeout = self.settings.setup_timeout
        return f"the {self.role} connection did not connect within {timeout:g} s"

    def _watch_setup(self) -> None:
        """(Re)arm the timer for the earliest pending deadline, or cancel it."""
        if self._setup_timer is not None:
            self._setup_timer.cancel()
            self._setup_timer = None
        deadline = self.setup_deadline()
        if deadline is None or self.closed or self.failed:
            return
        delay = max(0.0, deadline - time.monotonic())
        self._setup_timer = asyncio.get_running_loop().call_later(delay, self._on_setup_timer)

    def _on_setup_timer(self) -> None:
        self._setup_timer = None
        if self.closed or self.failed:
            return
        reason = self.setup_overdue(time.monotonic())
        if reason is not None:
            self._fail("peer_failed", reason)
        else:
            self._watch_setup()  # another deadline is pending, or none

    def last_heard(self) -> float:
        """When the client last sent anything: RTP, RTCP, or an ICE connectivity check
        (browsers send one every few seconds, whatever the media)."""
        checked = self.raw.checked_at if self.raw is not None else 0.0
        return max(self.heard_at, checked)

    def check_liveness(self, now: float) -> bool:
        """False, and the peer fails, when nothing came from the client for
        ``peer_timeout``: the network is gone without the WebSocket noticing.  Past half
        the timeout, the client is asked (an ICE check, once a second).  Not while an ICE
        restart runs (a client that has lost its path restarts ICE to get a new one)."""
        timeout = self.settings.peer_timeout
        if timeout <= 0 or self.raw is None or self.closed or self.failed:
            return True
        if self.ice.restarting:
            return True  # the client is restarting ICE: the restart has its own time limit
        silent = now - self.last_heard()
        if silent <= timeout:
            if silent > timeout / 2 and now - self._probed_at >= 1.0:
                self._probed_at = now
                self.raw.probe()
            return True
        self._fail(
            "peer_timeout", f"nothing received on the {self.role} connection for {silent:.1f} s"
        )
        return False

    async def _run(self) -> None:
        last_report = last_tick = time.monotonic()
        try:
            while not self.closed:
                await asyncio.sleep(self.tick_interval)
                now = time.monotonic()
                # after a stall of the event loop, packets that did arrive may still wait in
                # the sockets: judge liveness on the next tick
                stalled = now - last_tick > self.tick_interval + 1.0
                last_tick = now
                if not stalled and not self.check_liveness(now):
                    return
                try:
                    self.tick(now)
                except Exception:
                    faults.record("timer", self.context, now)
                if now - last_report >= REPORT_INTERVAL:
                    last_report = now
                    try:
                        self.report(now)
                    except Exception:
                        faults.record("report", self.context, now)
        except asyncio.CancelledError:
            pass

    def tick(self, now: float) -> None:
        pass

    def report(self, now: float) -> None:
        pass

    def on_rtp(self, data: bytes, now: float) -> None:
        self.heard_at = now

    def on_rtcp(self, data: bytes, now: float) -> None:
        self.heard_at = now

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._setup_timer is not None:
            self._setup_timer.cancel()
            self._setup_timer = None
        if self._task is not None:
            self._task.cancel()
        if self.raw is not None:
            self.raw.detach_sink()
            self.raw.stop_probing()
        try:
            await self.ice.close()
            await plane.close_peer_connection(self.pc)
        except Exception:  # the room's bookkeeping must not depend on aiortc closing cleanly
            logger.exception("closing a peer connection failed")


class PublisherPeer(_Peer):
    """The connection a client publishes on: we answer its offers."""

    role = "publish"

    def __init__(
        self,
        track_prefix: str,
        on_source: Callable[[MediaSource], None],
        settings: PeerSettings,
        context: str = "",
    ) -> None:
        super().__init__(settings, context)
        self.track_prefix = track_prefix
        self._on_source = on_source
        self.sources: dict[int, MediaSource] = {}  # by SSRC, media and RTX
        self._taken: set[int] = set()
        #: transport-wide-cc feedback for the publisher's own send-side estimator
        self._twcc_id: int | None = None
        self._twcc: TransportFeedbackBuilder | None = None
        self._source_types: dict[str, str] = {}  # mid -> "camera" / "screen"

    async def answer(
        self,
        offer_sdp: str,
        video_codecs: list[str] | None = None,
        sources: dict[str, str] | None = None,
    ) -> str:
        """Answer the client's offer; ``video_codecs`` (e.g. ["VP9", "AV1"]) are the codecs
        allowed, in order of preference.  An offer with new ICE credentials restarts ICE:
        the answer carries new ones too, and the sources keep flowing."""
        plane.check_publish_offer(offer_sdp, self.settings.sdp_limits, self.pc)
        # from here on the connection holds sockets: it must connect in time (also if
        # answering fails below, and the client never sends a better offer)
        self.start_setup(time.monotonic())
        remote = plane.remote_ice(offer_sdp)
        restart = self.ice.is_restart(remote)
        if sources:
            self._source_types.update(sources)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            # aiortc recomputes what it answers from every offer: filter it every time
            if video_codecs is not None and transceiver.kind == "video":
                plane.restrict_answer_codecs(transceiver, video_codecs)
            if not self.settings.publisher_transport_cc:
                plane.drop_transport_cc(transceiver)
            if id(transceiver) in self._taken:
                continue
            self._taken.add(id(transceiver))

            def on_receive(
                params: RTCRtpReceiveParameters, t: RTCRtpTransceiver = transceiver
            ) -> None:
                try:  # called from aiortc's connection task: nothing may escape
                    self._on_receive(t, params)
                except Exception:
                    faults.record("receive", f"{self.context} mid {t.mid}")

            plane.take_over_receiver(transceiver.receiver, on_receive)
        if restart and remote is not None:
            await self.ice.begin(remote)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return plane.munge_sdp(self.pc.localDescription.sdp, self.settings.start_bitrate_kbps)

    def _on_receive(self, transceiver: RTCRtpTransceiver, params: RTCRtpReceiveParameters) -> None:
        stream = plane.stream_parameters_from_receive(transceiver.kind, params)
        if stream is None:
            logger.warning(
                "publisher %s: no usable stream for mid %s", self.track_prefix, transceiver.mid
            )
            return
        raw = self._ensure_transport(transceiver)
        source = MediaSource(
            f"{self.track_prefix}:{transceiver.mid}",
            stream,
            send_rtcp=raw.send_rtcp,
            rtcp_ssrc=self.rtcp_ssrc,
            max_bitrate=self.settings.publisher_max_bitrate,
            keyframe_min_interval=self.settings.keyframe_min_interval,
        )
        source.source_type = self._source_types.get(transceiver.mid or "", "camera")
        self.sources[stream.ssrc] = source
        if stream.rtx_ssrc is not None:
            self.sources[stream.rtx_ssrc] = source
        twcc_id = stream.extensions.get(ext.TRANSPORT_WIDE_CC)
        if twcc_id is not None and self._twcc is None:
            self._twcc_id = twcc_id
            self._twcc = TransportFeedbackBuilder(self.rtcp_ssrc, stream.ssrc)
        self._on_source(source)

    def on_rtp(self, data: bytes, now: float) -> None:
        self.heard_at = now
        try:
            header = parse_rtp(data)
        except RtpError:
            self.malformed_rtp += 1
            return
        source = self.sources.get(header.ssrc)
        if source is None:
            self.unknown_ssrc += 1
            return
        if self._twcc is not None:
            value = header.extensions.get(self._twcc_id)  # type: ignore[arg-type]
            if value is not None and len(value) == 2:
                self._twcc.on_packet((value[0] << 8) | value[1], now)
        source.on_rtp(data, header, now)

    def on_rtcp(self, data: bytes, now: float) -> None:
        self.heard_at = now
        try:
            packets = rtcp.parse_rtcp(data)
        except rtcp.RtcpError:
            self.malformed_rtcp += 1
            return
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                source = self.sources.get(packet.ssrc)
                if source is not None and source.params.ssrc == packet.ssrc:
                    source.on_sender_report(packet, now)

    @property
    def media_sources(self) -> list[MediaSource]:
        return list({id(s): s for s in self.sources.values()}.values())

    def tick(self, now: float) -> None:
        for source in self.media_sources:
            source.tick(now)
        if self._twcc is not None and self.raw is not None:
            for packet in self._twcc.build():
                self.raw.send_rtcp(packet)

    def report(self, now: float) -> None:
        if self.raw is None:
            return
        sources = self.media_sources
        blocks = [b for b in (s.receiver_report(now) for s in sources) if b is not None]
        if not blocks:
            return
        packet = rtcp.build_rr(rtcp.ReceiverReport(self.rtcp_ssrc, blocks[:31]))
        video = [s.params.ssrc for s in sources if s.kind == "video"]
        if video:
            packet += rtcp.build_remb(self.rtcp_ssrc, self.settings.publisher_max_bitrate, video)
        self.raw.send_rtcp(packet)


class SubscriberPeer(_Peer):
    """The connection a client receives on: we offer, it answers."""

    tick_interval = 0.25  # bandwidth allocation; reports every second
    role = "subscribe"

    def __init__(
        self,
        send_offer: Callable[[str], Awaitable[None]],
        settings: PeerSettings,
        context: str = "",
    ) -> None:
        super().__init__(settings, context)
        self._send_offer = send_offer
        self.downtracks: dict[str, DownTrack] = {}  # by track id
        self.subscriptions: dict[str, Subscription] = {}  # video tracks, by track id
        self._by_ssrc: dict[int, DownTrack] = {}
        self._transceivers: dict[str, RTCRtpTransceiver] = {}
        self._cname: str | None = None
        self._negotiating = False
        self._dirty = False
        self._ice_restart_wanted = False
        self._ice_restart_offered = False
        self.offers_sent = 0
        #: when the outstanding offer went out
        self._offered_at: float | None = None
        self.congestion = SendSideCongestion()
        #: what the client's NACKs may cost, whether or not transport-cc is negotiated
        self.budget = RetransmissionBudget(
            settings.retransmission_ratio,
            settings.nack_items_per_packet,
            settings.nack_items_per_second,
        )
        #: what the allocator last had to share (bits/s), for stats
        self.available: float | None = None
        #: the allocation policy (pause debounce, holds, probing), fed every tick
        self.allocator = DownlinkAllocator()
        self._probe_task: asyncio.Task[None] | None = None
        #: bits/s of video forwarded (retransmissions and probes included) over the last
        #: VIDEO_BITRATE_WINDOW
        self.video_bitrate = 0
        self._video_bytes = 0
        self._video_bytes_at: float | None = None

    def add(self, source: MediaSource, stream_id: str, subscription: Subscription | None) -> None:
        if source.track_id in self._transceivers or self.closed:
            return
        if subscription is not None:
            self.subscriptions[source.track_id] = subscription

        def on_send(binding: plane.SendBinding) -> None:
            try:  # called from aiortc's connection task: nothing may escape
                self._bind(source, binding, transceiver)
            except Exception:
                faults.record("bind", f"{self.context} of {source.track_id}")

        transceiver = plane.add_send_transceiver(
            self.pc,
            source.kind,
            source.params.mime_type,
            dict(source.params.parameters),
            stream_id=stream_id,
            track_id=source.track_id,
            on_send=on_send,
        )
        self._transceivers[source.track_id] = transceiver
        self._dirty = True

    def remove(self, track_id: str) -> None:
        self.subscriptions.pop(track_id, None)
        self.allocator.forget(track_id)
        transceiver = self._transceivers.pop(track_id, None)
        downtrack = self.downtracks.pop(track_id, None)
        if downtrack is not None:
            downtrack.closed = True
            downtrack.source.detach(downtrack)
            self._by_ssrc = {k: v for k, v in self._by_ssrc.items() if v is not downtrack}
        if transceiver is not None and not self.closed:
            transceiver.direction = "inactive"
            self._dirty = True

    def _bind(
        self, source: MediaSource, binding: plane.SendBinding, transceiver: RTCRtpTransceiver
    ) -> None:
        if source.track_id not in self._transceivers:
            return  # removed while negotiating
        raw = self._ensure_transport(transceiver)
        self._cname = binding.cname
        downtrack = DownTrack(
            source,
            ssrc=binding.ssrc,
            payload_type=binding.payload_type,
            send=raw.send_rtp,
            rtx_ssrc=binding.rtx_ssrc,
            rtx_payload_type=binding.rtx_payload_type,
        )
        downtrack.context = f"{self.context} of {source.track_id}"
        downtrack.budget = self.budget
        twcc = binding.extensions.get(ext.TRANSPORT_WIDE_CC)
        if twcc is not None:
            downtrack.congestion = self.congestion
            downtrack.twcc_id = twcc
        if downtrack.selector is not None:
            # from the first keyframe on (the lower chain can only start at one)
            downtrack.selector.keep_lower_chain = self.settings.bandwidth_estimation
        self.downtracks[source.track_id] = downtrack
        self._by_ssrc[binding.ssrc] = downtrack
        now = time.monotonic()
        subscription = self.subscriptions.get(source.track_id)
        if subscription is not None:
            subscription.bind(downtrack, now)
        source.attach(downtrack, now)

    async def negotiate(self) -> None:
        """Send a new offer if anything changed (one offer outstanding at a time)."""
        if self._negotiating or not self._dirty or self.closed:
            return
        self._negotiating = True
        self._dirty = False
        if self._ice_restart_wanted:
            self._ice_restart_wanted = False
            if self.ice.connected:  # else it failed meanwhile: the participant is leaving
                await self.ice.begin()
                self._ice_restart_offered = True
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        self.offers_sent += 1
        now = time.monotonic()
        self._offered_at = now
        self.start_setup(now)  # every offer must be answered in time, the first connected
        await self._send_offer(
            plane.munge_sdp(self.pc.localDescription.sdp, self.settings.start_bitrate_kbps)
        )

    async def answer(self, answer_sdp: str) -> None:
        if not self._negotiating:
            raise ValueError("no subscriber offer is outstanding")
        plane.check_subscribe_answer(answer_sdp, self.settings.sdp_limits, self.pc)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        self._negotiating = False
        self._watch_setup()
        if self._ice_restart_offered:
            self._ice_restart_offered = False
            remote = plane.remote_ice(answer_sdp)
            if remote is not None:
                await self.ice.set_remote(remote)
        if self._dirty:
            await self.negotiate()

    def setup_deadline(self) -> float | None:
        deadlines = [super().setup_deadline()]
        if self._negotiating and self._offered_at is not None:
            deadlines.append(self._offered_at + self.settings.setup_timeout)
        return min((d for d in deadlines if d is not None), default=None)

    def setup_overdue(self, now: float) -> str | None:
        timeout = self.settings.setup_timeout
        if self._negotiating and self._offered_at is not None and now >= self._offered_at + timeout:
            return f"the subscribe offer was not answered within {timeout:g} s"
        return super().setup_overdue(now)

    async def restart_ice(self) -> None:
        """Offer the client new ICE credentials (now, or after the outstanding offer); the
        session, the down tracks and their sequence numbers stay."""
        if not self.ice.connected:
            raise ValueError("the subscribe connection is not connected")
        self._ice_restart_wanted = True
        self._dirty = True
        await self.negotiate()

    def on_rtcp(self, data: bytes, now: float) -> None:
        self.heard_at = now
        # NACK items beyond the budget's caps are not even listed by the parser
        nack_limit, nack_reason = self.budget.nack_limit(now)
        try:
            packets = rtcp.parse_rtcp(data, nack_limit)
        except rtcp.RtcpError:
            self.malformed_rtcp += 1
            return
        by_ssrc = self._by_ssrc
        for packet in packets:
            if isinstance(packet, rtcp.Nack):
                self.budget.take_nack_items(len(packet.lost))
                downtrack = by_ssrc.get(packet.media_ssrc)
                if downtrack is not None:
                    downtrack.handle_rtcp(packet, now)
                    if packet.omitted:
                        downtrack.refuse(nack_reason, packet.omitted)
            elif isinstance(packet, (rtcp.ReceiverReport, rtcp.SenderReport)):
                for block in packet.reports:
                    downtrack = by_ssrc.get(block.ssrc)
                    if downtrack is not None:
                        downtrack.handle_rtcp(packet, now)
                        if downtrack.rtt is not None:
                            self.congestion.on_rtt(downtrack.rtt)
            elif isinstance(packet, rtcp.Pli):
                downtrack = by_ssrc.get(packet.media_ssrc)
                if downtrack is not None:
                    downtrack.handle_rtcp(packet, now)
            elif isinstance(packet, rtcp.Fir):
                for ssrc, _ in packet.entries:
                    downtrack = by_ssrc.get(ssrc)
                    if downtrack is not None:
                        downtrack.handle_rtcp(packet, now)
            elif isinstance(packet, rtcp.Remb):
                self.congestion.on_remb(packet.bitrate, now)
                for ssrc in packet.ssrcs:
                    downtrack = by_ssrc.get(ssrc)
                    if downtrack is not None:
                        downtrack.handle_rtcp(packet, now)
            elif isinstance(packet, rtcp.TransportFeedback):
                before = self.congestion.estimate
                self.congestion.on_transport_feedback(packet.fci, now)
                after = self.congestion.estimate
                if self.settings.bandwidth_estimation and reallocate_now(before, after):
                    # a sharp fall (a sudden drop): the layers follow now, not at the tick
                    self.allocate(now)

    def tick(self, now: float) -> None:
        budget = self.budget
        settings = self.settings
        budget.ratio = settings.retransmission_ratio  # the room's policy may change live
        budget.items_per_packet = settings.nack_items_per_packet
        budget.items_per_second = settings.nack_items_per_second
        budget.refill(sum(d.bytes_sent for d in self.downtracks.values()), now)
        if self._video_bytes_at is None or now - self._video_bytes_at >= VIDEO_BITRATE_WINDOW:
            self._measure_video(now)
        if self.settings.bandwidth_estimation and self.congestion.estimate is not None:
            self.congestion.refill_rtx_allowance(now)
        else:
            self.congestion.rtx_allowance = math.inf
        self.allocate(now)

    def _measure_video(self, now: float) -> None:
        video_bytes = sum(
            d.bytes_sent + d.retransmitted_bytes
            for d in self.downtracks.values()
            if d.source.kind == "video"
        )
        if self._video_bytes_at is not None and now > self._video_bytes_at:
            self.video_bitrate = int(
                8 * (video_bytes - self._video_bytes) / (now - self._video_bytes_at)
            )
        self._video_bytes, self._video_bytes_at = video_bytes, now

    def allocate(self, now: float) -> None:
        """Share the downlink estimate (and the policy's cap) among the videos: the
        allocator decides, this applies its levels and starts the probe it asks for."""
        estimate = self.congestion.estimate if self.settings.bandwidth_estimation else None
        for downtrack in self.downtracks.values():
            if downtrack.selector is not None:
                # a drop of the estimate must be able to lower the spatial layer at once
                downtrack.selector.keep_lower_chain = self.settings.bandwidth_estimation
        cap = self.settings.subscriber_max_bitrate
        subscriptions = list(self.subscriptions.values())
        if estimate is None and cap is None:  # nothing to share: no level is limited
            self.available = None
            for subscription in subscriptions:
                subscription.set_bandwidth(None, now)
            return
        demands = []
        for subscription in subscriptions:
            ceiling = subscription.ceiling(now)
            if ceiling.paused:
                continue
            current = subscription.current_level()
            priority = self.settings.priorities.get(subscription.source.source_type, 1)
            demands.append(
                Demand(
                    subscription.track_id,
                    priority,
                    subscription.levels(now),
                    ceiling.spatial,
                    ceiling.temporal,
                    current,
                )
            )
        link = None
        if estimate is not None:
            estimator = self.congestion.estimator
            link = Link(
                estimate,
                estimator.state == "overusing",
                estimator.loss_ratio,
                estimator.acknowledged_sample,
            )
        decision = self.allocator.allocate(
            now,
            demands,
            link=link,
            cap=cap,
            headroom=self.settings.bandwidth_headroom,
            states=self._video_states(),
            probing=self._probe_task is not None and not self._probe_task.done(),
        )
        self.available = decision.available
        if decision.probe is not None:
            self._probe_task = asyncio.ensure_future(self._run_probe(decision.probe))
        for subscription in subscriptions:
            key = subscription.track_id
            if key not in decision.kept:
                subscription.set_bandwidth(decision.levels.get(key), now, decision.usable)

    def _video_states(self) -> dict[str, VideoState]:
        """What each video has from the bandwidth, and its hold, for the allocator."""
        return {
            key: VideoState(
                subscription.bandwidth,
                subscription.bandwidth_down_at,
                subscription.up_hold,
                subscription.available_at_down,
            )
            for key, subscription in self.subscriptions.items()
        }

    def metrics(self) -> dict[str, float | int | None]:
        """Seed 004's names: the downlink estimate, what is forwarded, loss, round trip."""
        downtracks = list(self.downtracks.values())
        rtts = [d.rtt for d in downtracks if d.rtt is not None]
        if self.congestion.feedback_seen:
            loss = self.congestion.estimator.loss_ratio
        else:
            fractions = [d.remote_fraction_lost / 256 for d in downtracks]
            loss = max(fractions) if fractions else 0.0
        return {
            "downloadRate": self.congestion.estimate,
            "videoBitrate": self.video_bitrate,
            "loss": round(loss, 4),
            "rtt": round(sum(rtts) / len(rtts), 4) if rtts else None,
        }

    def estimator_state(self) -> dict[str, Any]:
        """The estimator's parts, for operators (and the bandwidth benchmark)."""
        estimator = self.congestion.estimator
        return {
            "delay_based": estimator.delay_based_estimate,
            "loss_based": estimator.loss_based_estimate,
            "acknowledged": estimator.acknowledged_bitrate,
            "standing_delay": round(estimator.standing_delay, 4),
            "state": estimator.state,
            "loss": round(estimator.loss_ratio, 4),
            "probes": self.allocator.probe.probes,
            "probe_successes": self.allocator.probe.successes,
            "last_probe": self.allocator.probe.last_result,
            "rtx_skipped": sum(d.retransmissions_skipped for d in self.downtracks.values()),
        }

    async def _run_probe(self, rate: int) -> None:
        """Send one probe cluster: ``rate`` (padding on top of the media) for
        PROBE_CLUSTER_DURATION, every packet tagged; then read from the feedback what the
        link carried, and let the allocator tell what that proved (the estimate raised to
        it, holds ended)."""
        congestion = self.congestion
        estimator = congestion.estimator
        videos = [d for d in self.downtracks.values() if d.source.kind == "video"]
        padding_rate = max(0, rate - self.video_bitrate)
        cluster = self.allocator.probe.cluster
        # at least PROBE_MIN_PACKETS packets of ~1200 bytes: at low rates a shaper's burst
        # allowance would otherwise pass most of a short cluster at once
        duration = max(PROBE_CLUSTER_DURATION, PROBE_MIN_PACKETS * 1200 * 8 / max(rate, 1))
        duration = min(duration, 0.3)
        step = duration / 6
        start = time.monotonic()
        budget = 0.0
        result = None
        try:
            congestion.probe_cluster = cluster
            while videos and time.monotonic() - start < duration and not self.closed:
                budget += padding_rate * step / 8
                now = time.monotonic()
                for downtrack in videos:
                    while budget > 0:
                        sent = downtrack.send_padding(now)
                        if not sent:
                            break
                        budget -= sent
                await asyncio.sleep(step)
            congestion.probe_cluster = -1
            # the feedback for the cluster's last packets
            await asyncio.sleep(max(0.2, 2 * estimator.rtt))
            now = time.monotonic()
            result = estimator.probe_result(cluster)
            outcome = self.allocator.finish_probe(now, result, rate, self._video_states())
            if outcome.proven is not None:
                estimator.on_probe_result(outcome.proven, now)  # ignored if below the estimate
            for key in outcome.released:
                subscription = self.subscriptions.get(key)
                if subscription is not None:
                    subscription.bandwidth_down_at = -math.inf  # the hold ends
        except asyncio.CancelledError:
            self.allocator.abandon_probe()
        except Exception:
            self.allocator.abandon_probe()
            faults.record("probe", self.context)
        finally:
            congestion.probe_cluster = -1

    def report(self, now: float) -> None:
        for subscription in list(self.subscriptions.values()):
            subscription.update(now)
        if self.raw is None:
            return
        out = b""
        for downtrack in list(self.downtracks.values()):
            sr = downtrack.sender_report(now)
            if sr is None:
                continue
            out += rtcp.build_sr(sr)
            if self._cname:
                out += rtcp.build_sdes_cname(downtrack.ssrc, self._cname)
            if len(out) > 1000:
                self.raw.send_rtcp(out)
                out = b""
        if out:
            self.raw.send_rtcp(out)

    async def close(self) -> None:
        for track_id in list(self.downtracks):
            downtrack = self.downtracks.pop(track_id)
            downtrack.closed = True
            downtrack.source.detach(downtrack)
        self._by_ssrc.clear()
        await super().close()
