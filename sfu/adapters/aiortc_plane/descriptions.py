"""Session descriptions: what aiortc's SDP writer cannot express, and the checks that keep
a peer's SDP from leaving aiortc in a broken state."""

from __future__ import annotations

import re

import aiortc.sdp
from aiortc import RTCPeerConnection

from ...sdp import limits as sdp_limits
from ...sdp.limits import Candidate, SdpLimits, check_candidates, check_sdp
from .peerconnection import dtls_transport_of

_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/]+)/")


def munge_sdp(sdp: str, start_bitrate_kbps: int | None = None) -> str:
    """Adds what aiortc's SDP writer cannot express.

    * ``a=extmap-allow-mixed`` at session level: without it Chromium negotiates the
      dependency descriptor but never sends it (it needs the two-byte header form);
    * ``x-google-start-bitrate`` on video codecs, so Chromium sends every spatial layer from
      the first second instead of ramping up for 15-30 s.
    """
    lines = sdp.rstrip("\r\n").split("\r\n")
    out: list[str] = []
    video_pts: list[str] = []
    fmtp_seen: set[str] = set()
    section: list[str] = []

    def flush(section: list[str]) -> None:
        if not section:
            return
        if section[0].startswith("m=video") and start_bitrate_kbps:
            for line in section:
                m = _RTPMAP.match(line)
                if m and m.group(2).lower() not in ("rtx", "red", "ulpfec", "flexfec-03"):
                    video_pts.append(m.group(1))
            for i, line in enumerate(section):
                m = _FMTP.match(line)
                if m and m.group(1) in video_pts:
                    fmtp_seen.add(m.group(1))
                    if "x-google-start-bitrate" not in line:
                        section[i] = f"{line};x-google-start-bitrate={start_bitrate_kbps}"
            for pt in video_pts:
                if pt not in fmtp_seen:
                    idx = max(i for i, ln in enumerate(section) if ln.startswith(f"a=rtpmap:{pt} "))
                    section.insert(
                        idx + 1, f"a=fmtp:{pt} x-google-start-bitrate={start_bitrate_kbps}"
                    )
            video_pts.clear()
            fmtp_seen.clear()
        out.extend(section)

    in_session = True
    for line in lines:
        if line.startswith("m="):
            if in_session:
                in_session = False
                if "a=extmap-allow-mixed" not in out:
                    out.append("a=extmap-allow-mixed")
            else:
                flush(section)
            section = [line]
        elif in_session:
            out.append(line)
        else:
            section.append(line)
    flush(section)
    if in_session and "a=extmap-allow-mixed" not in out:
        out.append("a=extmap-allow-mixed")
    return "\r\n".join(out) + "\r\n"


def _parse_remote_description(sdp: str) -> aiortc.sdp.SessionDescription:
    """Parse a peer's SDP, refusing what would leave aiortc in a broken state.

    A BUNDLE group naming a mid that no m-section has makes aiortc 1.16 give the bundled
    transceivers no transport at all (``None``): answering then fails, and so does
    ``RTCPeerConnection.close()``, before it stops the other transports.
    """
    try:
        description = aiortc.sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises assorted errors on garbage
        raise ValueError(f"unparsable SDP: {exc}") from exc
    mids = [media.rtp.muxId for media in description.media]
    if len(set(mids)) != len(mids):
        raise ValueError(f"m-sections share a mid: {mids}")
    for group in description.group:
        if group.semantic == "BUNDLE":
            unknown = [mid for mid in group.items if mid not in mids]
            if unknown:
                raise ValueError(f"BUNDLE names mids without an m-section: {unknown}")
    return description


def _known_candidates(pc: RTCPeerConnection | None, ufrag: str | None) -> frozenset[Candidate]:
    """The remote candidates the peer connection's (bundled) ICE transport holds, as
    :mod:`sfu.sdp.limits` counts them; none if a description with ``ufrag``
    restarts ICE (the restart drops them)."""
    dtls = dtls_transport_of(pc) if pc is not None else None
    if dtls is None:
        return frozenset()
    connection = dtls.transport._connection
    if connection.remote_username is not None and connection.remote_username != ufrag:
        return frozenset()
    return frozenset(
        (c.host.lower(), str(c.port))
        for c in connection._remote_candidates
        if c.transport.lower() == "udp"
    )


def check_publish_offer(
    sdp: str, limits: SdpLimits | None = None, pc: RTCPeerConnection | None = None
) -> None:
    """Refuse offers the SFU cannot use, with a reason (raises ``ValueError``): over the
    bounds (``limits``: size, m-lines, and candidates with those ``pc`` was given before,
    checked on the text before aiortc sees it), or unusable."""
    limits = limits or SdpLimits()
    counts = check_sdp(sdp, limits, "offer")
    check_candidates(counts, limits, "offer", _known_candidates(pc, counts.ice_ufrag))
    description = _parse_remote_description(sdp)
    kinds = [media.kind for media in description.media]
    if not any(kind in ("audio", "video") for kind in kinds):
        raise ValueError("the offer has no audio or video section")
    if any(kind not in ("audio", "video") for kind in kinds):
        raise ValueError(f"unsupported media sections: {kinds}")


def check_subscribe_answer(
    sdp: str, limits: SdpLimits | None = None, pc: RTCPeerConnection | None = None
) -> None:
    """Refuse answers that would break the subscriber's connection, or are over the bounds
    (raises ``ValueError``): no more m-lines than ``pc``'s offer, at most twice its size
    (or ``limits.max_bytes``), and the candidate bound as for offers."""
    limits = limits or SdpLimits()
    offer = pc.localDescription if pc is not None else None
    max_bytes = max_m_lines = None
    if offer is not None:
        offered = sdp_limits.count(offer.sdp)
        max_bytes = max(limits.max_bytes, 2 * offered.size)
        max_m_lines = offered.m_lines
    counts = check_sdp(sdp, limits, "answer", max_bytes=max_bytes, max_m_lines=max_m_lines)
    check_candidates(counts, limits, "answer", _known_candidates(pc, counts.ice_ufrag))
    _parse_remote_description(sdp)
