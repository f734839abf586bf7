"""Fuzz targets: each takes arbitrary bytes and checks one parser's documented contract.

A target returns normally when the contract holds (the input was accepted, or refused with
the parser's own error type) and raises anything else when it does not: another exception
escaping the parser, a failed round trip, an out-of-range field.  The drivers
(``fuzz_sfu.py``: atheris, or hypothesis without it) and the normal test suite
(``tests/test_fuzz_targets.py``: the seeds and every input that once failed) call them.
"""

from __future__ import annotations

import asyncio
import functools
import random
import struct
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import ValidationError

from sfu import protocol as m
from sfu.adapters.peers import PeerSettings, SubscriberPeer
from sfu.auth.tokens import TokenError, verify_token
from sfu.codecs.av1_dd import (
    DependencyDescriptor,
    TemplateStructure,
    parse_dependency_descriptor,
    serialize_dependency_descriptor,
)
from sfu.codecs.errors import CodecError
from sfu.codecs.vp8 import parse_vp8_descriptor, rewrite_vp8_descriptor
from sfu.codecs.vp9 import parse_vp9_descriptor, rewrite_vp9_descriptor
from sfu.config import ConfigError, Settings, parse_settings
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.forwarding.track import StreamParameters
from sfu.rooms.participant import Participant
from sfu.rooms.room import RoomManager
from sfu.rtp import extensions as ext
from sfu.rtp import rtcp
from sfu.rtp.packet import (
    RtpError,
    build_rtp,
    first_extension_offset,
    parse_rtp,
    unwrap_rtx,
    wrap_rtx,
)
from sfu.rtp.twcc import TransportFeedbackBuilder, parse_transport_feedback
from sfu.signaling.server import SignalingSession

Target = Callable[[bytes], None]
TARGETS: dict[str, Target] = {}


def target(fn: Target) -> Target:
    TARGETS[fn.__name__] = fn
    return fn


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- RTP ---------------------------------------------------------------------------------


@target
def rtp(data: bytes) -> None:
    """parse_rtp raises only RtpError; what it accepts is rebuilt to the same fields, and
    survives an RTX wrap/unwrap unchanged."""
    try:
        h = parse_rtp(data)
    except RtpError:
        return
    assert 12 <= h.payload_offset <= h.payload_end <= len(data), (h.payload_offset, h.payload_end)
    assert all(1 <= i <= 255 for i in h.extensions), h.extensions
    payload = data[h.payload_offset : h.payload_end]
    rebuilt = build_rtp(
        payload_type=h.payload_type,
        sequence_number=h.sequence_number,
        timestamp=h.timestamp,
        ssrc=h.ssrc,
        payload=payload,
        marker=h.marker,
        extensions=list(h.extensions.items()),
    )
    r = parse_rtp(rebuilt)
    fields = ("marker", "payload_type", "sequence_number", "timestamp", "ssrc", "extensions")
    assert all(getattr(r, f) == getattr(h, f) for f in fields), (h, r)
    assert rebuilt[r.payload_offset : r.payload_end] == payload
    wrapped = wrap_rtx(rebuilt, 97, 1234, 0xCAFE)
    w = parse_rtp(wrapped)
    assert (w.payload_type, w.sequence_number, w.ssrc) == (97, 1234, 0xCAFE)
    assert unwrap_rtx(wrapped, w, h.payload_type, h.ssrc) == rebuilt
    offset = first_extension_offset(data, 1)
    assert offset is None or 12 < offset < len(data)


# -- RTCP --------------------------------------------------------------------------------


def _rebuild(packet: rtcp.RtcpPacket) -> bytes | None:
    """The packet serialized again, where the module has a builder for it."""
    if isinstance(packet, rtcp.SenderReport):
        return rtcp.build_sr(packet) if len(packet.reports) < 32 else None
    if isinstance(packet, rtcp.ReceiverReport):
        return rtcp.build_rr(packet) if len(packet.reports) < 32 else None
    if isinstance(packet, rtcp.Bye):
        return rtcp.build_bye(packet.sources) if len(packet.sources) < 32 else None
    if isinstance(packet, rtcp.Pli):
        return rtcp.build_pli(packet.sender_ssrc, packet.media_ssrc)
    if isinstance(packet, rtcp.Nack):
        return rtcp.build_nack(packet.sender_ssrc, packet.media_ssrc, packet.lost)
    if isinstance(packet, rtcp.Remb):
        return rtcp.build_remb(packet.sender_ssrc, packet.bitrate, packet.ssrcs)
    return None


@target
def rtcp_compound(data: bytes) -> None:
    """parse_rtcp raises only RtcpError; every packet the module can build comes back the
    same from its builder; with a cap on NACK items, the NACKs list the first items of the
    compound packet up to the cap and count the rest, the other packets are the same."""
    try:
        packets = rtcp.parse_rtcp(data)
    except rtcp.RtcpError:
        return
    for packet in packets:
        rebuilt = _rebuild(packet)
        if rebuilt is None:
            continue
        (again,) = rtcp.parse_rtcp(rebuilt)
        if isinstance(packet, rtcp.Nack):
            # the builder sorts and merges: the same set of sequence numbers
            assert isinstance(again, rtcp.Nack) and set(again.lost) == set(packet.lost)
        elif isinstance(packet, rtcp.Remb):
            # the mantissa is 18 bits: a bitrate wider than that loses its low bits
            assert isinstance(again, rtcp.Remb) and again.ssrcs == packet.ssrcs
            assert again.bitrate <= packet.bitrate
            assert again.bitrate >= packet.bitrate - (packet.bitrate >> 17), (packet, again)
        else:
            assert again == packet, (packet, again)
    cap = data[-1] if data else 0
    capped = rtcp.parse_rtcp(data, cap)
    assert len(capped) == len(packets)
    listed = total = 0
    for full, part in zip(packets, capped, strict=True):
        if isinstance(full, rtcp.Nack):
            assert isinstance(part, rtcp.Nack) and part.lost == full.lost[: len(part.lost)]
            assert len(part.lost) + part.omitted == len(full.lost)
            listed += len(part.lost)
            total += len(full.lost)
        else:
            assert part == full
    assert listed == min(cap, total)


# -- transport-wide congestion control ----------------------------------------------------


@target
def twcc(data: bytes) -> None:
    """parse_transport_feedback raises only RtcpError; sequence numbers are consecutive
    mod 2^16 from the base, one per reported status."""
    try:
        report = parse_transport_feedback(data)
    except rtcp.RtcpError:
        return
    for i, (sequence, _) in enumerate(report.packets):
        assert sequence == (report.base_sequence + i) & 0xFFFF


_WRAP = (1 << 24) * 0.064  # the reference time's period


@target
def twcc_builder(data: bytes) -> None:
    """A publisher chooses the transport-wide sequence numbers: whatever they are, the
    feedback built parses, and reports each packet it says was received at its arrival
    time (to a tick, modulo the reference time's wrap)."""
    builder = TransportFeedbackBuilder(1, 2)
    arrivals: dict[int, list[float]] = {}  # by 16-bit sequence number (it may wrap)
    now = 1000.0
    for i in range(0, min(len(data), 4 * 128) - 3, 4):  # 128 packets (each build is slow)
        sequence, step = struct.unpack_from("!HH", data, i)
        now += step / 10_000
        builder.on_packet(sequence, now)
        arrivals.setdefault(sequence, []).append(now)
        if step & 0x0F == 1:  # now and then: each build walks up to 16384 numbers
            _check_feedback(builder.build(), arrivals)
    _check_feedback(builder.build(), arrivals)


def _check_feedback(packets: list[bytes], arrivals: dict[int, list[float]]) -> None:
    for packet in packets:
        assert len(packet) <= 1200
        (feedback,) = rtcp.parse_rtcp(packet)
        assert isinstance(feedback, rtcp.TransportFeedback)
        report = parse_transport_feedback(feedback.fci)
        for sequence, arrival in report.packets:
            if arrival is None:
                continue
            assert sequence in arrivals, sequence
            errors = [(arrival - at) % _WRAP for at in arrivals[sequence]]
            assert any(min(e, _WRAP - e) < 0.0002 for e in errors), (sequence, arrival, arrivals)


# -- codecs ------------------------------------------------------------------------------


def _rewrite_ids(data: bytes, d: Any, rewrite: Any, parse: Any) -> Any:
    """A VP8/VP9 descriptor ``d`` of ``data`` rewritten with picture id 0x5A5A and TL0PICIDX
    0xA5: the payload and the size stay, those fields (where present) change; the
    rewritten descriptor, parsed."""
    out = rewrite(data, d, picture_id=0x5A5A, tl0picidx=0xA5)
    assert len(out) == len(data) and out[d.size :] == data[d.size :]
    again = parse(out)
    expected = d.picture_id if d.picture_id is None else 0x5A5A & ((1 << d.picture_id_bits) - 1)
    assert again.picture_id == expected, (d, again)
    assert again.tl0picidx == (None if d.tl0picidx is None else 0xA5)
    return again


@target
def vp8(data: bytes) -> None:
    """parse_vp8_descriptor raises only CodecError; rewriting the picture id and TL0PICIDX
    changes those fields and nothing else."""
    try:
        d = parse_vp8_descriptor(data)
    except CodecError:
        return
    assert 1 <= d.size < len(data)
    again = _rewrite_ids(data, d, rewrite_vp8_descriptor, parse_vp8_descriptor)
    same = ("size", "picture_id_bits", "tid", "key_idx", "keyframe", "partition_index")
    assert all(getattr(again, f) == getattr(d, f) for f in same), (d, again)


@target
def vp9(data: bytes) -> None:
    """parse_vp9_descriptor raises only CodecError; rewriting the picture id and TL0PICIDX
    changes those fields and nothing else."""
    try:
        d = parse_vp9_descriptor(data)
    except CodecError:
        return
    assert 1 <= d.size <= len(data)
    assert len(d.reference_diffs) <= 3
    again = _rewrite_ids(data, d, rewrite_vp9_descriptor, parse_vp9_descriptor)
    assert again.ss == d.ss and again.reference_diffs == d.reference_diffs
    assert (again.sid, again.tid, again.size, again.keyframe) == (d.sid, d.tid, d.size, d.keyframe)


def _dd_round_trip(dd: DependencyDescriptor, structure: TemplateStructure) -> None:
    out = serialize_dependency_descriptor(
        dd,
        structure,
        attach_structure=dd.structure is not None,
        active_decode_targets_bitmask=dd.active_decode_targets_bitmask,
    )
    again = parse_dependency_descriptor(out, structure)
    assert again == dd, (dd, again)


@target
def av1_dd(data: bytes) -> None:
    """parse_dependency_descriptor raises only CodecError, with or without a known
    structure; what it accepts serializes back to the same descriptor.  The first byte
    splits the input: a descriptor that should carry a structure, then one using it."""
    cut = data[0] if data else 0
    first, second = data[1 : 1 + cut], data[1 + cut :]
    try:
        dd = parse_dependency_descriptor(first, None)
    except CodecError:
        structure = None
    else:
        assert dd.structure is not None  # no structure known: it had to bring one
        structure = dd.structure
        _dd_round_trip(dd, structure)
    try:
        dd = parse_dependency_descriptor(second, structure)
    except CodecError:
        return
    used = dd.structure or structure
    assert used is not None
    _dd_round_trip(dd, used)


# -- the ingress/egress path: a published stream forwarded to one subscriber --------------

_MEDIA_CODECS = ("video/VP8", "video/VP9", "video/AV1", "audio/opus")
_DD_ID = 5
_TWCC_ID = 3


@target
def media(data: bytes) -> None:
    """A publisher and a subscriber send anything: RTP into a MediaSource (as
    PublisherPeer.on_rtp does) and RTCP to its DownTrack (as SubscriberPeer.on_rtcp does).
    Nothing raises, and every packet sent to the subscriber is RTP of its own SSRCs."""
    if not data:
        return
    random.seed(data[0])
    mime = _MEDIA_CODECS[data[0] % len(_MEDIA_CODECS)]
    kind = mime.split("/")[0]
    extensions = {ext.TRANSPORT_WIDE_CC: _TWCC_ID}
    if data[0] & 0x10 and kind == "video":
        extensions[ext.DEPENDENCY_DESCRIPTOR] = _DD_ID
    params = StreamParameters(
        kind=kind,
        mime_type=mime,
        clock_rate=90000 if kind == "video" else 48000,
        payload_type=96,
        ssrc=0x1111,
        rtx_payload_type=97,
        rtx_ssrc=0x2222,
        extensions=extensions,
    )
    upstream: list[bytes] = []
    source = MediaSource("p:0", params, send_rtcp=upstream.append, rtcp_ssrc=7)
    sent: list[bytes] = []
    downtrack = DownTrack(
        source,
        ssrc=0x3333,
        payload_type=100,
        send=sent.append,
        rtx_ssrc=0x4444,
        rtx_payload_type=101,
    )
    now = 10.0
    source.attach(downtrack, now)
    pos = 1
    while pos + 3 <= len(data):
        kind_byte, size = data[pos], (data[pos + 1] << 8) | data[pos + 2]
        chunk = data[pos + 3 : pos + 3 + size]
        pos += 3 + size
        now += 0.01
        if kind_byte & 1:
            try:
                packets = rtcp.parse_rtcp(chunk)
            except rtcp.RtcpError:
                continue
            for packet in packets:
                downtrack.handle_rtcp(packet, now)
        else:
            try:
                header = parse_rtp(chunk)
            except RtpError:
                continue
            if header.ssrc in (params.ssrc, params.rtx_ssrc):
                source.on_rtp(chunk, header, now)
        if kind_byte & 2:
            source.tick(now)
            downtrack.sender_report(now)
    for packet in sent:
        h = parse_rtp(packet)
        assert (h.ssrc, h.payload_type) in ((0x3333, 100), (0x4444, 101)), (h.ssrc, h.payload_type)
    for packet in upstream:
        rtcp.parse_rtcp(packet)


# -- signaling ---------------------------------------------------------------------------


@target
def messages(data: bytes) -> None:
    """A client's text: validation raises only ValidationError; a valid message survives a
    JSON round trip."""
    try:
        message = m.client_message.validate_json(data)
    except ValidationError:
        return
    again = m.client_message.validate_json(message.model_dump_json())
    assert again == message, (message, again)


class _FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text)


@functools.cache
def _server_message() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(m.ServerMessage)


async def _handle_then_leave(
    session: SignalingSession, ws: _FakeSocket, rooms: RoomManager, data: bytes
) -> None:
    """``data``'s lines (20 at most) through ``session.handle``, then its leave: nothing
    raises, the rooms go, and every reply was a valid server message."""
    for line in _text(data).split("\n")[:20]:
        await session.handle(line)
    await session.leave()
    await rooms.close()
    assert not rooms.rooms, rooms.rooms
    for text in ws.sent:
        _server_message().validate_json(text)


@target
def session(data: bytes) -> None:
    """One connection's messages (a line each) through SignalingSession.handle: nothing
    raises, every reply is a valid server message, and leaving frees the room."""

    async def run() -> None:
        rooms = RoomManager()
        ws = _FakeSocket()
        session = SignalingSession(ws, rooms)  # type: ignore[arg-type]
        await _handle_then_leave(session, ws, rooms, data)

    asyncio.run(run())


SUBSCRIBER_JOIN = '{"type": "join", "room": "demo", "name": "sub", "id": 1}'


async def _room_with_a_publisher() -> RoomManager:
    """A room "demo" where a (simulated) participant publishes one VP8 track, "pub:0"."""

    async def discard(message: m.ServerMessage) -> None:
        pass

    rooms = RoomManager()
    room = rooms.get_or_create("demo")
    publisher = Participant("pub", discard)
    await room.join(publisher)
    params = StreamParameters(
        kind="video", mime_type="video/VP8", clock_rate=90000, payload_type=96, ssrc=0x1111
    )
    room.publish(publisher, MediaSource("pub:0", params, send_rtcp=len, rtcp_ssrc=7))
    return rooms


@target
def subscriber(data: bytes) -> None:
    """A subscriber's messages (a line each, its SDP answers above all) after it joined a
    room with a publisher and got the server's offer: nothing raises, every reply is a valid
    server message, and when everybody leaves the room goes."""

    async def run() -> None:
        rooms = await _room_with_a_publisher()
        ws = _FakeSocket()
        session = SignalingSession(ws, rooms)  # type: ignore[arg-type]
        await session.handle(SUBSCRIBER_JOIN)
        assert any('"subscribe_offer"' in text for text in ws.sent), ws.sent
        await _handle_then_leave(session, ws, rooms, data)

    asyncio.run(run())


@target
def subscriber_rtcp(data: bytes) -> None:
    """A subscriber sends any RTCP datagrams (after the SFU sent it 300 packets): nothing
    raises, and what a datagram does to the estimate is the same whether it takes the short
    path of a lone transport-wide feedback or goes through the RTCP parser (the same
    datagram after a receiver report)."""

    async def run() -> None:
        settings = PeerSettings(bandwidth_estimation=True)
        alone, parsed = (
            SubscriberPeer(lambda sdp: asyncio.sleep(0), settings),
            SubscriberPeer(lambda sdp: asyncio.sleep(0), settings),
        )
        rr = rtcp.build_rr(rtcp.ReceiverReport(1, []))
        try:
            for n in range(300):
                for peer in (alone, parsed):
                    peer.congestion.stamp(1200, 1.0 + n * 0.004)
            now = 3.0
            pos = 0
            while pos + 2 <= len(data):  # records: u16 size, then the datagram
                size = (data[pos] << 8) | data[pos + 1]
                datagram = data[pos + 2 : pos + 2 + size]
                pos += 2 + size
                now += 0.05
                if not datagram:
                    continue
                alone.on_rtcp(datagram, now)
                parsed.on_rtcp(rr + datagram, now)
                a, b = alone.congestion, parsed.congestion
                assert (a.estimate, a.feedback_seen, a.refused_feedback) == (
                    b.estimate,
                    b.feedback_seen,
                    b.refused_feedback,
                ), datagram.hex()
                # a datagram the parser refuses whole is refused whole beside the report
                assert a.malformed_feedback + alone.malformed_rtcp <= (
                    b.malformed_feedback + parsed.malformed_rtcp
                )
        finally:
            await alone.close()
            await parsed.close()

    asyncio.run(run())


# -- settings ----------------------------------------------------------------------------


@target
def config(data: bytes) -> None:
    """A settings file: parse_settings raises only ConfigError; valid settings written out
    as YAML read back the same."""
    try:
        settings = parse_settings(_text(data), "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems and all(p.startswith("fuzz.yaml") for p in exc.problems), exc
        return
    dumped = yaml.safe_dump(settings.model_dump(mode="json"))
    again = parse_settings(dumped, "dumped.yaml")
    assert again == settings, (settings, again)
    assert isinstance(again, Settings)


# -- access tokens -----------------------------------------------------------------------


@target
def tokens(data: bytes) -> None:
    """verify_token raises only TokenError: for any token text, and for any claims (JSON or
    not) signed with the right key."""
    token, _, room = _text(data).partition("\n")
    for candidate in (token, _signed(data)):
        for grant in (None, "publish"):
            try:
                verify_token(TOKEN_SECRET, candidate, room=room or "r", now=1e9, grant=grant)
            except TokenError:
                pass


TOKEN_SECRET = b"k" * 32


def _signed(body: bytes) -> str:
    """A token whose claims are ``body``, signed with TOKEN_SECRET."""
    import base64

    from cryptography.hazmat.primitives import hashes, hmac

    encoded = base64.urlsafe_b64encode(body).rstrip(b"=")
    mac = hmac.HMAC(TOKEN_SECRET, hashes.SHA256())
    mac.update(encoded)
    signature = base64.urlsafe_b64encode(mac.finalize()).rstrip(b"=")
    return f"{encoded.decode()}.{signature.decode()}"
