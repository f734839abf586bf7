"""NTP timestamps (RFC 5905's 64-bit format), as RTCP sender reports and abs-send-time use."""

from __future__ import annotations

#: seconds from the NTP epoch (1900) to the Unix epoch (1970)
NTP_EPOCH_OFFSET = 2208988800


def ntp_from_time(seconds: float) -> int:
    """64-bit NTP timestamp from a Unix time."""
    return int((seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF
