"""``bench``: fan-out from one VP9 L3T3_KEY publisher to N subscribers, N stepped up until
loss > 0.5% or p99 latency > 50 ms; the server's CPU microseconds per forwarded packet beside
a plain UDP relay of the same packets to the same N (loadtest/baseline.py), measured in the
same run. One line per step (``N=...``); with ``--json``, then the steps as JSON.

    python -m loadtest bench --max-subscribers 40
    python -m loadtest bench --max-subscribers 16 --step 8 --duration 8 --json
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


def steady_cost(report: dict[str, Any]) -> tuple[float, int, float]:
    """(server CPU seconds, packets delivered, seconds) over the steady part of a run: from
    its middle to its last sample, past connection set-up (DTLS handshakes are costly, and
    not per packet). Packets are counted in the whole seconds inside that span, scaled to it."""
    samples = report["server"]["samples"]
    if len(samples) < 4:
        return 0.0, 0, 0.0
    first, last = samples[len(samples) // 2], samples[-2]
    span = last["at"] - first["at"]
    cpu = last["cpu"] - first["cpu"]
    counted = 0
    seconds_counted = 0
    for sub in report["subscribers"]:
        whole = [
            count
            for second, count in sub["packets_per_second"]
            if first["at"] <= sub["started"] + second <= last["at"] - 1
        ]
        counted += sum(whole)
        seconds_counted += len(whole)
    if not seconds_counted:
        return cpu, 0, span
    per_subscriber_seconds = seconds_counted / len(report["subscribers"])
    return cpu, int(counted * span / per_subscriber_seconds), span


def _steps(max_subscribers: int, step: int) -> list[int]:
    if step > 0:
        return list(range(step, max_subscribers + 1, step))
    out = [1, 2, 4, 8]
    while out[-1] + 8 <= max_subscribers:
        out.append(out[-1] + 8)
    return [n for n in out if n <= max_subscribers]


async def bench(max_subscribers: int = 64, step: int = 0, duration: float = 8.0) -> dict[str, Any]:
    duration = min(duration, 60.0)
    max_subscribers = min(max_subscribers, 200)
    server = await start_server(["127.0.0.1"])
    url = server.url
    rows: list[dict[str, Any]] = []
    held = 0
    try:
        for n in _steps(max_subscribers, step):
            scenario = Scenario(
                url=url,
                rooms=1,
                publishers_per_room=1,
                codec="VP9",
                audio=False,
                duration=duration,
                ramp_up=50,
                processes=2,
                profiles=[Profile(name="fanout", subscribers_per_room=n, window=(1280, 720))],
            )
            report = await run_scenario(scenario, quiet=True, server_pid=server.pid)
            profile = report["profiles"]["fanout"]
            cpu, delivered, seconds = steady_cost(report)
            row = {
                "subscribers": n,
                "delivered": delivered,
                "loss_percent": profile["loss_percent"],
                "p99_ms": profile["latency_ms"]["p99"],
                "server_cpu_percent": round(100 * cpu / max(seconds, 1e-6), 1),
                "us_per_packet": round(1e6 * cpu / max(1, delivered), 2),
                "generator_cpu_percent": report["generator"]["cpu_percent_of_one_core"],
            }
            row["cpu_per_second"] = cpu / max(seconds, 1e-6)
            row["packets_per_second"] = delivered / max(seconds, 1e-6)
            if rows and row["packets_per_second"] > rows[-1]["packets_per_second"]:
                # the cost of one more forwarded packet, fixed costs aside
                row["marginal_us_per_packet"] = round(
                    1e6
                    * (row["cpu_per_second"] - rows[-1]["cpu_per_second"])
                    / (row["packets_per_second"] - rows[-1]["packets_per_second"]),
                    2,
                )
            base = await baseline(n, duration)
            row["baseline_us_per_packet"] = base["us_per_packet"]
            row["ratio"] = round(row["us_per_packet"] / max(base["us_per_packet"], 1e-9), 2)
            rows.append(row)
            print(
                f"N={n:3d}  loss {row['loss_percent']:5.2f}%  p99 {row['p99_ms']} ms  "
                f"server {row['server_cpu_percent']:5.1f}% CPU  {row['us_per_packet']:6.2f} "
                f"us/packet, marginal {row.get('marginal_us_per_packet', '-')}  "
                f"(UDP relay {base['us_per_packet']:5.2f}, x{row['ratio']})  "
                f"generator {row['generator_cpu_percent']}%",
                flush=True,
            )
            p99 = row["p99_ms"]
            if row["loss_percent"] > MAX_LOSS or p99 is None or p99 > MAX_P99:
                break
            held = n
    finally:
        await server.aclose()
    print(f"largest N that held (loss <= {MAX_LOSS}%, p99 <= {MAX_P99} ms): {held}")
    return {"held": held, "steps": rows}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-subscribers", type=int, default=64)
    parser.add_argument("--step", type=int, default=0, help="0: 1, 2, 4, 8, then +8")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per step")
    parser.add_argument("--json", action="store_true", help="then the steps as JSON")


def command(args: argparse.Namespace) -> int:
    result = asyncio.run(
        bench(max_subscribers=args.max_subscribers, step=args.step, duration=args.duration)
    )
    if args.json:
        print(json.dumps(result, indent=1))
    return 0
