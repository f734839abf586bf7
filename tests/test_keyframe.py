from sfu.codecs.keyframe import (
    av1_is_keyframe,
    h264_is_keyframe,
    vp8_is_keyframe,
    vp9_is_keyframe,
)
from sfu.forwarding.keyframe import KeyframeRequester


def test_requests_are_coalesced_and_retried() -> None:
    r = KeyframeRequester(min_interval=0.5, retry_interval=1.0)
    assert r.request(10.0)
    assert not r.request(10.1)
    assert not r.request(10.4)
    assert not r.poll(10.9)
    assert r.poll(11.0)  # no keyframe came: retry
    r.on_keyframe()
    assert not r.poll(20.0)
    assert r.request(20.0)
    assert r.sent == 3


def test_request_after_a_keyframe_is_deferred_not_dropped() -> None:
    # a subscriber that joins just after the last keyframe must not wait for the retry
    r = KeyframeRequester(min_interval=0.5, retry_interval=1.0)
    assert r.request(10.0)
    r.on_keyframe()
    assert not r.request(10.2)  # too soon after the last request: deferred
    assert not r.request(10.3)  # joins the deferred one
    assert not r.poll(10.45)
    assert r.poll(10.5)  # min_interval passed: the deferred request goes out
    assert not r.request(10.6)  # the one just sent brings the keyframe
    assert not r.poll(11.4)
    assert r.poll(11.5)  # no keyframe came: retry
    assert r.sent == 3


def test_vp8_keyframe() -> None:
    # X=1 S=1 PID=0; I=1 (15-bit picture id), T=1; then payload header P=0
    assert vp8_is_keyframe(bytes([0x90, 0xA0, 0x80, 0x01, 0x40, 0x10]))
    assert not vp8_is_keyframe(bytes([0x90, 0xA0, 0x80, 0x01, 0x40, 0x11]))  # P=1
    assert not vp8_is_keyframe(bytes([0x80, 0xA0, 0x80, 0x01, 0x40, 0x10]))  # S=0
    assert vp8_is_keyframe(bytes([0x10, 0x00]))
    assert not vp8_is_keyframe(b"")


def test_vp9_keyframe() -> None:
    # I=1 (M=1, 15 bit) L=1 B=1, P=0; layer byte SID=0
    assert vp9_is_keyframe(bytes([0xA8, 0x80, 0x05, 0x00, 0x00]))
    assert not vp9_is_keyframe(bytes([0xA8, 0x80, 0x05, 0x02, 0x00]))  # SID=1
    assert not vp9_is_keyframe(bytes([0xE8, 0x80, 0x05, 0x00, 0x00]))  # P=1
    assert not vp9_is_keyframe(bytes([0xA0, 0x80, 0x05, 0x00, 0x00]))  # B=0


def test_av1_and_h264_keyframes() -> None:
    assert av1_is_keyframe(bytes([0x18]))
    assert not av1_is_keyframe(bytes([0x10]))
    assert h264_is_keyframe(bytes([0x65]))
    assert h264_is_keyframe(bytes([0x7C, 0x85]))  # FU-A start of an IDR
    assert not h264_is_keyframe(bytes([0x7C, 0x05]))
    assert h264_is_keyframe(bytes([0x78, 0x00, 0x02, 0x67, 0x42]))  # STAP-A with SPS
    assert not h264_is_keyframe(bytes([0x41]))
