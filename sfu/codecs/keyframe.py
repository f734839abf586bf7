"""Is this RTP payload the start of a keyframe?  One function per codec, on raw payloads."""

from __future__ import annotations

from collections.abc import Callable


def vp8_is_keyframe(payload: bytes) -> bool:
    """RFC 7741: start of partition 0 (S=1, PID=0) with P=0 in the VP8 payload header."""
    if not payload:
        return False
    first = payload[0]
    if not (first & 0x10) or (first & 0x07):
        return False
    pos = 1
    if first & 0x80:  # X
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I
            if pos >= len(payload):
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L
            pos += 1
        if ext & 0x30:  # T or K
            pos += 1
    return pos < len(payload) and not (payload[pos] & 0x01)


def vp9_is_keyframe(payload: bytes) -> bool:
    """VP9 payload descriptor: start of a frame (B=1) that is not inter-picture predicted
    (P=0) in the base spatial layer."""
    if not payload:
        return False
    first = payload[0]
    if first & 0x40 or not (first & 0x08):  # P set, or not the beginning of a frame
        return False
    if first & 0x20:  # L: layer indices present
        pos = 1
        if first & 0x80:  # I: picture id
            if len(payload) < 2:
                return False
            pos += 2 if payload[1] & 0x80 else 1
        if pos >= len(payload):
            return False
        return (payload[pos] >> 1) & 0x07 == 0  # SID == 0
    return True


def av1_is_keyframe(payload: bytes) -> bool:
    """AV1 aggregation header: N=1 marks the first packet of a coded video sequence."""
    return bool(payload) and bool(payload[0] & 0x08)


def h264_is_keyframe(payload: bytes) -> bool:
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if pos + 2 >= len(payload):
                break
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A, start fragment
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in (5, 7)
    return False


KEYFRAME_DETECTORS: dict[str, Callable[[bytes], bool]] = {
    "VP8": vp8_is_keyframe,
    "VP9": vp9_is_keyframe,
    "AV1": av1_is_keyframe,
    "H264": h264_is_keyframe,
}
