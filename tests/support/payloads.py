"""Hand-built VP8 and VP9 payload pieces for the descriptor tests."""

from __future__ import annotations

# VP8 payload headers (RFC 7741 section 4.3): bit 0 is P, 0 for a key frame.
VP8_KEY_HEADER = bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A])  # P=0, then the key frame start code
VP8_DELTA_HEADER = bytes([0x31, 0x01, 0x00])  # P=1

VP9_FRAME = bytes([0x82, 0x49, 0x83, 0x42, 0x00])  # VP9 frame data after the descriptor
# SS resolutions 320x180, 640x360, 1280x720 (16 bits each, big endian).
VP9_RESOLUTIONS = bytes([0x01, 0x40, 0x00, 0xB4, 0x02, 0x80, 0x01, 0x68, 0x05, 0x00, 0x02, 0xD0])
# Chromium's 3-temporal-layer picture group (L1T3 / L3T3): N_G=4, then TID|U|R and P_DIFFs.
VP9_PICTURE_GROUP = bytes([0x04, 0x04, 0x04, 0x54, 0x01, 0x34, 0x02, 0x54, 0x01])
VP9_PICTURE_GROUP_PARSED = [(0, False, [4]), (2, True, [1]), (1, True, [2]), (2, True, [1])]
#: the first packet of a Chromium L3T3_KEY keyframe, SID 0, up to its frame data: I=1 P=0
#: L=1 F=0 B=1 E=0 V=1 Z=0, 15-bit picture id 0x3039, TID=0 U=0 SID=0 D=0, TL0PICIDX 0x05, SS
#: for 3 spatial layers (320x180, 640x360, 1280x720) with the 3-temporal-layer picture group
VP9_L3T3_KEY_START = (
    bytes([0xAA, 0xB0, 0x39, 0x00, 0x05, 0x58]) + VP9_RESOLUTIONS + VP9_PICTURE_GROUP
)
