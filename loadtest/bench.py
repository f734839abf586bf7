"""``bench``: fan-out from one VP9 L3T3_KEY publisher to N subscribers, N stepped up until
loss > 0.5% or p99 latency > 50 ms; the server's CPU microseconds per forwarded packet beside
a plain UDP relay of the same packets to the same N (loadtest/baseline.py), measured in the
same run.

Every figure of a step is taken over its steady window (:mod:`loadtest.steady`: from 1 s
after the last subscriber's first packet to 1 s before the step ends): loss, p99 latency,
the server's CPU (per forwarded packet and per subscriber-second), packets per subscriber
per second and the layers they carried (frames by spatial and temporal layer, as the
subscribers parsed them), the load generator's CPU (per subscriber-second, beside the
server's: it runs on the same cores), and the server's event-loop lag (a histogram of how
late a 20 ms timer woke, from ``/stats``; see sfu/signaling/loop_lag.py). Three lines per
step (the first starts ``N=...``); with ``--json``, then the steps as JSON.

    python -m loadtest bench --max-subscribers 40
    python -m loadtest bench --max-subscribers 16 --step 8 --duration 14 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from typing import Any

from .capturefile import read_capture
from .looper import CaptureLooper
from .proc import cpu_seconds
from .run import run_scenario
from .scenario import Profile, Scenario
from .server import free_port, start_server

MAX_LOSS = 0.5  # percent
MAX_P99 = 50.0  # ms
#: seconds per step: connecting takes the first 2-5, the last one is left out; 8-10 s remain
DURATION = 14.0
#: seconds of the UDP relay's run per step (its CPU is counted once it runs)
BASELINE_SECONDS = 8.0


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1


async def baseline(subscribers: int, duration: float) -> dict[str, Any]:
    """The same capture, paced the same, through a plain UDP relay to N sockets."""
    loop = asyncio.get_running_loop()
    counters = []
    ports = []
    transports = []
    for _ in range(subscribers):
        transport, counter = await loop.create_datagram_endpoint(
            _Counter, local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        counters.append(counter)
        ports.append(transport.get_extra_info("sockname")[1])
    relay_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtest",
        "udp-relay",
        str(relay_port),
        str(duration + 5),
        *[f"127.0.0.1:{p}" for p in ports],
    )
    await asyncio.sleep(1.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    looper = CaptureLooper(
        read_capture(Scenario().video_capture), ssrc=1, payload_type=98, extension_ids={}
    )
    cpu0 = cpu_seconds(proc.pid)
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < duration:
        for packet in looper.due(time.monotonic()):
            sender.sendto(packet, ("127.0.0.1", relay_port))
            sent += 1
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.3)
    cpu = cpu_seconds(proc.pid) - cpu0
    delivered = sum(c.count for c in counters)
    proc.terminate()
    await proc.wait()
    sender.close()
    for transport in transports:
        transport.close()
    return {
        "subscribers": subscribers,
        "sent": sent,
        "delivered": delivered,
        "loss_percent": round(100 * (1 - delivered / max(1, sent * subscribers)), 3),
        "cpu_seconds": round(cpu, 3),
        "us_per_packet": round(1e6 * cpu / max(1, delivered), 2),
    }


def step_row(n: int, report: dict[str, Any]) -> dict[str, Any]:
    """One step's figures, all over the run's steady window (``report["steady"]``, see
    :mod:`loadtest.steady`): loss, p99 latency, the server's CPU per forwarded packet and per
    subscriber-second, packets per subscriber per second and the layers they carried, the
    load generator's CPU, the server's and the generator's event-loop lag. Without a steady
    window (a subscriber got no media), the figures are None and the step fails."""
    steady = report.get("steady")
    profile = (steady or {}).get("profiles", {}).get("fanout")
    row: dict[str, Any] = {"subscribers": n, "steady_seconds": None}
    server_cpu = steady.get("server_cpu_per_second") if steady else None
    if steady is None or profile is None or server_cpu is None:
        row.update(loss_percent=None, p99_ms=None, us_per_packet=None)
        return row
    per_subscriber = profile["packets_per_subscriber_second"]
    packets = per_subscriber * n
    generator = steady.get("generator_cpu_per_second")
    row.update(
        steady_seconds=steady["seconds"],
        loss_percent=profile["loss_percent"],
        p99_ms=profile["latency_ms"]["p99"],
        latency_samples=profile["latency_samples"],
        packets_per_subscriber_second=per_subscriber,
        layers=profile["layers"],
        server_cpu_percent=round(100 * server_cpu, 1),
        us_per_packet=round(1e6 * server_cpu / packets, 2) if packets else None,
        server_ms_per_subscriber_second=round(1000 * server_cpu / n, 2),
        generator_cpu_percent=None if generator is None else round(100 * generator, 1),
        generator_ms_per_subscriber_second=None
        if generator is None
        else round(1000 * generator / n, 2),
        loop_lag=steady.get("loop_lag"),
        generator_loop_lag=steady.get("generator_loop_lag"),
        cpu_per_second=server_cpu,
        packets_per_second=packets,
        delivered=int(packets * steady["seconds"]),
    )
    return row


def held(row: dict[str, Any]) -> bool:
    """Loss and p99 latency over the steady window within the bounds."""
    loss, p99 = row.get("loss_percent"), row.get("p99_ms")
    return loss is not None and p99 is not None and loss <= MAX_LOSS and p99 <= MAX_P99


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return ">=200" if value == float("inf") else f"<{value:g}"


def format_row(row: dict[str, Any], base: dict[str, Any] | None) -> str:
    """A step's lines: the first as compare.sh reads it (``N=...``), then the steady
    window's packets, layers, CPU per subscriber and event-loop lag."""
    n = row["subscribers"]
    if row.get("us_per_packet") is None:
        return f"N={n:3d}  no steady window (a subscriber got no media, or the step was short)"
    relay = "-"
    if base:
        ratio = row["us_per_packet"] / max(base["us_per_packet"], 1e-9)
        relay = f"{base['us_per_packet']:5.2f}, x{ratio:.2f}"
    lines = [
        f"N={n:3d}  loss {row['loss_percent']:5.2f}%  p99 {row['p99_ms']} ms  "
        f"server {row['server_cpu_percent']:5.1f}% CPU  {row['us_per_packet']:6.2f} "
        f"us/packet, marginal {row.get('marginal_us_per_packet', '-')}  "
        f"(UDP relay {relay})  generator {row['generator_cpu_percent']}%",
        f"       steady {row['steady_seconds']} s: {row['packets_per_subscriber_second']} "
        f"packets/s per subscriber, frames by layer "
        + (" ".join(f"{k} {100 * v:.0f}%" for k, v in list(row["layers"].items())[:4]) or "-")
        + f"; CPU ms per subscriber-s: server {row['server_ms_per_subscriber_second']}, "
        f"generator {row['generator_ms_per_subscriber_second']}",
    ]
    lag = row.get("loop_lag")
    if lag is not None:
        buckets = [
            *(f"<{b:g}" for b in lag["bounds_ms"]),
            f">={lag['bounds_ms'][-1]:g}",
        ]
        histogram = " ".join(f"{b}:{c}" for b, c in zip(buckets, lag["counts"], strict=True))
        lines.append(
            f"       server loop lag: p99 {_ms(lag['p99_ms'])} ms, max "
            f"{lag['max_ms'] if lag['max_ms'] is not None else '-'} ms  [{histogram}]"
        )
        gc = lag.get("gc")
        if gc is not None:
            lines.append(
                "       server garbage collections (young, middle, full): "
                f"{'/'.join(str(n) for n in gc['collections'])}, "
                f"{'/'.join(f'{ms:.0f}' for ms in gc['pause_ms'])} ms"
            )
    generator_lag = row.get("generator_loop_lag")
    if generator_lag is not None:
        # the subscribers stamp arrivals when their loop gets to them: the generator's own
        # lateness is part of the latency above
        lines.append(
            f"       generator loop lag: p99 {_ms(generator_lag['p99_ms'])} ms, max "
            f"{generator_lag['max_ms'] if generator_lag['max_ms'] is not None else '-'} ms"
        )
    return "\n".join(lines)


def _steps(max_subscribers: int, step: int) -> list[int]:
    if step > 0:
        return list(range(step, max_subscribers + 1, step))
    out = [1, 2, 4, 8]
    while out[-1] + 8 <= max_subscribers:
        out.append(out[-1] + 8)
    return [n for n in out if n <= max_subscribers]


async def bench(
    max_subscribers: int = 64,
    step: int = 0,
    duration: float = DURATION,
    processes: int = 2,
    workers: int = 1,
    rooms: int = 1,
    room_participants_per_worker: int | None = None,
) -> dict[str, Any]:
    duration = min(duration, 60.0)
    max_subscribers = min(max_subscribers, 200)
    args = ("--workers", str(workers)) if workers > 1 else ()
    extra = ""
    if room_participants_per_worker is not None:  # cascading: a room over the workers
        extra = f"cluster:\n  room_participants_per_worker: {room_participants_per_worker}\n"
    server = await start_server(["127.0.0.1"], args=args, extra_yaml=extra)
    url = server.url
    rows: list[dict[str, Any]] = []
    largest = 0
    try:
        for n in _steps(max_subscribers, step):
            scenario = Scenario(
                url=url,
                rooms=rooms,
                publishers_per_room=1,
                codec="VP9",
                audio=False,
                duration=duration,
                ramp_up=50,
                processes=processes,
                profiles=[Profile(name="fanout", subscribers_per_room=n, window=(1280, 720))],
            )
            report = await run_scenario(scenario, quiet=True, server_pid=server.pid)
            row = step_row(n * rooms, report)  # the total fan-out
            if report["errors"]:
                row["errors"] = report["errors"][:5]
            previous = next((r for r in reversed(rows) if r.get("packets_per_second")), None)
            if (
                row.get("packets_per_second")
                and previous is not None
                and row["packets_per_second"] > previous["packets_per_second"]
            ):
                # the cost of one more forwarded packet, fixed costs aside
                row["marginal_us_per_packet"] = round(
                    1e6
                    * (row["cpu_per_second"] - previous["cpu_per_second"])
                    / (row["packets_per_second"] - previous["packets_per_second"]),
                    2,
                )
            base = None
            if row.get("us_per_packet") is not None:
                base = await baseline(n * rooms, min(duration, BASELINE_SECONDS))
                row["baseline_us_per_packet"] = base["us_per_packet"]
                row["ratio"] = round(row["us_per_packet"] / max(base["us_per_packet"], 1e-9), 2)
            rows.append(row)
            print(format_row(row, base), flush=True)
            if row.get("errors"):
                print(f"       errors: {row['errors']}", flush=True)
            if not held(row):
                break
            largest = n
    finally:
        await server.aclose()
    print(
        f"largest N that held (steady window: loss <= {MAX_LOSS}%, p99 <= {MAX_P99} ms): {largest}"
    )
    return {"held": largest, "steps": rows}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-subscribers", type=int, default=64)
    parser.add_argument("--step", type=int, default=0, help="0: 1, 2, 4, 8, then +8")
    parser.add_argument(
        "--duration",
        type=float,
        default=DURATION,
        help="seconds per step (the steady window: "
        "from 1 s after the last subscriber's first packet to 1 s before the end)",
    )
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="sfu serve --workers W (docs/scaling.md); the server's CPU is its processes' together",
    )
    parser.add_argument(
        "--rooms", type=int, default=1, help="rooms of one publisher and N subscribers each"
    )
    parser.add_argument(
        "--room-participants-per-worker",
        type=int,
        help="cascading (with --workers): a room's worker takes this many of its "
        "participants, the others stay on the worker their WebSocket reached",
    )
    parser.add_argument("--json", action="store_true", help="then the steps as JSON")


def command(args: argparse.Namespace) -> int:
    result = asyncio.run(
        bench(
            max_subscribers=args.max_subscribers,
            step=args.step,
            duration=args.duration,
            processes=args.processes,
            workers=args.workers,
            rooms=args.rooms,
            room_participants_per_worker=args.room_participants_per_worker,
        )
    )
    if args.json:
        print(json.dumps(result, indent=1))
    return 0
