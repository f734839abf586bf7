"""What both peer connections of a participant share: their settings, the aiortc peer
connection and its raw transport, the setup deadline, liveness and the tick loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport

from ... import faults
from ...forwarding.rtx_budget import (
    NACK_ITEMS_PER_PACKET,
    NACK_ITEMS_PER_SECOND,
    RETRANSMISSION_RATIO,
)
from ...sdp.limits import SdpLimits
from .. import aiortc_plane as plane

logger = logging.getLogger(__name__)

TICK_INTERVAL = 0.05
REPORT_INTERVAL = 1.0


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


class Peer:
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
