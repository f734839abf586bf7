"""The aiortc adapter: pinned versions, the internals it relies on, and what it negotiates.

If aiortc or aioice change under the pin, these tests fail loudly, before anything else.
"""

import inspect
import re
from pathlib import Path

import aioice.ice
import aioice.utils
import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

from sfu.adapters import aiortc_plane as plane

FIXTURES = Path(__file__).parent / "fixtures"


def test_pinned_versions() -> None:
    plane.check_versions()
    # the package says which versions it is written against
    assert plane.__doc__ is not None
    assert f"aiortc {plane.AIORTC_VERSION} and aioice {plane.AIOICE_VERSION}" in plane.__doc__


def test_the_internals_the_adapter_uses_are_still_there() -> None:
    # methods we hook or call
    for name in ("_handle_rtp_data", "_handle_rtcp_data", "_set_state", "_setup_srtp"):
        assert hasattr(RTCDtlsTransport, name), name
    assert "_tx_srtp" in inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert "self._state" in inspect.getsource(RTCDtlsTransport._set_state)
    assert list(inspect.signature(RTCDtlsTransport._handle_rtp_data).parameters) == [
        "self",
        "data",
        "arrival_time_ms",
    ]
    # the payload types aiortc keeps from a remote offer are read at call time
    assert "rtp.DYNAMIC_PAYLOAD_TYPES" in inspect.getsource(
        aiortc.rtcpeerconnection.find_common_codecs
    )
    assert "is_codec_compatible(" in inspect.getsource(aiortc.rtcpeerconnection.find_common_codecs)
    # answers are built from transceiver._codecs, set when the remote offer is applied
    assert "transceiver._codecs = common" in inspect.getsource(
        aiortc.rtcpeerconnection.RTCPeerConnection.setRemoteDescription
    )
    assert "create_media_description_for_transceiver(" in inspect.getsource(
        aiortc.rtcpeerconnection.RTCPeerConnection.createAnswer
    )
    assert "transceiver._codecs" in inspect.getsource(
        aiortc.rtcpeerconnection.create_media_description_for_transceiver
    )
    # sender/receiver attributes we read or set
    src = inspect.getsource(RTCRtpSender.__init__)
    for attr in ("self._ssrc", "self._rtx_ssrc", "self._stream_id"):
        assert attr in src, attr
    assert "sender._track_id" in inspect.getsource(
        aiortc.rtcpeerconnection.create_media_description_for_transceiver
    )
    # the ICE connection and its nominated pairs
    conn_src = inspect.getsource(aioice.ice.Connection)
    assert "self._nominated: dict[int, CandidatePair]" in conn_src
    assert "self._protocols" in conn_src
    assert list(inspect.signature(aioice.ice.Connection.get_component_candidates).parameters)[
        :3
    ] == ["self", "component", "addresses"]
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    )
    # authenticated incoming checks reach check_incoming (the liveness hook)
    assert list(inspect.signature(aioice.ice.Connection.check_incoming).parameters) == [
        "self",
        "message",
        "addr",
        "protocol",
    ]
    assert "self.check_incoming(message, addr, protocol)" in inspect.getsource(
        aioice.ice.Connection.request_received
    )
    assert "self._connection" in inspect.getsource(aiortc.rtcicetransport.RTCIceTransport)
    # probes: a binding request built and sent as consent freshness does
    assert list(inspect.signature(aioice.ice.Connection.build_request).parameters) == [
        "self",
        "pair",
        "nominate",
    ]
    assert "self.remote_password" in inspect.getsource(aioice.ice.Connection.query_consent)
    assert {"integrity_key", "retransmissions"} <= set(
        inspect.signature(aioice.ice.StunProtocol.request).parameters
    )
    # the SDP bounds count the remote candidates a connection holds (deduplicated by
    # address, the list emptied by an ICE restart)
    assert "self._remote_candidates.append(remote_candidate)" in inspect.getsource(
        aioice.ice.Connection._add_remote_candidate
    )
    candidate = aioice.Candidate("f", 1, "udp", 1, "127.0.0.1", 9, "host")
    assert (candidate.host, candidate.port, candidate.transport) == ("127.0.0.1", 9, "udp")


def test_the_internals_the_ice_restart_uses_are_still_there() -> None:
    """IceRestarter resets an aioice Connection in place and reruns ``connect()``."""
    gatherer = RTCIceGatherer(iceServers=[])
    connection = gatherer._connection
    # the state a restart resets, with the types it puts back
    for attr, kind in (
        ("_local_username", str),
        ("_local_password", str),
        ("_check_list", list),
        ("_check_list_done", bool),
        ("_early_checks_done", bool),
        ("_nominated", dict),
        ("_nominating", set),
        ("_remote_candidates", list),
        ("_remote_candidates_end", bool),
    ):
        assert isinstance(getattr(connection, attr), kind), attr
    assert type(connection._check_list_state).__name__ == "Queue"
    assert type(connection._early_checks).__name__ == "deque"
    assert connection._query_consent_task is None
    assert connection.remote_username is None and connection.remote_password is None
    # local credentials are read from the private fields (the next SDP carries them)
    assert gatherer.getLocalParameters().usernameFragment == connection._local_username
    assert gatherer.getLocalParameters().password == connection._local_password
    assert len(aioice.utils.random_string(4)) == 4
    # connect() reruns from that state: pairs, early checks, checks, then consent freshness
    connect = inspect.getsource(aioice.ice.Connection.connect)
    for needle in (
        "self._early_checks_done = True",
        "self._check_list_state.get()",
        "self._query_consent_task = asyncio.create_task(self.query_consent())",
    ):
        assert needle in connect, needle
    # incoming checks are accepted while the remote ufrag is unknown, deferred until connect()
    assert "self.remote_username in (None, remote_username)" in inspect.getsource(
        aioice.ice.Connection._valid_username
    )
    assert "if not self._early_checks_done:" in inspect.getsource(
        aioice.ice.Connection.request_received
    )
    # completion is "a pair nominated for every component": hence the pair is set aside
    assert "self._nominated and len(self._nominated)" in inspect.getsource(
        aioice.ice.Connection._check_list_maybe_complete
    )
    # received datagrams go through _queue whatever the pair; recv() wants a nominated pair
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(
        aioice.ice.Connection.data_received
    )
    assert "if not len(self._nominated):" in inspect.getsource(aioice.ice.Connection.recvfrom)
    assert "self._queue.put_nowait(None)" in inspect.getsource(aioice.ice.Connection.close)
    # RTCIceTransport: DTLS receives and sends through its _recv/_send attributes
    transport = RTCIceTransport(gatherer)
    assert transport._recv == connection.recv and transport._send == connection.send
    dtls = inspect.getsource(RTCDtlsTransport)
    assert "self.transport._recv()" in dtls and "self.transport._send(" in dtls
    # start() runs once (hence the restart runs connect() itself); a closed Connection
    # makes a completed transport "failed"
    start = inspect.getsource(RTCIceTransport.start)
    assert "if self.__start is not None:" in start
    assert "self._connection.remote_username = remoteParameters.usernameFragment" in start
    assert 'self.__setState("failed")' in inspect.getsource(RTCIceTransport._monitor)
    # aiortc adds no remote candidates once the gatherer saw end-of-candidates
    assert "if not self.__iceGatherer._remote_candidates_end:" in inspect.getsource(
        RTCIceTransport.addRemoteCandidate
    )
    assert gatherer._remote_candidates_end is False
    assert callable(aiortc.rtcicetransport.candidate_to_aioice)
    # the answer/offer carries the gatherer's current parameters
    assert "iceGatherer.getLocalParameters()" in inspect.getsource(
        aiortc.rtcpeerconnection.add_transport_description
    )
    # the SFU's peers see a failed restart (or expired consent) as "closed", not "failed":
    # a closed DTLS transport closes the whole peer connection
    assert 'dtlsStates == set(["closed"])' in inspect.getsource(RTCPeerConnection)


def test_remote_ice_reads_the_first_media_section() -> None:
    offer = (FIXTURES / "chromium156_offer_all_codecs.sdp").read_text()
    remote = plane.remote_ice(offer)
    assert remote is not None
    assert re.search(f"a=ice-ufrag:{re.escape(remote.ufrag)}\r?\n", offer)
    assert re.search(f"a=ice-pwd:{re.escape(remote.pwd)}\r?\n", offer)
    assert plane.remote_ice("not an sdp") is None


def _answer_for(offer: str) -> str:
    import asyncio

    async def run() -> str:
        plane.install()
        pc = plane.create_peer_connection()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return plane.munge_sdp(pc.localDescription.sdp, 1500)
        finally:
            await pc.close()

    return asyncio.run(run())


def test_answer_to_chromium_keeps_av1_45_vp9_profile_0_and_the_extensions() -> None:
    answer = _answer_for((FIXTURES / "chromium156_offer_all_codecs.sdp").read_text())
    video = answer[answer.index("m=video") :]
    pts = video.splitlines()[0].split()[3:]
    assert "45" in pts and "46" in pts, pts  # AV1 and its RTX, Chromium's numbers
    assert "98" in pts and "99" in pts, pts  # VP9 profile 0 and its RTX
    assert "100" not in pts and "101" not in pts, pts  # VP9 profile 2 refused
    assert "a=fmtp:46 apt=45" in video
    for fb in ("nack", "nack pli", "goog-remb"):
        assert f"a=rtcp-fb:45 {fb}\r\n" in video
    assert "x-google-start-bitrate=1500" in video
    assert re.search(r"a=fmtp:96 x-google-start-bitrate=1500", video)  # VP8 had no fmtp
    assert "dependency-descriptor-rtp-header-extension" in video
    assert "video-layers-allocation00" in video
    # transport-wide-cc is on offer (aiortc keeps it; PublisherPeer drops it from answers
    # unless media.publisher_transport_cc is set)
    assert "transport-wide-cc" in answer
    assert "a=rtcp-fb:45 transport-cc\r\n" in video
    assert answer.index("a=extmap-allow-mixed") < answer.index("m=")
    # the audio level (RFC 6464) at Chromium's id: the room's active speakers come from it
    audio = answer[answer.index("m=audio") : answer.index("m=video")]
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" in audio


def test_munge_sdp_is_idempotent_and_keeps_rtx_alone() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98\r\na=rtpmap:97 VP8/90000\r\n"
        "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n"
    )
    once = plane.munge_sdp(sdp, 800)
    assert plane.munge_sdp(once, 800) == once
    assert "a=fmtp:97 x-google-start-bitrate=800" in once
    assert "a=fmtp:98 apt=97\r\n" in once
    assert once.count("a=extmap-allow-mixed") == 1


@pytest.mark.asyncio
async def test_host_candidates_follow_the_ice_options() -> None:
    plane.install()
    saved = plane.gathering_options()
    plane.install(
        plane.IceOptions(
            listen_addresses=["127.0.0.1"],
            announced_address="198.51.100.7",
            port_range=(47000, 47009),
        )
    )
    pc: RTCPeerConnection = plane.create_peer_connection()
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            ln for ln in pc.localDescription.sdp.splitlines() if ln.startswith("a=candidate:")
        ]
        assert candidates, pc.localDescription.sdp
        for line in candidates:
            parts = line.split()
            assert parts[4] == "198.51.100.7"
            assert 47000 <= int(parts[5]) <= 47009
            assert parts[7] == "host"
    finally:
        await pc.close()
        plane.install(saved)


@pytest.mark.asyncio
async def test_hooked_transport_hands_raw_packets_to_the_sink() -> None:
    plane.install()
    got: list[tuple[str, bytes]] = []

    class Sink:
        def on_rtp(self, data: bytes, now: float) -> None:
            got.append(("rtp", data))

        def on_rtcp(self, data: bytes, now: float) -> None:
            got.append(("rtcp", data))
            raise RuntimeError("a failing sink must not break the transport")

    class FakeTransport:
        _sfu_sink = Sink()

    await RTCDtlsTransport._handle_rtp_data(FakeTransport(), b"\x80raw", 0)  # type: ignore[arg-type]
    await RTCDtlsTransport._handle_rtcp_data(FakeTransport(), b"\x80\xc8")  # type: ignore[arg-type]
    assert got == [("rtp", b"\x80raw"), ("rtcp", b"\x80\xc8")]


@pytest.mark.asyncio
async def test_a_bundle_of_unknown_mids_is_refused_and_its_damage_closed() -> None:
    """Found by fuzzing (tests/fuzz, session target): a BUNDLE group whose first mid has no
    m-section makes aiortc give the first transceiver no transport; answering fails, and
    ``pc.close()`` raises before stopping the other transports (the room was never freed)."""
    offer = (FIXTURES / "chromium156_offer_all_codecs.sdp").read_text()
    bad = offer.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7 0 1")
    assert bad != offer
    with pytest.raises(ValueError, match="BUNDLE names mids without an m-section: \\['7'\\]"):
        plane.check_publish_offer(bad)
    with pytest.raises(ValueError, match="BUNDLE"):
        plane.check_subscribe_answer(bad)
    with pytest.raises(ValueError, match="share a mid"):
        plane.check_publish_offer(offer.replace("a=mid:1", "a=mid:0"))
    plane.check_publish_offer(offer)

    # the aiortc behaviour behind it, and close_peer_connection closing it anyway
    plane.install()
    pc = plane.create_peer_connection()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=bad, type="offer"))
    stranded = [t for t in pc.getTransceivers() if t.receiver.transport is None]
    assert [t.mid for t in stranded] == ["0"]  # if this changes, review the workaround
    others = [t.receiver.transport for t in pc.getTransceivers() if t not in stranded]
    await plane.close_peer_connection(pc)
    assert pc.connectionState == "closed"
    assert all(t.transport.state == "closed" for t in others)


def test_srtp_protection_through_the_binding_gives_pylibsrtp_s_bytes() -> None:
    """The Protector reads pylibsrtp's session internals (pinned): they are there, and it
    protects exactly as ``Session.protect`` does, packet after packet (the SRTP index grows,
    so every output differs)."""
    import os

    import pylibsrtp

    from sfu.adapters.aiortc_plane.srtp import Protector

    assert plane.PYLIBSRTP_VERSION == "1.0.0"
    key = os.urandom(30)

    def session() -> pylibsrtp.Session:
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        return pylibsrtp.Session(policy=policy)

    reference, protect = session(), Protector(session())
    assert protect.fast, "pylibsrtp's internals moved: review sfu/adapters/aiortc_plane/srtp.py"
    for seq in range(300):
        size = 12 + (seq * 37) % 1200
        packet = bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + os.urandom(size - 12)
        assert protect(packet) == reference.protect(packet)
    with pytest.raises(ValueError, match="too long"):
        protect(bytes([0x80, 96]) + bytes(20000))
    assert protect(bytes([0x80, 96, 1, 45]) + bytes(8)) == reference.protect(
        bytes([0x80, 96, 1, 45]) + bytes(8)
    )


def test_srtp_protection_falls_back_to_the_public_method() -> None:
    from sfu.adapters.aiortc_plane.srtp import Protector

    class Opaque:  # a session whose internals are not the ones the Protector knows
        def protect(self, packet: bytes) -> bytes:
            return b"protected:" + packet

    protect = Protector(Opaque())  # type: ignore[arg-type]
    assert not protect.fast
    assert protect(b"rtp") == b"protected:rtp"
