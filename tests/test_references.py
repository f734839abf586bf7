"""What a receiver that does not negotiate the dependency descriptor sees: real captures with
the DD stripped, forwarded, and the forwarded stream judged by the codec's own reference
rule (VP9 flexible mode: each P_DIFF names a picture id the receiver must have got), not
only by decoding (libvpx decodes from its reference slots whatever the descriptor says).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.captures import CAPTURES

from loadtest.capturefile import Capture, read_capture, stream_parameters
from loadtest.looper import replay
from sfu.codecs.vp8 import parse_vp8_descriptor
from sfu.codecs.vp9 import Vp9Descriptor, parse_vp9_descriptor
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.layers import LayerParser
from sfu.forwarding.source import MediaSource
from sfu.forwarding.subscription import Subscription
from sfu.forwarding.target import LayerCaps
from sfu.rtp import extensions as ext
from sfu.rtp.packet import RtpHeader, build_rtp, parse_rtp


def without_dependency_descriptor(capture: Capture) -> Capture:
    """The capture as a receiver that did not negotiate the DD gets it: the extension gone
    from the metadata and from every packet (re-serialized)."""
    dd_id = capture.info.extensions.get(ext.DEPENDENCY_DESCRIPTOR)
    extensions = {
        uri: i for uri, i in capture.info.extensions.items() if uri != ext.DEPENDENCY_DESCRIPTOR
    }
    packets = []
    for at, data in capture.packets:
        h = parse_rtp(data)
        kept = [(i, v) for i, v in sorted(h.extensions.items()) if i != dd_id]
        packets.append(
            (
                at,
                build_rtp(
                    payload_type=h.payload_type,
                    sequence_number=h.sequence_number,
                    timestamp=h.timestamp,
                    ssrc=h.ssrc,
                    payload=data[h.payload_offset : h.payload_end],
                    marker=h.marker,
                    extensions=kept,
                ),
            )
        )
    return Capture(replace(capture.info, extensions=extensions), packets)


def load(name: str) -> Capture:
    capture = without_dependency_descriptor(read_capture(CAPTURES / name))
    while capture.packets and not parse_rtp(capture.packets[-1][1]).marker:
        capture.packets.pop()
    return capture


def forward(
    capture: Capture, schedule: dict[int, tuple[int, int]], loops: int = 1
) -> list[tuple[bytes, bytes]]:
    """Replay ``capture`` to one subscriber: [(packet received, packet forwarded)]."""
    params = stream_parameters(capture.info)
    source = MediaSource("pub:1", params, send_rtcp=lambda _: None, rtcp_ssrc=1)
    assert source.layers is not None and source.layers.dd_extension_id is None
    sent: list[bytes] = []
    downtrack = DownTrack(source, ssrc=4242, payload_type=100, send=sent.append)
    source.attach(downtrack, 0.0)
    assert downtrack.selector is not None
    pairs = []
    for i, (t, packet) in enumerate(replay(capture, loops)):
        if i in schedule:
            downtrack.selector.set_target(*schedule[i])
        before = len(sent)
        source.on_rtp(packet, parse_rtp(packet), t)
        pairs += [(packet, out) for out in sent[before:]]
    assert downtrack.unresolved_references == 0
    return pairs


def _vp9(packet: bytes) -> Vp9Descriptor:
    h = parse_rtp(packet)
    return parse_vp9_descriptor(packet[h.payload_offset : h.payload_end])


def vp9_unresolved_references(pairs: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """(frames forwarded, those the receiver cannot decode by the descriptor), by the rule
    libwebrtc's VP9 reference finder and frame buffer follow in flexible mode: frame
    (picture id, spatial id) references (picture id - P_DIFF, spatial id) for each P_DIFF,
    and (picture id, spatial id - 1) when inter-layer predicted (D); it is decodable once
    all of those were received and are decodable.  A reference must also name the picture
    the publisher's did (a picture id naming another forwarded picture is wrong too)."""
    decodable: set[tuple[int, int]] = set()
    origin: dict[tuple[int, int], int] = {}  # forwarded frame -> the publisher's picture id
    frames = unresolved = 0
    for packet_in, packet_out in pairs:
        d_in, d = _vp9(packet_in), _vp9(packet_out)
        assert d.flexible and d.picture_id is not None and d_in.picture_id is not None
        if not d.start_of_frame:
            continue
        frames += 1
        mask = (1 << d.picture_id_bits) - 1
        ok = not (d.inter_picture_predicted and not d.reference_diffs)
        for diff, diff_in in zip(d.reference_diffs, d_in.reference_diffs, strict=True):
            ref = ((d.picture_id - diff) & mask, d.sid)
            ok = ok and 0 < diff and ref in decodable
            ok = ok and origin.get(ref) == (d_in.picture_id - diff_in) & mask
        if d.inter_layer_dependent:
            ok = ok and (d.picture_id, d.sid - 1) in decodable
        key = (d.picture_id, d.sid)
        origin[key] = d_in.picture_id
        if ok:
            decodable.add(key)
        else:
            decodable.discard(key)
            unresolved += 1
    return frames, unresolved


VP9 = "vp9_L3T3_KEY.sfucap"


def test_the_vp9_capture_is_flexible_mode_with_references() -> None:
    capture = load(VP9)
    diffs = set()
    for _, data in capture.packets:
        h = parse_rtp(data)
        assert ext.DEPENDENCY_DESCRIPTOR not in capture.info.extensions
        assert len(h.extensions) < 3  # abs-send-time, mid: no DD
        d = parse_vp9_descriptor(data[h.payload_offset : h.payload_end])
        assert d.flexible
        diffs.update(d.reference_diffs)
    assert {1, 2, 4} <= diffs
    # the capture as published is whole by the rule
    frames, unresolved = vp9_unresolved_references([(p, p) for _, p in capture.packets])
    assert frames > 400 and unresolved == 0


@pytest.mark.parametrize(
    "schedule",
    [
        {0: (0, 0)},
        {0: (0, 1)},
        {0: (1, 1)},
        {0: (2, 2)},
        {0: (2, 0)},
        {0: (1, 0)},
        # switches: temporal down and up, spatial down and up (at a keyframe: the capture is
        # looped, each pass starts with one)
        {0: (2, 2), 300: (2, 0), 700: (2, 1), 1100: (0, 0), 1500: (1, 2), 2000: (0, 1)},
        {0: (0, 0), 400: (0, 2), 900: (0, 1), 1400: (2, 0), 2200: (1, 1), 3000: (2, 2)},
    ],
    ids=lambda s: "-".join(f"S{a}T{b}" for a, b in s.values()),
)
def test_every_forwarded_vp9_reference_resolves(schedule: dict[int, tuple[int, int]]) -> None:
    frames, unresolved = vp9_unresolved_references(forward(load(VP9), schedule, loops=3))
    assert frames > 100
    assert unresolved == 0, f"{unresolved} of {frames} frames reference a picture never sent"


def vp8_as_without_dependency_descriptor(capture: Capture) -> Capture:
    """Chromium's VP8 with the DD negotiated carries its layers only there (the VP8
    descriptor has no picture id nor temporal id); without it, Chromium writes them in the
    VP8 descriptor.  Rebuild that: X, a 15-bit picture id (the DD frame number), TL0PICIDX
    and TID/Y (Y, RFC 7741: the frame depends only on base-layer frames, by the DD's frame
    dependencies), then drop the DD."""
    dd_id = capture.info.extensions[ext.DEPENDENCY_DESCRIPTOR]
    parser = LayerParser("VP8", dd_id)
    packets = []
    tl0 = 0
    tids: dict[int, int] = {}  # temporal id by DD frame number
    for at, data in capture.packets:
        h = parse_rtp(data)
        payload = data[h.payload_offset : h.payload_end]
        info = parser.parse(payload, h.extensions, h.marker)
        assert info.valid and info.dd is not None
        d = parse_vp8_descriptor(payload)
        assert d.picture_id is None and d.tid is None
        tid = info.dd.temporal_id
        if tid == 0 and info.start_of_frame:
            tl0 = (tl0 + 1) & 0xFF
        pid = info.dd.frame_number & 0x7FFF
        frame = info.dd.frame_number
        tids[frame] = tid
        refs = [tids.get((frame - fdiff) & 0xFFFF) for fdiff in info.dd.fdiffs]
        sync = tid > 0 and all(ref == 0 for ref in refs)
        descriptor = bytes(
            [
                0x80 | (payload[0] & 0x7F),
                0xE0,  # I, L, T
                0x80 | (pid >> 8),
                pid & 0xFF,
                tl0,
                (tid << 6) | (0x20 if sync else 0),
            ]
        )
        packets.append((at, descriptor + payload[d.size :], h))
    stripped = without_dependency_descriptor(
        Capture(capture.info, [(at, _with_payload(h, data)) for at, data, h in packets])
    )
    return stripped


def _with_payload(h: RtpHeader, payload: bytes) -> bytes:
    return build_rtp(
        payload_type=h.payload_type,
        sequence_number=h.sequence_number,
        timestamp=h.timestamp,
        ssrc=h.ssrc,
        payload=payload,
        marker=h.marker,
        extensions=sorted(h.extensions.items()),
    )


def test_vp8_pin_at_stream_start_reaches_the_top_temporal_layer_at_once() -> None:
    """Without a DD, VP8's temporal layers are learned from the packets: a pin at T2 made
    before any packet arrived must take effect as soon as T2 shows up, not at the next
    keyframe or periodic retarget (~1 s)."""
    capture = vp8_as_without_dependency_descriptor(read_capture(CAPTURES / "vp8_L1T3.sfucap"))
    tids = set()
    for _, data in capture.packets:
        h = parse_rtp(data)
        assert not set(h.extensions) & {12}
        tids.add(parse_vp8_descriptor(data[h.payload_offset : h.payload_end]).tid)
    assert tids == {0, 1, 2}
    params = stream_parameters(capture.info)
    source = MediaSource("pub:1", params, send_rtcp=lambda _: None, rtcp_ssrc=1)
    sent: list[bytes] = []
    downtrack = DownTrack(source, ssrc=4242, payload_type=100, send=sent.append)
    source.attach(downtrack, 0.0)
    subscription = Subscription(source, LayerCaps())
    retargets = []

    def on_structure(_source: MediaSource) -> None:
        retargets.append(source.temporal_layers)
        subscription.update(0.0)

    source.on_structure = on_structure  # as the room does
    subscription.bind(downtrack, 0.0)
    subscription.set_pin(0, 2, 0.0)
    assert source.temporal_layers == 1  # nothing received yet
    first_t2_at: float | None = None
    for t, packet in replay(capture):
        before = len(sent)
        source.on_rtp(packet, parse_rtp(packet), t)
        if len(sent) > before:
            h = parse_rtp(sent[-1])
            if parse_vp8_descriptor(sent[-1][h.payload_offset : h.payload_end]).tid == 2:
                first_t2_at = t
                break
    assert first_t2_at is not None, retargets
    # T2 is every other picture at 30 fps: a few pictures in, not ~1 s
    assert first_t2_at < 0.2, (first_t2_at, retargets)
