"""NTP timestamps (sfu.rtp.ntp)."""

from sfu.rtp.ntp import NTP_EPOCH_OFFSET, ntp_from_time


def test_ntp_from_time() -> None:
    assert ntp_from_time(0.0) == NTP_EPOCH_OFFSET << 32  # the Unix epoch in NTP seconds
    assert ntp_from_time(1.5) == ((NTP_EPOCH_OFFSET + 1) << 32) | (1 << 31)  # half a second
    # 2036: the seconds field wraps (era 1), the value stays 64 bits
    wrap = (1 << 32) - NTP_EPOCH_OFFSET
    assert ntp_from_time(wrap) == 0 and ntp_from_time(wrap + 2.0) == 2 << 32
