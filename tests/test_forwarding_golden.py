"""The forwarding path's output, byte for byte, on the committed captures.

Every packet the down tracks send (media, retransmissions, padding) for each committed
capture, replayed with losses, reordering and duplicates, to subscribers at various layer
targets that change on the way, with and without transport-wide sequence numbers, is hashed;
so are the counters.  The digests are those of the path as it was before its hot loop was
rewritten for speed: a change to the path that is meant to change no byte must leave them as
they are.  A change that means to send other bytes updates them, and says so.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from loadtest.capturefile import read_capture, stream_parameters
from loadtest.looper import replay
from loadtest.scenario import AUDIO_CAPTURE, CAPTURES, VIDEO_CAPTURES
from sfu.forwarding.congestion import SendSideCongestion
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.rtp import extensions as ext
from sfu.rtp.packet import parse_rtp

#: (spatial, temporal) targets the subscribers start at, and where they go on the way
TARGETS = [(2, 2), (1, 2), (0, 0), (2, 1), (1, 1), (0, 2)]
CHANGES = [(2, 2), (0, 1), (1, 2), (2, 0), (2, 2), (0, 0)]

EXPECTED = {
    "VP9": "14810c34da8ff28b80692d37a8d1fb6892b09e1ff28bf2cb13437ea6ecc56656",
    "AV1": "1b8a26f0586b9b909e9a574512df0295a7c18c2ed4b63e52f24ae29e6e97b2e9",
    "VP8": "71c360319352665c50ec3a48198c9d2884841839aadfe21ebc0f61915f6428d4",
    "OPUS": "4df9bccbd7c23fe5fcca7b3777be94d11f140761c28c9110a7e1b47d8be59b89",
}


def _packets(path: Path) -> list[tuple[float, bytes]]:
    """Two passes over the capture, with 2 % lost, 1 % duplicated and 2 % swapped with the
    next packet (a fixed pattern)."""
    rng = random.Random(7)
    packets = list(replay(read_capture(path), 2))
    out: list[tuple[float, bytes]] = []
    i = 0
    while i < len(packets):
        roll = rng.random()
        if roll < 0.02:
            i += 1
            continue
        if roll < 0.03:
            out.append(packets[i])
        if roll < 0.05 and i + 1 < len(packets):
            out.append(packets[i + 1])
            out.append(packets[i])
            i += 2
            continue
        out.append(packets[i])
        i += 1
    return out


def digest(path: Path) -> str:
    capture = read_capture(path)
    params = stream_parameters(capture.info)
    packets = _packets(path)
    random.seed(11)  # the down tracks' initial sequence numbers and timestamps
    source = MediaSource("pub:1", params, send_rtcp=lambda _: None, rtcp_ssrc=1)
    twcc_id = ext.SUBSCRIBER_EXTENSION_IDS[ext.TRANSPORT_WIDE_CC]
    hashes = [hashlib.sha256() for _ in TARGETS]
    downtracks = []
    for i, target in enumerate(TARGETS):
        downtrack = DownTrack(
            source,
            ssrc=5000 + i,
            payload_type=100,
            send=hashes[i].update,
            rtx_ssrc=6000 + i,
            rtx_payload_type=101,
        )
        if i % 2 == 0:
            downtrack.congestion = SendSideCongestion()
            downtrack.twcc_id = twcc_id
            downtrack.keep_lower_chain = True
        if downtrack.selector is not None:
            downtrack.selector.set_target(*target)
        source.attach(downtrack, 0.0)
        downtracks.append(downtrack)
    third = len(packets) // 3
    for n, (now, data) in enumerate(packets):
        source.on_rtp(data, parse_rtp(data), now)
        if n == third:
            for downtrack, target in zip(downtracks, CHANGES, strict=True):
                if downtrack.selector is not None:
                    downtrack.selector.set_target(*target)
        if n % 97 == 0:  # a NACK for a few recent packets, and a padding probe
            for downtrack in downtracks:
                last = downtrack.munger.last_out_seq
                downtrack.retransmit([(last - k) & 0xFFFF for k in (1, 3, 40)], now)
                downtrack.send_padding(now)
    whole = hashlib.sha256()
    for downtrack, h in zip(downtracks, hashes, strict=True):
        whole.update(h.digest())
        counters = (
            downtrack.packets_sent,
            downtrack.bytes_sent,
            downtrack.packets_dropped,
            tuple(downtrack.drops),
            downtrack.retransmitted,
            downtrack.unresolved_references,
            downtrack.incomplete_picture_keyframes,
        )
        whole.update(repr(counters).encode())
    return whole.hexdigest()


CASES = {**VIDEO_CAPTURES, "OPUS": AUDIO_CAPTURE}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forwarded_bytes_unchanged(name: str) -> None:
    assert digest(CAPTURES / CASES[name]) == EXPECTED[name]


if __name__ == "__main__":  # prints the digests (to update EXPECTED, deliberately)
    for name, file in CASES.items():
        print(name, digest(CAPTURES / file))
