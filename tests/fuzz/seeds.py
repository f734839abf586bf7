"""Seed inputs for the fuzz targets, made from the test fixtures (real Chromium captures,
the example settings files) and the module's own builders: valid inputs the fuzzer mutates."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from loadtest.capturefile import read_capture
from sfu.auth.tokens import create_token
from sfu.rtp import extensions as ext
from sfu.rtp import rtcp
from sfu.rtp.packet import build_rtp, parse_rtp
from sfu.rtp.twcc import TransportFeedbackBuilder

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "fixtures" / "captures"
PER_CAPTURE = 40


def _captures() -> dict[str, list[bytes]]:
    return {
        path.stem: [p for _, p in read_capture(path).packets]
        for path in sorted(CAPTURES.glob("*.sfucap"))
    }


def _payloads(packets: list[bytes]) -> list[bytes]:
    out = []
    for packet in packets[:PER_CAPTURE]:
        h = parse_rtp(packet)
        out.append(packet[h.payload_offset : h.payload_end])
    return out


def _dd_values(packets: list[bytes]) -> list[bytes]:
    dd_id = read_capture(CAPTURES / "av1_L3T3.sfucap").info.extensions[ext.DEPENDENCY_DESCRIPTOR]
    return [v for p in packets if (v := parse_rtp(p).extensions.get(dd_id)) is not None]


def _rtcp_packets() -> list[bytes]:
    block = rtcp.ReportBlock(0x3333, 12, -3, 70000, 45, 0x12345678, 655)
    feedback = TransportFeedbackBuilder(1, 2)
    for i, seq in enumerate([1, 2, 3, 5, 8, 9, 400, 401]):
        feedback.on_packet(seq, 5.0 + i * 0.004)
    packets = [
        rtcp.build_sr(rtcp.SenderReport(0x1111, 1 << 40, 90000, 100, 100_000, [block])),
        rtcp.build_rr(rtcp.ReceiverReport(0x5555, [block, block])),
        rtcp.build_bye([0x1111, 0x2222]),
        rtcp.build_pli(0x5555, 0x3333),
        rtcp.build_fir(0x5555, 0x3333, 9),
        rtcp.build_nack(0x5555, 0x3333, [10, 11, 13, 40, 65535, 0]),
        rtcp.build_remb(0x5555, 2_500_000, [0x3333, 0x4444]),
        rtcp.build_sdes_cname(0x1111, "cname"),
        *feedback.build(),
    ]
    return packets + [packets[1] + packets[3] + packets[5]]


def _subscriber_rtcp() -> list[bytes]:
    """Inputs of the ``subscriber_rtcp`` target: records (u16 size, datagram): transport-wide
    feedbacks of the packets the target sends (padded and not), and other RTCP."""
    builder = TransportFeedbackBuilder(1, 2)
    records = []
    for n in range(300):
        builder.on_packet(n, 1.02 + n * 0.006)
        if n % 25 == 24:
            records += builder.build()
    # the builder pads; without the padding bit, the same bytes are an unpadded feedback
    # whose FCI ends in bytes the parser skips
    records = [d if i % 2 else b"\x8f" + d[1:] for i, d in enumerate(records)]
    other = _rtcp_packets()
    mixed = records[:3] + other[:2] + records[3:6] + [records[6][:-4]] + records[6:]
    return [
        b"".join(len(d).to_bytes(2, "big") + d for d in datagrams)
        for datagrams in (records, mixed, other)
    ]


def _media(captures: dict[str, list[bytes]]) -> list[bytes]:
    """Inputs of the ``media`` target: a codec byte, then records (kind, u16 size, bytes)."""
    dd_id = read_capture(CAPTURES / "av1_L3T3.sfucap").info.extensions[ext.DEPENDENCY_DESCRIPTOR]
    feedback = [rtcp.build_nack(9, 0x3333, [3, 4, 9]), rtcp.build_pli(9, 0x3333)]
    out = []
    for codec_byte, name in ((0x10, "vp8_L1T3"), (0x11, "vp9_L3T3_KEY"), (0x12, "av1_L3T3")):
        records = bytearray([codec_byte])
        for i, packet in enumerate(captures[name][:PER_CAPTURE]):
            h = parse_rtp(packet)
            dd = h.extensions.get(dd_id)
            rebuilt = build_rtp(
                payload_type=96,
                sequence_number=h.sequence_number,
                timestamp=h.timestamp,
                ssrc=0x1111,
                payload=packet[h.payload_offset : h.payload_end],
                marker=h.marker,
                extensions=[(5, dd)] if dd is not None else [],
            )
            records += struct.pack("!BH", 2 if i % 10 == 9 else 0, len(rebuilt)) + rebuilt
            if i % 15 == 14:
                fb = feedback[i % 2]
                records += struct.pack("!BH", 1, len(fb)) + fb
        out.append(bytes(records))
    return out


def _messages() -> list[bytes]:
    sdp = (ROOT / "tests" / "fixtures" / "chromium156_offer_all_codecs.sdp").read_text()
    messages = [
        {"type": "join", "room": "demo", "name": "ann", "id": 1},
        {"type": "join", "room": "r", "name": "b", "role": "presenter", "token": "a.b"},
        {"type": "publish", "sdp": sdp, "scalability_mode": "L3T3_KEY", "sources": {"0": "screen"}},
        {"type": "subscribe_answer", "sdp": "v=0\r\n", "id": "x"},
        {"type": "leave"},
        {"type": "ping", "id": 7},
        {"type": "window", "track_id": "p:1", "width": 640, "height": 360},
        {"type": "set_level", "track_id": "p:1", "spatial": 1, "temporal": 2},
        {"type": "auto", "track_id": "p:1"},
        {"type": "levels", "track_id": "p:1", "id": 3},
        {"type": "stats", "id": 4},
    ]
    return [json.dumps(message).encode() for message in messages]


def _session() -> list[bytes]:
    lines = [json.loads(m) for m in _messages()]
    join, publish = lines[0], lines[2]
    return [
        "\n".join(json.dumps(x) for x in (join, *lines[4:])).encode(),
        "\n".join(json.dumps(x) for x in (join, publish, lines[6], lines[9], lines[4])).encode(),
        b'{"type": "window"}\n[]\n{"type":"join","room":"a","name":"b"}\n{"type":"join"}',
    ]


def _subscriber() -> list[bytes]:
    """Lines of a subscriber: a real answer (an aiortc peer's) to the server's offer, then
    requests about the track."""
    import asyncio

    from aiortc import RTCSessionDescription
    from targets import SUBSCRIBER_JOIN, _FakeSocket, _room_with_a_publisher

    from sfu.adapters import aiortc_plane as plane
    from sfu.signaling.server import SignalingSession

    async def answer() -> str:
        plane.install()
        rooms = await _room_with_a_publisher()
        ws = _FakeSocket()
        session = SignalingSession(ws, rooms)  # type: ignore[arg-type]
        await session.handle(SUBSCRIBER_JOIN)
        offer = next(json.loads(t)["sdp"] for t in ws.sent if '"subscribe_offer"' in t)
        pc = plane.create_peer_connection()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return str(pc.localDescription.sdp)
        finally:
            await pc.close()
            await session.leave()
            await rooms.close()

    sdp = asyncio.run(answer())
    lines = [
        {"type": "subscribe_answer", "sdp": sdp, "id": 2},
        {"type": "window", "track_id": "pub:0", "width": 320, "height": 180},
        {"type": "set_level", "track_id": "pub:0", "spatial": 0, "temporal": 1, "id": 3},
        {"type": "levels", "track_id": "pub:0", "id": 4},
        {"type": "stats", "id": 5},
        {"type": "leave", "id": 6},
    ]
    return [
        "\n".join(json.dumps(x) for x in lines).encode(),
        json.dumps(lines[0]).encode(),
        "\n".join(json.dumps(x) for x in (lines[0], lines[0], lines[3])).encode(),
    ]


def _tokens() -> list[bytes]:
    token = create_token(b"k" * 32, room="r*", identity="ann", grants={"publish"}, ttl=60, now=1e9)
    claims = {"room": "r", "sub": "ann", "grants": ["publish"], "exp": 2e9}
    return [f"{token}\nroom".encode(), json.dumps(claims).encode(), b"{}", b"e30.e30"]


def _twcc_events() -> list[bytes]:
    steady = b"".join(struct.pack("!HH", i, 40 + (i % 3)) for i in range(60))
    wrapping = b"".join(struct.pack("!HH", (65530 + 7 * i) & 0xFFFF, 9) for i in range(40))
    return [steady, wrapping]


def seeds() -> dict[str, list[bytes]]:
    captures = _captures()
    rtcp_packets = _rtcp_packets()
    twcc_fci = [
        p.fci
        for packet in rtcp_packets
        for p in rtcp.parse_rtcp(packet)
        if isinstance(p, rtcp.TransportFeedback)
    ]
    dd = _dd_values(captures["av1_L3T3"])
    configs = [p.read_bytes() for p in sorted((ROOT / "configs").glob("*.yaml"))]
    return {
        "rtp": [p for packets in captures.values() for p in packets[:PER_CAPTURE]],
        "rtcp_compound": rtcp_packets,
        "twcc": twcc_fci,
        "twcc_builder": _twcc_events(),
        "vp8": _payloads(captures["vp8_L1T3"]),
        "vp9": _payloads(captures["vp9_L3T3_KEY"]),
        "av1_dd": [bytes([len(dd[0])]) + dd[0] + v for v in dd[:PER_CAPTURE]],
        "media": _media(captures),
        "messages": _messages(),
        "session": _session(),
        "subscriber": _subscriber(),
        "subscriber_rtcp": _subscriber_rtcp(),
        "config": configs + [b"", b"http: {port: 9000}\n"],
        "tokens": _tokens(),
    }


def _schema_names(model: Any) -> set[str]:
    """Every field name of a pydantic model, its nested models' included."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for arg in _nested_models(info.annotation):
            names |= _schema_names(arg)
    return names


def _nested_models(annotation: Any) -> list[Any]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _nested_models(arg)]


def dictionaries() -> dict[str, list[bytes]]:
    """libFuzzer dictionaries: the words of the text formats (keys, values, syntax)."""
    from sfu import protocol as m
    from sfu.config import Settings

    yaml_syntax = [": ", "- ", "{", "}", "[", "]", ", ", "\n  ", "&a ", "*a", "<<: ", "!!str ",
                   "!!int ", "!!float ", "~", "null", "true", ".inf", "-.inf", ".nan", "1e400",
                   "0x10", "'", '"', "? ", "---\n", "...\n", "#", "2.5M", "500k", "800kbps",
                   "L3T3_KEY", "VP9", "AV1", "camera", "screen", "webinar-*"]  # fmt: skip
    message_names = {
        name
        for cls in (m.Join, m.Publish, m.SubscribeAnswer, m.Window, m.SetLevel, m.Auto)
        for name in cls.model_fields
    }
    types = ["join", "publish", "subscribe_answer", "leave", "ping", "window", "set_level",
             "auto", "levels", "stats"]  # fmt: skip
    json_syntax = ['{"', '":', '"', ",", "[", "]", "{", "}", "null", "true", "1e999", "-0",
                   "\\u0000", "\\ud800", "[[[[[[[[", "{\"a\":{\"a\":"]  # fmt: skip
    return {
        "config": [w.encode() for w in sorted(_schema_names(Settings)) + yaml_syntax],
        "messages": [w.encode() for w in sorted(message_names) + types + json_syntax],
        "session": [w.encode() for w in sorted(message_names) + types + json_syntax + ["\n"]],
        "subscriber": [
            w.encode()
            for w in [
                "a=group:BUNDLE ",
                "a=mid:",
                "a=setup:active",
                "a=setup:passive",
                "a=sendonly",
                "a=recvonly",
                "a=inactive",
                "m=video ",
                "m=audio ",
                "a=rtpmap:",
                "a=fmtp:",
                "a=extmap:",
                "a=ssrc:",
                "\\r\\n",
                "\n",
            ]
        ],  # fmt: skip
        "tokens": [
            w.encode()
            for w in [
                '"room"',
                '"sub"',
                '"grants"',
                '"exp"',
                "publish",
                "{",
                "}",
                "[",
                "]",
                "1e999",
                "null",
                ":",
                ",",
            ]
        ],  # fmt: skip
    }
