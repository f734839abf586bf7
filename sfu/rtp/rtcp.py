"""RTCP packets (RFC 3550, RFC 4585 feedback, RFC 5104 FIR, REMB draft).

:func:`parse_rtcp` turns a compound packet into typed packets and never raises anything
but :class:`RtcpError`; the ``build_*`` functions produce wire bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206

RTPFB_NACK = 1
RTPFB_TWCC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_APP = 15

_COMMON = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IB3sIIII")


class RtcpError(ValueError):
    """A packet that is not valid RTCP."""


@dataclass(slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class Bye:
    sources: list[int]


@dataclass(slots=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]
    #: items (lost sequence numbers) beyond the parser's ``max_nack_items``: counted, not
    #: listed
    omitted: int = 0


@dataclass(slots=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass(slots=True)
class Fir:
    sender_ssrc: int
    entries: list[tuple[int, int]]  # (ssrc, command sequence number)


@dataclass(slots=True)
class Remb:
    sender_ssrc: int
    bitrate: int
    ssrcs: list[int]


@dataclass(slots=True)
class TransportFeedback:
    """Transport-wide congestion control feedback, kept raw (parsed by the estimator)."""

    sender_ssrc: int
    media_ssrc: int
    fci: bytes


RtcpPacket = SenderReport | ReceiverReport | Bye | Nack | Pli | Fir | Remb | TransportFeedback


def _parse_report_blocks(data: bytes, pos: int, count: int, end: int) -> list[ReportBlock]:
    if pos + count * 24 > end:
        raise RtcpError("RTCP report blocks are truncated")
    blocks = []
    for _ in range(count):
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        blocks.append(ReportBlock(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr))
        pos += 24
    return blocks


def _count_nack_items(fci: bytes, start: int, end: int) -> int:
    """Lost sequence numbers in the PID/BLP pairs of ``fci[start:end]`` (whole pairs): one
    per pair and one per bit set in its bitmask, counted without a loop in Python."""
    pairs = (end - start) // 4
    if pairs <= 0:
        return 0
    words = int.from_bytes(fci[start : start + 4 * pairs], "big")
    bitmasks = words & int.from_bytes(b"\x00\x00\xff\xff" * pairs, "big")
    return pairs + bitmasks.bit_count()


def parse_rtcp(data: bytes, max_nack_items: int | None = None) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; unknown packet types are skipped.

    ``max_nack_items``: at most that many lost sequence numbers are listed in all the NACKs
    of the compound packet together, in order; the rest are only counted
    (:attr:`Nack.omitted`), at a cost that does not grow with their number in Python."""
    packets: list[RtcpPacket] = []
    nack_room = max_nack_items
    pos = 0
    size = len(data)
    while pos < size:
        if pos + 4 > size:
            raise RtcpError("RTCP header is truncated")
        first, packet_type, length = _COMMON.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP packet has invalid version {first >> 6}")
        end = pos + 4 + length * 4
        if end > size:
            raise RtcpError("RTCP packet is truncated")
        count = first & 0x1F
        body = pos + 4
        if first & 0x20:  # padding
            if length == 0 or data[end - 1] > length * 4:
                raise RtcpError("RTCP packet has invalid padding")
        if packet_type == RTCP_SR:
            if body + 24 > end:
                raise RtcpError("RTCP SR is truncated")
            ssrc, ntp, rtp_ts, packets_sent, octets = struct.unpack_from("!IQIII", data, body)
            reports = _parse_report_blocks(data, body + 24, count, end)
            packets.append(SenderReport(ssrc, ntp, rtp_ts, packets_sent, octets, reports))
        elif packet_type == RTCP_RR:
            if body + 4 > end:
                raise RtcpError("RTCP RR is truncated")
            (ssrc,) = struct.unpack_from("!I", data, body)
            packets.append(ReceiverReport(ssrc, _parse_report_blocks(data, body + 4, count, end)))
        elif packet_type == RTCP_BYE:
            if body + count * 4 > end:
                raise RtcpError("RTCP BYE is truncated")
            packets.append(Bye(list(struct.unpack_from(f"!{count}I", data, body))))
        elif packet_type in (RTCP_RTPFB, RTCP_PSFB):
            if body + 8 > end:
                raise RtcpError("RTCP feedback is truncated")
            sender_ssrc, media_ssrc = struct.unpack_from("!II", data, body)
            fci = data[body + 8 : end]
            fmt = count
            if packet_type == RTCP_RTPFB and fmt == RTPFB_NACK:
                lost: list[int] = []
                end_pairs = len(fci) - len(fci) % 4
                i = 0
                while i < end_pairs and (nack_room is None or len(lost) < nack_room):
                    pid, blp = struct.unpack_from("!HH", fci, i)
                    lost.append(pid)
                    while blp:
                        low = blp & -blp
                        lost.append((pid + low.bit_length()) & 0xFFFF)
                        blp ^= low
                    i += 4
                omitted = 0
                if nack_room is not None:
                    if len(lost) > nack_room:
                        omitted = len(lost) - nack_room
                        del lost[nack_room:]
                    omitted += _count_nack_items(fci, i, end_pairs)
                    nack_room -= len(lost)
                packets.append(Nack(sender_ssrc, media_ssrc, lost, omitted))
            elif packet_type == RTCP_RTPFB and fmt == RTPFB_TWCC:
                packets.append(TransportFeedback(sender_ssrc, media_ssrc, fci))
            elif packet_type == RTCP_PSFB and fmt == PSFB_PLI:
                packets.append(Pli(sender_ssrc, media_ssrc))
            elif packet_type == RTCP_PSFB and fmt == PSFB_FIR:
                entries = [
                    (struct.unpack_from("!I", fci, i)[0], fci[i + 4])
                    for i in range(0, len(fci) - 7, 8)
                ]
                packets.append(Fir(sender_ssrc, entries))
            elif packet_type == RTCP_PSFB and fmt == PSFB_APP and fci[:4] == b"REMB":
                if len(fci) < 8:
                    raise RtcpError("RTCP REMB is truncated")
                num_ssrc = fci[4]
                exponent = fci[5] >> 2
                mantissa = ((fci[5] & 0x03) << 16) | (fci[6] << 8) | fci[7]
                if len(fci) < 8 + 4 * num_ssrc:
                    raise RtcpError("RTCP REMB SSRC list is truncated")
                ssrcs = list(struct.unpack_from(f"!{num_ssrc}I", fci, 8))
                packets.append(Remb(sender_ssrc, mantissa << exponent, ssrcs))
        pos = end
    return packets


def _header(count: int, packet_type: int, body_length: int) -> bytes:
    return _COMMON.pack(0x80 | count, packet_type, body_length // 4)


def _pack_blocks(reports: list[ReportBlock]) -> bytes:
    return b"".join(
        _REPORT_BLOCK.pack(
            r.ssrc,
            r.fraction_lost,
            (r.packets_lost & 0xFFFFFF).to_bytes(3, "big"),
            r.highest_sequence,
            r.jitter,
            r.lsr,
            r.dlsr,
        )
        for r in reports
    )


def build_sr(sr: SenderReport) -> bytes:
    body = struct.pack(
        "!IQIII",
        sr.ssrc,
        sr.ntp_timestamp,
        sr.rtp_timestamp,
        sr.packet_count & 0xFFFFFFFF,
        sr.octet_count & 0xFFFFFFFF,
    ) + _pack_blocks(sr.reports)
    return _header(len(sr.reports), RTCP_SR, len(body)) + body


def build_rr(rr: ReceiverReport) -> bytes:
    body = struct.pack("!I", rr.ssrc) + _pack_blocks(rr.reports)
    return _header(len(rr.reports), RTCP_RR, len(body)) + body


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    value = cname.encode("utf8")[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(value)) + value + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _header(1, RTCP_SDES, len(chunk)) + chunk


def build_bye(sources: list[int]) -> bytes:
    body = b"".join(struct.pack("!I", s) for s in sources)
    return _header(len(sources), RTCP_BYE, len(body)) + body


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _header(PSFB_PLI, RTCP_PSFB, 8) + struct.pack("!II", sender_ssrc, media_ssrc)


def build_fir(sender_ssrc: int, media_ssrc: int, sequence: int) -> bytes:
    body = struct.pack("!IIIB3x", sender_ssrc, 0, media_ssrc, sequence & 0xFF)
    return _header(PSFB_FIR, RTCP_PSFB, len(body)) + body


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """Generic NACK, packing the lost sequence numbers into PID/BLP pairs."""
    fci = bytearray()
    pending = sorted(set(lost), key=lambda s: (s - lost[0]) & 0xFFFF) if lost else []
    i = 0
    while i < len(pending):
        pid = pending[i]
        blp = 0
        i += 1
        while i < len(pending):
            delta = (pending[i] - pid) & 0xFFFF
            if delta > 16:
                break
            blp |= 1 << (delta - 1)
            i += 1
        fci += struct.pack("!HH", pid, blp)
    body = struct.pack("!II", sender_ssrc, media_ssrc) + bytes(fci)
    return _header(RTPFB_NACK, RTCP_RTPFB, len(body)) + body


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exponent = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exponent += 1
    fci = b"REMB" + bytes(
        [len(ssrcs), (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF]
    )
    fci += b"".join(struct.pack("!I", s) for s in ssrcs)
    body = struct.pack("!II", sender_ssrc, 0) + fci
    return _header(PSFB_APP, RTCP_PSFB, len(body)) + body
