"""Trickle ICE and ICE restarts from SDP fragments (WHIP and WHEP PATCH requests), applied
to a peer connection: remote candidates through ``RTCPeerConnection.addIceCandidate``, a
restart through :class:`~.restart.IceRestarter` (aiortc restarts nothing itself)."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from ...sdp.fragment import IceFragment
from .peerconnection import dtls_transport_of
from .restart import IceRestarter, RemoteIce


@dataclass(frozen=True)
class LocalIce:
    """What a restart answers with: our new credentials and candidates."""

    ufrag: str
    pwd: str
    mid: str | None
    candidates: list[str]


def _first_mid(pc: RTCPeerConnection) -> str | None:
    for transceiver in pc.getTransceivers():
        return transceiver.mid
    return None


async def add_candidates(pc: RTCPeerConnection, fragment: IceFragment) -> int:
    """The fragment's candidates (of the bundle transport, whatever mid they name), and its
    end of candidates; ValueError for a candidate that does not parse."""
    mid = _first_mid(pc)
    if mid is None:
        raise ValueError("the session has no media section")
    parsed = []
    for _, value in fragment.candidates:
        try:
            candidate = candidate_from_sdp(value)
        except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts its format
            raise ValueError(f"a candidate does not parse: {value[:60]!r}") from exc
        candidate.sdpMid = mid  # max-bundle: one transport
        parsed.append(candidate)
    for candidate in parsed:
        await pc.addIceCandidate(candidate)
    if fragment.complete:
        dtls = dtls_transport_of(pc)
        if dtls is not None:
            await dtls.transport.addRemoteCandidate(None)
    return len(parsed)


async def restart(
    pc: RTCPeerConnection, restarter: IceRestarter, fragment: IceFragment
) -> LocalIce:
    """Restart ICE with the fragment's credentials and candidates; ValueError when ICE has
    not completed yet (nothing to restart) or the fragment has no credentials."""
    if fragment.ufrag is None or fragment.pwd is None:
        raise ValueError("an ICE restart needs ice-ufrag and ice-pwd")
    try:
        candidates = [candidate_from_sdp(value) for _, value in fragment.candidates]
    except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts its format
        raise ValueError("a candidate does not parse") from exc
    await restarter.begin(RemoteIce(fragment.ufrag, fragment.pwd, candidates, fragment.complete))
    dtls = dtls_transport_of(pc)
    assert dtls is not None  # begin() checked ICE
    ice = dtls.transport
    connection = ice._connection
    return LocalIce(
        connection.local_username,
        connection.local_password,
        _first_mid(pc),
        [candidate_to_sdp(c) for c in ice.iceGatherer.getLocalCandidates()],
    )


def remote_ufrag(pc: RTCPeerConnection) -> str | None:
    """The remote ice-ufrag in use (None before the remote description)."""
    dtls = dtls_transport_of(pc)
    if dtls is None:
        return None
    value = dtls.transport._connection.remote_username
    return value if isinstance(value, str) else None
