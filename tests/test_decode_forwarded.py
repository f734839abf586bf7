"""Decode what we forward: real Chromium captures go through the selector for every target
layer, and the forwarded packets are reassembled and decoded with PyAV (libvpx, dav1d)."""

from __future__ import annotations

import av
import pytest
from support.captures import AV1, VP8, VP9, Forwarded, forward, load
from support.depacketize import av1_temporal_unit, pictures, vp8_frame, vp9_frames

from sfu.codecs.keyframe import KEYFRAME_DETECTORS
from sfu.codecs.vp8 import parse_vp8_descriptor
from sfu.codecs.vp9 import parse_vp9_descriptor
from sfu.rtp.packet import parse_rtp


def decode(codec: str, packets: list[bytes]) -> list[tuple[int, int, int]]:
    """[(forwarded packet index where the picture started, width, height)] of the highest
    frame decoded for each picture; raises on any decoder error."""
    names = {"VP9": ["libvpx-vp9", "vp9"], "VP8": ["libvpx", "vp8"], "AV1": ["libdav1d"]}[codec]
    for name in names:
        try:
            ctx = av.CodecContext.create(name, "r")
            if name == "libdav1d":  # output each temporal unit as it is decoded
                ctx.options = {"max_frame_delay": "1"}
            break
        except Exception:  # noqa: BLE001 - try the next decoder
            continue
    else:
        pytest.fail(f"no {codec} decoder in PyAV")
    out = []
    index = 0
    for _, picture in pictures(packets):
        if codec == "VP9":
            units = [frame for _, frame in vp9_frames(picture)]
        elif codec == "VP8":
            units = [vp8_frame(picture)]
        else:
            units = [av1_temporal_unit(picture)]
        frames = []
        for unit in units:
            frames += ctx.decode(av.Packet(unit))
        if frames:
            out.append((index, frames[-1].width, frames[-1].height))
        index += len(picture)
    return out


def picture_rate(result: Forwarded) -> float:
    return sum(1 for _ in pictures(result.packets)) / result.duration


@pytest.mark.parametrize("name,codec", [(VP9, "VP9"), (AV1, "AV1")])
@pytest.mark.parametrize("spatial", [0, 1, 2])
@pytest.mark.parametrize("temporal", [0, 1, 2])
def test_every_target_decodes_at_its_resolution_and_rate(
    name: str, codec: str, spatial: int, temporal: int
) -> None:
    capture = load(name)
    result = forward(capture, {0: (spatial, temporal)})
    assert result.packets, "nothing forwarded"
    decoded = decode(codec, result.packets)
    widths = {w for _, w, _ in decoded}
    expected = result.source.resolutions[spatial]
    assert widths == {expected[0]}, (widths, expected)
    assert {h for _, _, h in decoded} == {expected[1]}
    rate = picture_rate(result)
    wanted = 30 / 2 ** (2 - temporal)
    assert 0.75 * wanted <= rate <= 1.25 * wanted, (rate, wanted)
    # every forwarded picture decodes
    assert len(decoded) == sum(1 for _ in pictures(result.packets))


@pytest.mark.parametrize("temporal", [0, 1, 2])
def test_vp8_temporal_targets(temporal: int) -> None:
    capture = load(VP8)
    # the capture has keyframes at two resolutions (Chromium adapted mid-capture)
    sizes = set()
    for _, packet in capture.packets:
        h = parse_rtp(packet)
        payload = packet[h.payload_offset : h.payload_end]
        if KEYFRAME_DETECTORS["VP8"](payload):
            d = parse_vp8_descriptor(payload)
            header = payload[d.size + 6 : d.size + 10]
            sizes.add(int.from_bytes(header[:2], "little") & 0x3FFF)
    result = forward(capture, {0: (0, temporal)})
    decoded = decode("VP8", result.packets)
    assert len(decoded) == sum(1 for _ in pictures(result.packets))
    assert {w for _, w, _ in decoded} <= sizes
    wanted = 30 / 2 ** (2 - temporal)
    rate = picture_rate(result)
    assert 0.75 * wanted <= rate <= 1.25 * wanted, (rate, wanted)


def is_keyframe(codec: str, packet: bytes) -> bool:
    h = parse_rtp(packet)
    return KEYFRAME_DETECTORS[codec](packet[h.payload_offset : h.payload_end])


@pytest.mark.parametrize("name,codec,ksvc", [(VP9, "VP9", True), (AV1, "AV1", False)])
def test_switches_down_and_up_mid_stream(name: str, codec: str, ksvc: bool) -> None:
    capture = load(name)
    n = len(capture.packets)
    # top; spatial down; temporal down; temporal up; spatial up.  The capture is played three
    # times: each pass starts with a keyframe.
    schedule = {
        0: (2, 2),
        n // 4: (1, 2),
        n + n // 4: (1, 0),
        n + n // 2: (1, 2),
        n + 3 * n // 4: (2, 2),
    }
    result = forward(capture, schedule, loops=3)
    decoded = decode(codec, result.packets)
    assert len(decoded) == sum(1 for _ in pictures(result.packets))
    res = result.source.resolutions
    marks = [at for at, _, _ in result.layer_log]

    def switch(mark: int, old: int, new: int, needs_keyframe: bool) -> int:
        """The picture where the width went from old to new after the target changed."""
        after = [(idx, w) for idx, w, _ in decoded if idx >= mark]
        first = next(i for i, (_, w) in enumerate(after) if w == new)
        assert all(w == old for _, w in after[:first])
        if needs_keyframe:
            assert is_keyframe(codec, result.packets[after[first][0]])
        else:
            assert first <= 1  # this picture or the next
        return after[first][0]

    assert {w for idx, w, _ in decoded if idx < marks[1]} == {res[2][0]}
    # spatial down: at once when the lower layer was forwarded all along (full SVC); in
    # K-SVC the lower layer's own references were never forwarded: at the next keyframe
    down = switch(marks[1], res[2][0], res[1][0], needs_keyframe=ksvc)
    assert {w for idx, w, _ in decoded if down <= idx < marks[4]} == {res[1][0]}

    # temporal down and up: the picture rate follows
    def rate(a: int, b: int) -> float:
        """Pictures per second of RTP time between forwarded packets a and b."""
        seconds = (
            (parse_rtp(result.packets[b]).timestamp - parse_rtp(result.packets[a]).timestamp)
            & 0xFFFFFFFF
        ) / 90000
        return sum(1 for idx, _, _ in decoded if a <= idx < b) / seconds

    assert rate(marks[2], marks[3]) < 0.4 * rate(down, marks[2])
    assert rate(marks[3], marks[4]) > 2 * rate(marks[2], marks[3])
    # spatial up: at the first keyframe after the target went up
    up = switch(marks[4], res[1][0], res[2][0], needs_keyframe=True)
    assert {w for idx, w, _ in decoded if idx >= up} == {res[2][0]}
    # keyframes were asked for when a switch could not happen at once, but no storm
    assert 1 <= result.plis <= 4, result.plis
    # the forwarded stream is continuous
    seqs = [parse_rtp(p).sequence_number for p in result.packets]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:], strict=False))


def test_marker_bit_on_the_last_packet_of_each_forwarded_picture() -> None:
    for name in (VP9, AV1):
        result = forward(load(name), {0: (1, 2)})
        for _, picture in pictures(result.packets):
            markers = [h.marker for h, _ in picture]
            assert markers[-1] and not any(markers[:-1]), markers


def test_vp9_picture_ids_stay_continuous_when_pictures_are_dropped() -> None:
    from sfu.codecs.vp9 import parse_vp9_descriptor

    result = forward(load(VP9), {0: (2, 0)})
    ids = []
    for _, picture in pictures(result.packets):
        h, data = picture[0]
        d = parse_vp9_descriptor(data[h.payload_offset : h.payload_end])
        assert d.picture_id is not None
        ids.append(d.picture_id)
    assert all(((b - a) & 0x7FFF) == 1 for a, b in zip(ids, ids[1:], strict=False)), ids[:20]


def test_ksvc_top_layer_subscriber_gets_only_what_it_decodes() -> None:
    """In K-SVC the top layer does not reference the lower ones after a keyframe: a top-layer
    subscriber gets the lower layers of keyframes only."""
    capture = load(VP9)
    incoming = sum(len(p) for _, p in capture.packets)
    result = forward(capture, {0: (2, 2)})
    forwarded = sum(len(p) for p in result.packets)
    assert forwarded < 0.95 * incoming
    top_only = forward(capture, {0: (0, 2)})
    assert sum(len(p) for p in top_only.packets) < forwarded


def test_av1_forwarded_descriptor_signals_the_active_decode_targets() -> None:
    from sfu.codecs.av1_dd import parse_dependency_descriptor
    from sfu.rtp.extensions import DEPENDENCY_DESCRIPTOR, SUBSCRIBER_EXTENSION_IDS

    result = forward(load(AV1), {0: (1, 1)})
    dd_id = SUBSCRIBER_EXTENSION_IDS[DEPENDENCY_DESCRIPTOR]
    layers = result.source.layers
    assert layers is not None
    structure = None
    masks = []
    for packet in result.packets:
        dd = parse_dependency_descriptor(parse_rtp(packet).extensions[dd_id], structure)
        structure = dd.structure or structure
        if dd.active_decode_targets_bitmask is not None:
            masks.append(dd.active_decode_targets_bitmask)
    assert structure is not None
    expected = layers.active_decode_targets(1, 1)
    assert masks and set(masks) == {expected}
    assert expected == sum(1 << layers.decode_targets[(s, t)] for s in (0, 1) for t in (0, 1))


def test_ksvc_lower_chain_makes_the_spatial_down_switch_immediate() -> None:
    """With the lower layer's T0 chain forwarded beside the top layer (what a subscriber whose
    bandwidth is estimated gets in K-SVC), the top layer still decodes at its resolution, and a
    spatial down-switch happens at the next picture instead of waiting for a keyframe."""
    capture = load(VP9)
    n = len(capture.packets)
    plain = forward(capture, {0: (2, 2)})
    result = forward(capture, {0: (2, 2), n // 2: (1, 2)}, keep_lower_chain=True)
    top_only = forward(capture, {0: (2, 2)}, keep_lower_chain=True)
    res = result.source.resolutions
    # the extra layer costs bytes, but less than the whole stream
    extra = sum(map(len, top_only.packets)) - sum(map(len, plain.packets))
    assert 0 < extra < 0.3 * sum(map(len, plain.packets))
    decoded = decode("VP9", top_only.packets)
    assert {w for _, w, _ in decoded} == {res[2][0]}
    assert len(decoded) == sum(1 for _ in pictures(top_only.packets))
    decoded = decode("VP9", result.packets)
    assert len(decoded) == sum(1 for _ in pictures(result.packets))
    mark = result.layer_log[1][0]
    after = [(idx, w) for idx, w, _ in decoded if idx >= mark]
    assert after[0][1] == res[1][0] or after[1][1] == res[1][0], after[:3]
    assert not is_keyframe("VP9", result.packets[after[0][0]])
    assert result.plis == plain.plis  # no keyframe asked for the switch
    assert {w for _, w in after[2:]} == {res[1][0]}


def test_frame_rate_does_not_climb_while_a_spatial_down_switch_waits() -> None:
    """K-SVC without the lower chain: from S2T0 to target S1T2 the switch waits for a
    keyframe; meanwhile the top layer stays at T0 (the budget is the lower layer's)."""
    capture = load(VP9)
    n = len(capture.packets)
    result = forward(capture, {0: (2, 0), n // 3: (1, 2)}, loops=2)
    decoded = decode("VP9", result.packets)
    assert len(decoded) == sum(1 for _ in pictures(result.packets))
    mark = result.layer_log[1][0]
    res = result.source.resolutions
    waiting = [idx for idx, w, _ in decoded if idx >= mark and w == res[2][0]]
    assert waiting, "the switch did not wait for a keyframe"
    first, last = waiting[0], waiting[-1]
    seconds = (
        (parse_rtp(result.packets[last]).timestamp - parse_rtp(result.packets[first]).timestamp)
        & 0xFFFFFFFF
    ) / 90000
    assert seconds > 0.5
    assert (len(waiting) - 1) / seconds < 10  # 7.5 fps (T0), not 30


def in_sequence_order(packets: list[bytes]) -> list[bytes]:
    """What a receiver's jitter buffer makes of packets sent out of order."""
    first = parse_rtp(packets[0]).sequence_number
    return sorted(packets, key=lambda p: (parse_rtp(p).sequence_number - first) & 0xFFFF)


def media(packets: list[bytes]) -> list[tuple[bool, int, bytes]]:
    """(marker, timestamp since the first packet, payload) of each packet."""
    ts0 = parse_rtp(packets[0]).timestamp
    out = []
    for p in packets:
        h = parse_rtp(p)
        out.append(
            (h.marker, (h.timestamp - ts0) & 0xFFFFFFFF, p[h.payload_offset : h.payload_end])
        )
    return out


@pytest.mark.parametrize("name,codec", [(VP9, "VP9"), (AV1, "AV1")])
@pytest.mark.parametrize(
    "target,keep", [((2, 2), False), ((1, 1), False), ((0, 0), False), ((2, 2), True)]
)
def test_upstream_loss_recovered_late_reaches_the_subscriber_whole(
    name: str, codec: str, target: tuple[int, int], keep: bool
) -> None:
    """10% of the publisher's packets arrive late (as its retransmissions do after our NACKs):
    in sequence-number order the subscriber gets exactly what it gets without loss, same
    payloads (picture ids included), markers and timestamps, and every picture decodes."""
    capture = load(name)
    clean = forward(capture, {0: target}, loops=2, keep_lower_chain=keep)
    lossy = forward(capture, {0: target}, loops=2, keep_lower_chain=keep, loss=0.1)
    assert lossy.source.late_packets > 0.08 * len(capture.packets)
    # the retransmitted packets were forwarded, out of order
    seqs = [parse_rtp(p).sequence_number for p in lossy.packets]
    assert any(((b - a) & 0xFFFF) >= 0x8000 for a, b in zip(seqs, seqs[1:], strict=False))
    ordered = in_sequence_order(lossy.packets)
    assert media(ordered) == media(clean.packets)
    decoded = decode(codec, ordered)
    assert len(decoded) == sum(1 for _ in pictures(clean.packets))
    assert lossy.plis == clean.plis  # nothing undecodable: no keyframe asked for


def test_lower_chain_switched_on_mid_stream_starts_at_a_keyframe() -> None:
    """A chain frame references the one before it: turned on between keyframes, the lower
    chain is not forwarded (the receiver would get frames it cannot decode) until the next
    keyframe; everything forwarded decodes."""
    capture = load(VP9)
    n = len(capture.packets)
    result = forward(capture, {0: (2, 2)}, loops=2, chain_from=n // 3)
    decoded = decode("VP9", result.packets)
    assert len(decoded) == sum(1 for _ in pictures(result.packets))
    sids = []
    for packet in result.packets:
        h = parse_rtp(packet)
        sids.append(parse_vp9_descriptor(packet[h.payload_offset : h.payload_end]).sid)
    # the second pass starts with a keyframe: the chain (S1 frames) only from there
    second = next(i for i, p in enumerate(result.packets) if i > 0 and is_keyframe("VP9", p))
    between = [i for i, sid in enumerate(sids) if sid == 1 and 0 < i < second]
    after = [i for i, sid in enumerate(sids) if sid == 1 and i > second]
    assert all(i < 40 for i in between), between[:5]  # only the first keyframe's S1 part
    assert len(after) > 50


def test_a_lower_chain_frame_late_past_its_picture_ends_the_chain() -> None:
    """A receiver that decodes a picture once its last frame (the marker) is complete --
    libwebrtc does, with whatever lower frames are complete then -- has decoded a picture
    without its chain frame when that frame's retransmission comes after the marker; it drops
    the late frame, and every later chain frame references a frame it never had: the pictures
    carrying them stay undecodable until a keyframe (Chromium froze 3 s behind a 10 % lossy
    uplink).  So a chain packet that late is dropped and the chain ends until the next
    keyframe; the top layer goes on, whole."""
    capture = load(VP9)
    clean = forward(capture, {0: (2, 2)}, loops=2, keep_lower_chain=True)
    lossy = forward(capture, {0: (2, 2)}, loops=2, keep_lower_chain=True, loss=0.05, delay=40)
    marked: set[int] = set()  # timestamps whose marker packet was sent
    chain_late = 0
    for packet in lossy.packets:
        h = parse_rtp(packet)
        d = parse_vp9_descriptor(packet[h.payload_offset : h.payload_end])
        if d.sid == 1 and not is_keyframe("VP9", packet):
            # never a chain packet after its picture was complete without it
            assert h.timestamp not in marked, h.sequence_number
        if h.marker:
            marked.add(h.timestamp)
    # in picture order: once a T0 picture lacks its chain frame, no chain until a keyframe
    chain_ok = True
    ended = 0
    for _, picture in pictures(in_sequence_order(lossy.packets)):
        first = picture[0][1]
        if is_keyframe("VP9", first):
            chain_ok = True
        layers = [parse_vp9_descriptor(p[h.payload_offset : h.payload_end]) for h, p in picture]
        has_chain = any(d.sid == 1 for d in layers)
        if layers[0].tid == 0 and not has_chain and chain_ok:
            chain_ok = False
            ended += 1
        assert chain_ok or not has_chain
        chain_late += not chain_ok
    assert ended >= 1 and chain_late > 0  # the loss did end the chain

    # the top layer is all there: every picture's S2 frame, as without loss
    def top(packets: list[bytes]) -> list[int]:
        ts0 = parse_rtp(packets[0]).timestamp
        ends = []
        for p in packets:
            h = parse_rtp(p)
            d = parse_vp9_descriptor(p[h.payload_offset : h.payload_end])
            if d.sid == 2 and d.end_of_frame:
                ends.append((h.timestamp - ts0) & 0xFFFFFFFF)
        return sorted(ends)

    assert top(lossy.packets) == top(clean.packets)
    # what the receiver assembles: the complete frames (a frame missing its dropped packet
    # never leaves its packet buffer); every picture decodes from them
    whole = []
    for _, picture in pictures(in_sequence_order(lossy.packets)):
        frames: dict[int, list[tuple[int, bytes, bool, bool]]] = {}
        for h, p in picture:
            d = parse_vp9_descriptor(p[h.payload_offset : h.payload_end])
            frames.setdefault(d.sid, []).append(
                (h.sequence_number, p, d.start_of_frame, d.end_of_frame)
            )
        for parts in frames.values():
            seqs = [q for q, _, _, _ in parts]
            contiguous = all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
            if parts[0][2] and parts[-1][3] and contiguous:
                whole += [p for _, p, _, _ in parts]
    decoded = decode("VP9", whole)
    assert len(decoded) == sum(1 for _ in pictures(clean.packets))
    assert lossy.plis == clean.plis


@pytest.mark.parametrize("name,codec", [(VP9, "VP9"), (AV1, "AV1")])
def test_a_restart_forwards_nothing_until_a_keyframe_at_the_target(name: str, codec: str) -> None:
    """After the receiver lost its chain (Selector.restart): no packet until the next
    keyframe, which starts the target layers; everything forwarded decodes, and the stream
    stays continuous (sequence numbers, and pictures as the decoder sees them)."""
    capture = load(name)
    n = len(capture.packets)
    result = forward(capture, {0: (2, 2), n // 3: (1, 0)}, loops=2, restart_at=n // 3)
    at = next(sent for sent, s, _ in result.layer_log if s == -1)
    # the rest of the frame in progress, then nothing before the keyframe
    in_progress = parse_rtp(result.packets[at - 1]).timestamp
    after = [p for p in result.packets[at:] if parse_rtp(p).timestamp != in_progress]
    assert after and is_keyframe(codec, after[0])
    assert len(result.packets) - len(after) - at < 10
    seqs = [parse_rtp(p).sequence_number for p in result.packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    decoded = decode(codec, result.packets)
    assert len(decoded) == sum(1 for _ in pictures(result.packets))
    assert {(w, h) for _, w, h in decoded if _ >= at} == {(640, 360)}
