"""RTP header extension URIs the SFU negotiates, and their value formats."""

from __future__ import annotations

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
DEPENDENCY_DESCRIPTOR = (
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
)
VIDEO_LAYERS_ALLOCATION = "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00"
TRANSPORT_WIDE_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

#: Identifiers the SFU uses in the offers it makes to subscribers.  BUNDLE shares one id
#: space across audio and video, so each URI has one id whatever the media kind.
SUBSCRIBER_EXTENSION_IDS: dict[str, int] = {
    MID: 1,
    AUDIO_LEVEL: 2,
    ABS_SEND_TIME: 3,
    DEPENDENCY_DESCRIPTOR: 4,
    TRANSPORT_WIDE_CC: 5,
}


def abs_send_time(ntp_time: int) -> bytes:
    """The 24-bit 6.18 fixed point abs-send-time value from a 64-bit NTP time."""
    value = (ntp_time >> 14) & 0x00FFFFFF
    return value.to_bytes(3, "big")
