"""The connection a client receives on: the SFU offers one send-only transceiver per
subscribed track, feeds it through a :class:`~sfu.forwarding.downtrack.DownTrack`, estimates
the downlink from the client's feedback and applies the allocator's decisions.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpTransceiver, RTCSessionDescription

from ... import faults
from ...allocation.allocator import Demand
from ...allocation.downlink import DownlinkAllocator, Link, VideoState, reallocate_now
from ...forwarding.congestion import SendSideCongestion
from ...forwarding.downtrack import DownTrack
from ...forwarding.extension_writer import ExtensionRemap
from ...forwarding.rtx_budget import RetransmissionBudget
from ...forwarding.source import MediaSource
from ...forwarding.subscription import Subscription
from ...rtp import extensions as ext
from ...rtp import rtcp
from .. import aiortc_plane as plane
from .base import Peer, PeerSettings

logger = logging.getLogger(__name__)

#: ``videoBitrate`` is what was sent over this window (seconds)
VIDEO_BITRATE_WINDOW = 0.5
#: how long a probe cluster is sent for (seconds): long enough for a few packets at low
#: rates and to get past a shaper's burst allowance, short enough not to flood the link
PROBE_CLUSTER_DURATION = 0.1
PROBE_MIN_PACKETS = 8


class SubscriberPeer(Peer):
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
        self._sources: dict[str, MediaSource] = {}  # ... and the sources they are attached to
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
        #: per track, bits/s over the same window: (media forwarded, everything sent:
        #: media, retransmissions and probes), for /stats
        self.track_rates: dict[str, tuple[int, int]] = {}
        self._track_bytes: dict[str, tuple[DownTrack, int, int]] = {}
        #: called once a second (with the sender reports), e.g. to observe the estimate
        self.on_report: Callable[[SubscriberPeer], None] | None = None
        #: the room's dominant speaker's video tracks: first among equal priorities
        self.speaker_tracks: frozenset[str] = frozenset()

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
        source = self._sources.pop(track_id, None)
        if downtrack is not None and source is not None:
            downtrack.closed = True
            source.detach(downtrack)
            self._by_ssrc = {k: v for k, v in self._by_ssrc.items() if v is not downtrack}
        if transceiver is not None and not self.closed:
            transceiver.direction = "inactive"
            self._dirty = True

    def _bind(
        self, source: MediaSource, binding: plane.SendBinding, transceiver: RTCRtpTransceiver
    ) -> None:
        if source.track_id not in self._transceivers:
            return  # removed while negotiating
        self._cname = binding.cname
        self._start(source, self._new_downtrack(source, binding, transceiver), binding.ssrc)

    def _new_downtrack(
        self, source: MediaSource, binding: plane.SendBinding, transceiver: RTCRtpTransceiver
    ) -> DownTrack:
        """A down track of ``source`` on ``transceiver``'s sender: its budget, its
        transport-wide sequence numbers and estimator, its header extensions' ids."""
        raw = self._ensure_transport(transceiver)
        downtrack = DownTrack(
            source,
            ssrc=binding.ssrc,
            payload_type=binding.payload_type,
            send=raw.send_rtp,
            rtx_ssrc=binding.rtx_ssrc,
            rtx_payload_type=binding.rtx_payload_type,
        )
        if ExtensionRemap.needed(binding.extensions, ext.SUBSCRIBER_EXTENSION_IDS):
            # the client's offer chose the ids (a WHEP viewer); the source builds the SFU's
            downtrack.remap_extensions = ExtensionRemap(
                binding.extensions, ext.SUBSCRIBER_EXTENSION_IDS
            )
        self._configure(downtrack, binding, source)
        return downtrack

    def _start(self, source: MediaSource, downtrack: DownTrack, ssrc: int) -> None:
        """``downtrack`` forwards ``source`` from now on (with its subscription, if any)."""
        self.downtracks[source.track_id] = downtrack
        self._sources[source.track_id] = source
        self._by_ssrc[ssrc] = downtrack
        now = time.monotonic()
        subscription = self.subscriptions.get(source.track_id)
        if subscription is not None:
            subscription.bind(downtrack, now)
        source.attach(downtrack, now)

    def _configure(
        self, downtrack: DownTrack, binding: plane.SendBinding, source: MediaSource
    ) -> None:
        downtrack.context = f"{self.context} of {source.track_id}"
        downtrack.budget = self.budget
        twcc = binding.extensions.get(ext.TRANSPORT_WIDE_CC)
        if twcc is not None:
            downtrack.congestion = self.congestion
            downtrack.twcc_id = twcc
            raw = self.raw
            if raw is not None and raw.after_flush is None:  # sends are batched: the
                # estimator gets their real send time at the flush, not the stamp's (up to a
                # turn of the loop earlier)
                self.congestion.unsent = []
                raw.after_flush = self.congestion.on_flushed
        # from the first keyframe on (the lower chain can only start at one)
        downtrack.keep_lower_chain = self.settings.bandwidth_estimation

    async def negotiate(self) -> None:
        """Send a new offer if anything changed (one offer outstanding at a time)."""
        if self._negotiating or not self._dirty or self.closed:
            return
        if self.pc.signalingState == "closed":  # the client closed it; we learn it next
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
        size = len(data)
        if (
            size >= 20
            and data[1] == rtcp.RTCP_RTPFB
            and (data[2] << 8 | data[3]) * 4 + 4 == size
            # V=2, FMT 15 (transport-wide feedback), without padding or with valid padding
            and (data[0] == 0x8F or (data[0] == 0xAF and 0 < data[-1] <= size - 4))
        ):
            # the usual datagram, twenty a second: one transport-wide feedback alone
            # (reduced-size RTCP, RFC 5506), its FCI (and padding, as the parser leaves it)
            # handed on without parsing into objects
            self._on_transport_feedback(data[12:], now)
            return
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
                self._on_transport_feedback(packet.fci, now)

    def _on_transport_feedback(self, fci: bytes, now: float) -> None:
        congestion = self.congestion
        before = congestion.estimate
        congestion.on_transport_feedback(fci, now)
        after = congestion.estimate
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
        """The video bitrate sent (all tracks), and each track's rates (every
        VIDEO_BITRATE_WINDOW: a few operations per track, nothing per packet)."""
        elapsed = 0.0 if self._video_bytes_at is None else now - self._video_bytes_at
        video_bytes = 0
        previous = self._track_bytes
        current: dict[str, tuple[DownTrack, int, int]] = {}
        rates: dict[str, tuple[int, int]] = {}
        for track_id, d in self.downtracks.items():
            media = d.bytes_sent
            total = media + d.retransmitted_bytes
            if d.source.kind == "video":
                video_bytes += total
            current[track_id] = (d, media, total)
            before = previous.get(track_id)
            if elapsed > 0 and before is not None and before[0] is d:
                rates[track_id] = (
                    int(8 * (media - before[1]) / elapsed),
                    int(8 * (total - before[2]) / elapsed),
                )
        if elapsed > 0:
            self.video_bitrate = int(8 * (video_bytes - self._video_bytes) / elapsed)
        self._video_bytes, self._video_bytes_at = video_bytes, now
        self._track_bytes, self.track_rates = current, rates

    def allocate(self, now: float) -> None:
        """Share the downlink estimate (and the policy's cap) among the videos: the
        allocator decides, this applies its levels and starts the probe it asks for."""
        estimate = self.congestion.estimate if self.settings.bandwidth_estimation else None
        for downtrack in self.downtracks.values():
            # a drop of the estimate must be able to lower the spatial layer at once
            downtrack.keep_lower_chain = self.settings.bandwidth_estimation
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
                    rank=1 if subscription.track_id in self.speaker_tracks else 0,
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

    def set_speaker(self, tracks: frozenset[str], now: float) -> None:
        """The room's dominant speaker's video ``tracks`` (changed, or published since):
        they go first among videos of their priority, from now.  The switches this causes
        leave no bandwidth hold (the link did not change), on either side."""
        if tracks == self.speaker_tracks:
            return
        changed = [
            s for k, s in self.subscriptions.items() if (k in tracks) != (k in self.speaker_tracks)
        ]
        self.speaker_tracks = tracks
        if not changed or self.closed:
            return
        for subscription in changed:
            subscription.release_hold()
        self.allocate(now)
        for subscription in changed:
            subscription.release_hold()

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
        """The ``stats`` signaling message's fields, in the client API's names (seed 004:
        ``downloadRate``, ``videoBitrate``, ``loss``, ``rtt``); :meth:`downlink` in
        ``/stats``'s."""
        downlink = self.downlink()
        return {
            "downloadRate": downlink["download_rate"],
            "videoBitrate": downlink["video_bitrate"],
            "loss": downlink["loss"],
            "rtt": downlink["rtt"],
        }

    def downlink(self) -> dict[str, float | int | None]:
        """The downlink estimate (bits/s), the video sent over the last VIDEO_BITRATE_WINDOW
        (bits/s), loss (0..1), round trip (s), in ``/stats``'s names (docs/stats.md)."""
        downtracks = list(self.downtracks.values())
        rtts = [d.rtt for d in downtracks if d.rtt is not None]
        if self.congestion.feedback_seen:
            loss = self.congestion.estimator.loss_ratio
        else:
            fractions = [d.remote_fraction_lost / 256 for d in downtracks]
            loss = max(fractions) if fractions else 0.0
        return {
            "download_rate": self.congestion.estimate,
            "video_bitrate": self.video_bitrate,
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
            "feedback_refused": self.congestion.refused_feedback,
            "feedback_malformed": self.congestion.malformed_feedback,
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
        if self.on_report is not None:
            try:
                self.on_report(self)
            except Exception:
                faults.record("metrics", self.context, now)
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
            self._sources.pop(track_id).detach(downtrack)
        self._by_ssrc.clear()
        await super().close()
