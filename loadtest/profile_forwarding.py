"""``profile``: the forwarding hot path in-process, without the network: CPU microseconds per
forwarded packet, and where they go.

The committed VP9 ``L3T3_KEY`` capture (``tests/fixtures/captures/vp9_L3T3_KEY.sfucap``),
replayed ``--loops`` times (sequence numbers, timestamps, picture ids and frame numbers
continue), is fed packet by packet through ``parse_rtp`` and one
:class:`~sfu.forwarding.source.MediaSource` to ``--subscribers`` N
:class:`~sfu.forwarding.downtrack.DownTrack` s, each with its own layer target (cycling
through ``--targets``), its own :class:`~sfu.forwarding.congestion.SendSideCongestion`
(transport-wide sequence numbers, the estimator's send history) and the lower chain kept, as
the server does with bandwidth estimation on; the send callback only counts. No feedback
comes back, so the estimator's feedback side is not measured here.

::

    python -m loadtest profile                        # 8 subscribers, 5 runs
    python -m loadtest profile --subscribers 16 --loops 8
    python -m loadtest profile --profile              # cProfile, top 25 by self time
    python -m loadtest profile --profile --sort cumulative --top 40

The figure is the CPU time of the feeding loop (this thread's, so other processes on a busy
machine count less) over the packets forwarded to all subscribers, best of ``--runs``, and
the same per incoming packet.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from pathlib import Path
from typing import Any

from sfu.forwarding.congestion import SendSideCongestion
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.forwarding.track import StreamParameters
from sfu.rtp import extensions as ext
from sfu.rtp.packet import parse_rtp

from .capturefile import read_capture, stream_parameters
from .looper import replay
from .scenario import CAPTURES, VIDEO_CAPTURES

CAPTURE = CAPTURES / VIDEO_CAPTURES["VP9"]
#: (spatial, temporal) targets the subscribers cycle through
DEFAULT_TARGETS = [(2, 2), (1, 2), (0, 2), (2, 1), (1, 1), (0, 0), (2, 2), (1, 0)]


class _Counter:
    __slots__ = ("packets", "bytes")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0

    def send(self, packet: bytes) -> None:
        self.packets += 1
        self.bytes += len(packet)


def _packets(path: Path, loops: int) -> tuple[StreamParameters, list[tuple[float, bytes]]]:
    capture = read_capture(path)
    info = capture.info
    params = stream_parameters(info)
    return params, list(replay(capture, loops))


def _setup(
    params: StreamParameters, subscribers: int, targets: list[tuple[int, int]]
) -> tuple[MediaSource, list[_Counter]]:
    source = MediaSource("pub:1", params, send_rtcp=lambda _: None, rtcp_ssrc=1)
    twcc_id = ext.SUBSCRIBER_EXTENSION_IDS[ext.TRANSPORT_WIDE_CC]
    counters = []
    for i in range(subscribers):
        counter = _Counter()
        downtrack = DownTrack(
            source,
            ssrc=5000 + i,
            payload_type=100,
            send=counter.send,
            rtx_ssrc=6000 + i,
            rtx_payload_type=101,
        )
        downtrack.congestion = SendSideCongestion()
        downtrack.twcc_id = twcc_id
        assert downtrack.selector is not None
        downtrack.keep_lower_chain = True
        downtrack.selector.set_target(*targets[i % len(targets)])
        source.attach(downtrack, 0.0)
        counters.append(counter)
    return source, counters


def run(
    params: StreamParameters,
    packets: list[tuple[float, bytes]],
    subscribers: int,
    targets: list[tuple[int, int]],
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """Feed every packet through one source to ``subscribers`` down tracks."""
    source, counters = _setup(params, subscribers, targets)
    on_rtp = source.on_rtp
    gc.collect()
    if profiler is not None:
        profiler.enable()
    start = time.thread_time()
    for now, data in packets:
        on_rtp(data, parse_rtp(data), now)
    elapsed = time.thread_time() - start
    if profiler is not None:
        profiler.disable()
    forwarded = sum(c.packets for c in counters)
    return {
        "incoming": len(packets),
        "forwarded": forwarded,
        "forwarded_bytes": sum(c.bytes for c in counters),
        "faults": sum(d.faults for d in source.downtracks),
        "seconds": elapsed,
        "us_per_forwarded_packet": 1e6 * elapsed / forwarded if forwarded else float("nan"),
        "us_per_incoming_packet": 1e6 * elapsed / max(1, len(packets)),
    }


def _target(text: str) -> tuple[int, int]:
    spatial, _, temporal = text.partition(",")
    return int(spatial), int(temporal)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--loops", type=int, default=4, help="passes over the capture")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (best is reported)")
    parser.add_argument(
        "--targets",
        nargs="+",
        type=_target,
        default=DEFAULT_TARGETS,
        metavar="S,T",
        help="layer targets the subscribers cycle through",
    )
    parser.add_argument("--capture", type=Path, default=CAPTURE)
    parser.add_argument("--profile", action="store_true", help="one run under cProfile")
    parser.add_argument("--sort", default="tottime", help="pstats sort key")
    parser.add_argument("--top", type=int, default=25, help="pstats lines")


def command(args: argparse.Namespace) -> int:
    params, packets = _packets(args.capture, args.loops)
    if args.profile:
        profiler = cProfile.Profile()
        result = run(params, packets, args.subscribers, args.targets, profiler)
        print(
            f"under cProfile: {result['forwarded']} forwarded of {result['incoming']} incoming, "
            f"{result['us_per_forwarded_packet']:.2f} us/forwarded packet (inflated by profiling)"
        )
        pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.top)
        return 0
    best: dict[str, Any] | None = None
    for i in range(args.runs):
        result = run(params, packets, args.subscribers, args.targets)
        print(
            f"run {i + 1}: {result['forwarded']} forwarded of {result['incoming']} incoming x "
            f"{args.subscribers} subscribers in {result['seconds']:.3f} s: "
            f"{result['us_per_forwarded_packet']:.2f} us/forwarded packet, "
            f"{result['us_per_incoming_packet']:.1f} us/incoming packet"
            + (f", {result['faults']} faults" if result["faults"] else ""),
            flush=True,
        )
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    assert best is not None
    print(
        f"best: {best['us_per_forwarded_packet']:.2f} us/forwarded packet, "
        f"{best['us_per_incoming_packet']:.1f} us/incoming packet"
    )
    return 0
