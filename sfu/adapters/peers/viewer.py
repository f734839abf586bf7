"""A receive connection that answers (WHEP): the client offers one receive-only m-line per
kind, and each plays one publisher's track of that kind: the publisher the viewer follows
(named, or else the one that published last), switched without renegotiation when it goes.

Everything else is :class:`~.subscriber.SubscriberPeer`'s: down tracks, layer selection,
bandwidth estimation from the client's transport-wide feedback, NACKs, keyframe requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCRtpTransceiver, RTCSessionDescription

from ... import faults
from ...forwarding.downtrack import DownTrack
from ...forwarding.munger import RtpMunger
from ...forwarding.source import MediaSource
from ...forwarding.subscription import Subscription
from .. import aiortc_plane as plane
from .base import PeerSettings
from .subscriber import SubscriberPeer

logger = logging.getLogger(__name__)


@dataclass
class _Candidate:
    source: MediaSource
    publisher_id: str
    subscription: Subscription | None
    order: int


@dataclass
class _Slot:
    kind: str
    transceiver: RTCRtpTransceiver
    #: the codec negotiated for it (a source of another codec cannot play in it)
    codec: str | None = None
    binding: plane.SendBinding | None = None
    playing: _Candidate | None = None
    downtrack: DownTrack | None = None


async def _no_offer(sdp: str) -> None:
    raise RuntimeError("a viewer's connection is never offered to")


class ViewerPeer(SubscriberPeer):
    """The connection a WHEP viewer receives on: it offers, we answer."""

    def __init__(
        self,
        settings: PeerSettings,
        context: str = "",
        follows: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(_no_offer, settings, context)
        #: whether the viewer follows a publisher (by participant id); None: the latest one
        self.follows = follows
        self._slots: dict[str, _Slot] = {}
        self._candidates: dict[str, _Candidate] = {}  # by track id
        self._order = 0
        #: what the viewer asked of its video (the layer extension), kept across switches
        self.pin: tuple[int, int] | None = None
        self.max_size: tuple[int, int] | None = None
        #: publisher switches made without renegotiating
        self.switches = 0

    # -- the client's offer -----------------------------------------------------------------
    async def answer_offer(self, offer_sdp: str, video_codecs: list[str]) -> str:
        """Answer the client's offer: its first audio and first video m-line play (the rest
        stay inactive); the video's codec is the followed publisher's, else the first of
        ``video_codecs`` the client offers.  ValueError for an offer we cannot use."""
        plane.check_publish_offer(offer_sdp, self.settings.sdp_limits, self.pc)
        self.start_setup(time.monotonic())
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        playing = self._choose("video")
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            if kind in self._slots or kind not in ("audio", "video"):
                transceiver.direction = "inactive"
                continue
            slot = _Slot(kind, transceiver)
            if kind == "video":
                wanted = [playing.source.params.codec] if playing is not None else video_codecs
                allowed = [c for c in wanted if c in video_codecs] or video_codecs
                for codec in allowed:
                    try:
                        plane.restrict_answer_codecs(transceiver, [codec])
                    except ValueError:
                        continue
                    slot.codec = codec
                    break
                else:
                    raise ValueError(f"the offer has none of the video codecs {video_codecs}")
            transceiver.direction = "sendonly"
            sender = transceiver.sender
            sender._stream_id = "sfu"  # a=msid: the publisher behind it may change
            sender._track_id = kind

            def on_send(binding: plane.SendBinding, s: _Slot = slot) -> None:
                try:  # called from aiortc's connection task: nothing may escape
                    s.binding = binding
                    self._play(s)
                except Exception:
                    faults.record("bind", f"{self.context} {s.kind}")

            plane.take_over_sender(sender, on_send)
            self._slots[kind] = slot
        if not self._slots:
            raise ValueError("the offer has no audio or video m-line")
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._watch_setup()
        return plane.munge_sdp(self.pc.localDescription.sdp, self.settings.start_bitrate_kbps)

    # -- the room's tracks ------------------------------------------------------------------
    def add(self, source: MediaSource, stream_id: str, subscription: Subscription | None) -> None:
        if self.closed or source.track_id in self._candidates:
            return
        self._order += 1
        self._candidates[source.track_id] = _Candidate(source, stream_id, subscription, self._order)
        slot = self._slots.get(source.kind)
        if slot is not None:
            self._play(slot)

    def remove(self, track_id: str) -> None:
        candidate = self._candidates.pop(track_id, None)
        if candidate is None:
            return
        slot = self._slots.get(candidate.source.kind)
        if slot is not None and slot.playing is candidate:
            self._stop(slot)
            self._play(slot)

    async def negotiate(self) -> None:
        """Nothing to offer: the tracks change under the negotiated m-lines."""

    async def answer(self, answer_sdp: str) -> None:
        raise ValueError("a viewer's connection takes no answer")

    # -- which publisher plays --------------------------------------------------------------
    def _choose(self, kind: str, codec: str | None = None) -> _Candidate | None:
        """The track of ``kind`` to play: the followed publisher's (the latest it published),
        else the latest published of any publisher; of ``codec`` if given."""
        fitting = [
            c
            for c in self._candidates.values()
            if c.source.kind == kind and (codec is None or c.source.params.codec == codec)
        ]
        if self.follows is not None:
            fitting = [c for c in fitting if self.follows(c.publisher_id)]
        return max(fitting, key=lambda c: c.order, default=None)

    def _play(self, slot: _Slot) -> None:
        if slot.binding is None:
            return  # not connected yet: played when it is
        choice = self._choose(slot.kind, slot.codec)
        if choice is None or choice is slot.playing:
            return
        previous = slot.downtrack
        if slot.playing is not None:
            self._stop(slot)
        binding = slot.binding
        source = choice.source
        downtrack = self._new_downtrack(source, binding, slot.transceiver)
        if previous is not None:
            # the same outgoing stream goes on: numbers follow the last ones sent
            munger = RtpMunger((previous.munger.last_out_seq + 1) & 0xFFFF, 0)
            munger.last_out_ts = previous.munger.last_out_ts
            munger.rebase(source.params.clock_rate // 30)
            downtrack.munger = munger
            self.switches += 1
            logger.info("%s: now plays %s", self.context, source.track_id)
        slot.playing, slot.downtrack = choice, downtrack
        subscription = choice.subscription
        if subscription is not None:
            self.subscriptions[source.track_id] = subscription
            subscription.pin = self.pin
            if self.max_size is not None:
                subscription.window = self.max_size
        self._start(source, downtrack, binding.ssrc)

    def _stop(self, slot: _Slot) -> None:
        playing, downtrack = slot.playing, slot.downtrack
        slot.playing = None
        if playing is None:
            return
        track_id = playing.source.track_id
        self.subscriptions.pop(track_id, None)
        self.allocator.forget(track_id)
        self.downtracks.pop(track_id, None)
        self._sources.pop(track_id, None)
        if downtrack is not None:
            downtrack.closed = True
            playing.source.detach(downtrack)

    # -- the layer extension ----------------------------------------------------------------
    def video_subscription(self) -> Subscription | None:
        slot = self._slots.get("video")
        if slot is None or slot.playing is None:
            return None
        return slot.playing.subscription

    def select_layer(
        self, pin: tuple[int, int] | None, max_size: tuple[int, int] | None, now: float
    ) -> None:
        """The viewer's choice (kept for the publishers it plays next): a layer pinned, or
        a largest size (its window), or neither (automatic)."""
        self.pin, self.max_size = pin, max_size
        subscription = self.video_subscription()
        if subscription is None:
            return
        subscription.set_pin(pin[0] if pin else None, pin[1] if pin else None, now)
        if max_size is not None:
            subscription.set_window(max_size[0], max_size[1], now)
        elif subscription.window is not None:
            subscription.window = None
            subscription.update(now)
