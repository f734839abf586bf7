"""``cascade-cost``: what one cascaded hop costs, beside one ordinary forward, in process.

The committed VP9 ``L3T3_KEY`` capture, replayed ``--loops`` times, goes through:

* **forwarding**: one :class:`~sfu.forwarding.source.MediaSource` and ``--subscribers`` N
  down tracks (as ``python -m loadtest profile`` does); the cost of one forward is the CPU
  time over that of the source alone (no subscriber), per packet forwarded;
* **the hop**: the same source with an :class:`~sfu.signaling.cascade.OutboundTrack` that
  sends every packet over a real :class:`~sfu.adapters.relay_link.RelayEndpoint` (SRTP,
  UDP on loopback) to a second endpoint in this process, whose packets feed the relayed
  :class:`MediaSource` of the other worker (parse, layers, meter; no subscriber); the cost
  of the hop is the CPU time over that of the source alone, per packet relayed: what one
  more worker with subscribers of a track costs the two workers together.

Printed: the hop's cost to one forward's, per relayed packet; and per packet forwarded on
the other worker, the hop shared by its ``--subscribers`` (issue 17's goal: what the relay
adds per forwarded packet at most 0.3 of one forward).  CPU is the process's (user and
system: the kernel's share of sending and receiving counts), best of ``--runs``; the event
loop is the server's (uvloop where installed).

::

    python -m loadtest cascade-cost
    python -m loadtest cascade-cost --subscribers 16 --loops 4 --runs 7
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from sfu.adapters.event_loop import new_event_loop
from sfu.adapters.relay_link import RelayEndpoint
from sfu.forwarding.source import MediaSource
from sfu.forwarding.track import StreamParameters
from sfu.rtp.packet import parse_rtp
from sfu.signaling.cascade import OutboundTrack

from .profile_forwarding import CAPTURE, DEFAULT_TARGETS, _packets
from .profile_forwarding import run as forward_run

#: packets sent before the sender waits for the receiver to catch up (a socket's buffer
#: holds far more; media is paced, this replay is not)
WINDOW = 256


def _ingress(params: StreamParameters, packets: list[tuple[float, bytes]]) -> float:
    """CPU seconds of the source alone."""
    source = MediaSource("pub:1", params, send_rtcp=lambda _: None, rtcp_ssrc=1)
    on_rtp = source.on_rtp
    gc.collect()
    start = time.process_time()
    for now, data in packets:
        on_rtp(data, parse_rtp(data), now)
    return time.process_time() - start


async def _hop(params: StreamParameters, packets: list[tuple[float, bytes]]) -> tuple[float, int]:
    """CPU seconds of the source with its packets relayed and received; packets received."""
    relayed = MediaSource("relay:1", params, send_rtcp=lambda _: None, rtcp_ssrc=2)
    received = 0

    def on_link_rtp(worker: str, packet: bytes, now: float) -> None:
        nonlocal received
        received += 1
        relayed.on_rtp(packet, parse_rtp(packet), now)

    sender = RelayEndpoint(lambda *_: None, lambda *_: None)
    receiver = RelayEndpoint(on_link_rtp, lambda *_: None)
    try:
        sender_address = await sender.open("127.0.0.1")
        receiver_address = await receiver.open("127.0.0.1")
        receiver.add_peer("origin", sender_address, sender.key)
        source = MediaSource("pub:1", params, send_rtcp=lambda _: None, rtcp_ssrc=1)
        track = OutboundTrack(source, sender)
        track.destinations["other"] = receiver_address
        on_rtp = source.on_rtp
        gc.collect()
        start = time.process_time()
        for i, (now, data) in enumerate(packets):
            on_rtp(data, parse_rtp(data), now)
            if i % 64 == 63:
                while received < i + 1 - WINDOW:
                    await asyncio.sleep(0)
        deadline = time.monotonic() + 5
        while received < len(packets) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        elapsed = time.process_time() - start
        track.close()
        return elapsed, received
    finally:
        sender.close()
        receiver.close()


def run(loops: int, subscribers: int, runs: int) -> dict[str, Any]:
    params, packets = _packets(CAPTURE, loops)
    ingress = min(_ingress(params, packets) for _ in range(runs))
    forwards = []
    for _ in range(runs):
        result = forward_run(params, packets, subscribers, DEFAULT_TARGETS)
        forwards.append((result["seconds"], result["forwarded"]))
    forward_seconds, forwarded = min(forwards)
    hops = []
    for _ in range(runs):
        loop, loop_kind = new_event_loop("auto")  # as the server runs: uvloop where installed
        try:
            hops.append(loop.run_until_complete(_hop(params, packets)))
        finally:
            loop.close()
    hop_seconds, received = min(hops)
    forward_us = 1e6 * max(0.0, forward_seconds - ingress) / forwarded
    hop_us = 1e6 * max(0.0, hop_seconds - ingress) / max(1, received)
    return {
        "packets": len(packets),
        "relayed": received,
        "lost_on_the_link": len(packets) - received,
        "ingress_us_per_packet": 1e6 * ingress / len(packets),
        "forward_us_per_packet": forward_us,
        "hop_us_per_packet": hop_us,
        "ratio": hop_us / forward_us if forward_us else float("nan"),
        "loop": loop_kind,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loops", type=int, default=2, help="capture loops (default 2)")
    parser.add_argument("--subscribers", type=int, default=8, help="for the forward (8)")
    parser.add_argument("--runs", type=int, default=5, help="best of (5)")


def command(args: argparse.Namespace) -> int:
    result = run(args.loops, args.subscribers, args.runs)
    print(
        f"{result['packets']} packets (VP9 L3T3_KEY), best of {args.runs}: "
        f"source alone {result['ingress_us_per_packet']:.2f} us/packet; "
        f"one forward {result['forward_us_per_packet']:.2f} us/forwarded packet "
        f"({args.subscribers} subscribers); one cascaded hop "
        f"{result['hop_us_per_packet']:.2f} us/relayed packet "
        f"(SRTP + UDP + the other worker's source; {result['lost_on_the_link']} lost)\n"
        f"hop / forward = {result['ratio']:.2f} per relayed packet; per packet forwarded to "
        f"{args.subscribers} subscribers on the other worker, the hop adds "
        f"{result['ratio'] / args.subscribers:.2f} x one forward (goal <= 0.3; event loop: "
        f"{result['loop']})"
    )
    return 0
