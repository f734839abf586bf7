"""ICE restarts in place, which aiortc does not do (:class:`IceRestarter`)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aioice.utils
import aiortc.sdp
from aiortc import RTCPeerConnection
from aiortc.rtcicetransport import RTCIceCandidate, RTCIceTransport, candidate_to_aioice

from .peerconnection import dtls_transport_of
from .receive import FALLBACK_PAIR

logger = logging.getLogger(__name__)

# What aiortc 1.16 does with a re-offer (or answer) carrying a new ice-ufrag/ice-pwd:
# ``setRemoteDescription`` stores the new credentials in ``__remoteIce`` but nothing reads
# them again: ``RTCIceTransport.start`` returns at once when it has run before, so the aioice
# Connection keeps the old remote credentials and its finished check list; the new candidates
# are dropped (after an ``a=end-of-candidates``) or paired but never checked; and the answer
# repeats the old local ufrag/pwd.  Chromium then runs its new checks against credentials we
# reject (401) and stays on the pre-restart pair as long as that pair works: no restart.
#
# ``IceRestarter`` restarts the one (BUNDLE) ICE transport of a peer connection in place:
# new local credentials, the remote ones from the new SDP, a fresh check list over the same
# host sockets, and ``Connection.connect()`` run again (consent freshness restarts with it).
# The RTCIceTransport, the RTCDtlsTransport and its SRTP sessions, the transceivers and the
# SFU's sink are untouched, so published streams keep their SSRCs and MediaSources and
# nobody downstream renegotiates.  During the checks, what we send goes on the pre-restart
# pair, and what arrives on any pair is received.  A restart that does not nominate a pair
# within ``IceRestarter.timeout`` closes the connection (the peer connection fails).

#: seconds an ICE restart may take, from our new credentials to a nominated pair
ICE_RESTART_TIMEOUT = 20.0


@dataclass(frozen=True)
class RemoteIce:
    """The ICE parameters of a remote SDP (its first media section: we bundle)."""

    ufrag: str
    pwd: str
    candidates: list[RTCIceCandidate]
    complete: bool


def remote_ice(sdp: str) -> RemoteIce | None:
    try:
        description = aiortc.sdp.SessionDescription.parse(sdp)
    except Exception:
        return None
    for media in description.media:
        if media.ice is not None and media.ice.usernameFragment and media.ice.password:
            return RemoteIce(
                media.ice.usernameFragment,
                media.ice.password,
                list(media.ice_candidates),
                bool(media.ice_candidates_complete),
            )
    return None


class IceRestarter:
    """ICE restarts of one peer connection (see above)."""

    #: seconds a restart may take (the default for every restarter; a test may shorten it)
    timeout: float = ICE_RESTART_TIMEOUT

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        #: restarts that nominated a new pair
        self.restarts = 0
        #: a restart failed (and closed the connection)
        self.failed = False
        self._task: asyncio.Task[None] | None = None
        self._remote: asyncio.Future[RemoteIce] | None = None

    def _ice(self) -> RTCIceTransport | None:
        dtls = dtls_transport_of(self.pc)
        return dtls.transport if dtls is not None else None

    @property
    def connected(self) -> bool:
        """ICE has completed once and the transport is not closed or failed."""
        ice = self._ice()
        return ice is not None and ice.state == "completed"

    @property
    def restarting(self) -> bool:
        return self._task is not None and not self._task.done()

    def local_ufrag(self) -> str | None:
        ice = self._ice()
        return ice._connection.local_username if ice is not None else None

    def is_restart(self, remote: RemoteIce | None) -> bool:
        """Whether a remote offer restarts ICE (new credentials); ``ValueError`` if it does
        before ICE ever completed (nothing to keep yet: the client should start over)."""
        ice = self._ice()
        if remote is None or ice is None:
            return False
        connection = ice._connection
        if connection.remote_username is None:
            return False  # the first offer, or our own restart waiting for the answer
        changed = (remote.ufrag, remote.pwd) != (
            connection.remote_username,
            connection.remote_password,
        )
        if changed and ice.state != "completed":
            raise ValueError(f"ICE restart while ICE is {ice.state}")
        return changed

    async def begin(self, remote: RemoteIce | None = None) -> None:
        """New local credentials (the next local SDP carries them) and a fresh check list;
        the checks start once the remote credentials are known: now, or at ``set_remote``."""
        ice = self._ice()
        if ice is None or ice.state != "completed":
            raise ValueError("ICE has not completed: there is nothing to restart")
        await self._cancel_checks()
        connection = ice._connection
        _detach_from_nomination(ice)
        previous = connection._nominated.get(1) or getattr(connection, FALLBACK_PAIR, None)
        setattr(connection, FALLBACK_PAIR, previous)
        consent = connection._query_consent_task
        if consent is not None and not consent.done():
            consent.cancel()
        connection._query_consent_task = None
        for pair in connection._check_list:
            if pair.task is not None:
                pair.task.cancel()
        connection._local_username = aioice.utils.random_string(4)
        connection._local_password = aioice.utils.random_string(22)
        connection.remote_username = None
        connection.remote_password = None
        connection._check_list = []
        connection._check_list_done = False
        connection._check_list_state = asyncio.Queue()
        connection._early_checks.clear()
        connection._early_checks_done = False
        connection._nominated.clear()
        connection._nominating.clear()
        connection._remote_candidates = []
        connection._remote_candidates_end = False
        # aiortc adds no candidates from now on: we add the restart's, from its SDP
        ice.iceGatherer._remote_candidates_end = True
        self._remote = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._run(ice, self._remote))
        if remote is not None:
            await self.set_remote(remote)

    async def set_remote(self, remote: RemoteIce) -> None:
        """The remote side's new credentials and candidates (from its offer or answer)."""
        ice = self._ice()
        if self._remote is None or self._remote.done() or ice is None:
            return
        connection = ice._connection
        connection.remote_username = remote.ufrag
        connection.remote_password = remote.pwd
        for candidate in remote.candidates:
            await connection.add_remote_candidate(candidate_to_aioice(candidate))
        if remote.complete:
            await connection.add_remote_candidate(None)
        self._remote.set_result(remote)

    async def _run(self, ice: RTCIceTransport, remote: asyncio.Future[RemoteIce]) -> None:
        connection = ice._connection
        try:
            async with asyncio.timeout(self.timeout):
                await remote
                await connection.connect()
        except (TimeoutError, ConnectionError) as exc:
            reason = str(exc) or type(exc).__name__
            logger.warning("ICE restart failed (%s): closing the connection", reason)
            self.failed = True
            setattr(connection, FALLBACK_PAIR, None)
            await connection.close()  # RTCIceTransport goes "failed"
            return
        setattr(connection, FALLBACK_PAIR, None)
        connection._sfu_checked_at = time.monotonic()  # type: ignore[attr-defined]  # alive
        self.restarts += 1
        logger.info("ICE restart: nominated %s", connection._nominated.get(1))

    async def close(self) -> None:
        await self._cancel_checks()

    async def _cancel_checks(self) -> None:
        """Stop the restart's connectivity checks, if running, and wait until they have."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def _detach_from_nomination(ice: RTCIceTransport) -> None:
    """Make the DTLS transport's receive and send independent of ``Connection._nominated``,
    which a restart empties until it nominates again: aioice's ``recv`` raises (and DTLS
    closes) when no pair is nominated, even though datagrams keep arriving."""
    if getattr(ice, "_sfu_detached", False):
        return
    connection = ice._connection

    async def recv() -> bytes:
        item = await connection._queue.get()
        if item is None:
            raise ConnectionError("Connection lost while receiving data")
        data: bytes = item[0]
        return data

    async def send(data: bytes) -> None:
        pair = connection._nominated.get(1) or getattr(connection, FALLBACK_PAIR, None)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        await pair.protocol.send_data(data, pair.remote_addr)

    ice._recv = recv
    ice._send = send
    ice._sfu_detached = True  # type: ignore[attr-defined]
