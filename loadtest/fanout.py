"""Fan-out measurement: one publisher, N subscribers, server CPU per forwarded packet.

    python -m loadtest.fanout --subscribers 10 --pps 600 --duration 10

Starts ``sfu serve`` in its own process (unless ``--url`` is given with ``--pid``), connects a
raw publisher sending synthetic VP8 packets at ``--pps`` and N counting subscribers, and
reports the server's CPU microseconds per forwarded packet over the measurement window, next
to the CPU of this load generator (a saturated generator is not a saturated server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass

from sfu.adapters import aiortc_plane as plane

from .peers import CountingSubscriber, RawPublisher
from .proc import cpu_seconds, rss_bytes

MAX_DURATION = 120.0
MAX_SUBSCRIBERS = 200


@dataclass
class FanoutResult:
    subscribers: int
    pps: int
    duration: float
    packets_sent: int
    packets_delivered: int
    packets_lost: int
    server_cpu_seconds: float
    server_us_per_packet: float
    server_rss_mb: float
    generator_cpu_percent: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfu", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("sfu serve did not start") from None
            time.sleep(0.2)


async def measure(
    url: str, pid: int, subscribers: int, pps: int, duration: float, warmup: float = 3.0
) -> FanoutResult:
    plane.install()
    ws_url = url.replace("http", "ws", 1) + "/ws"
    room = f"fanout-{os.getpid()}-{int(time.time())}"
    publisher = RawPublisher(ws_url, "publisher", pps)
    subs = [CountingSubscriber(ws_url, f"sub{i}") for i in range(subscribers)]
    try:
        await publisher.connect(room)
        for sub in subs:
            await sub.connect(room)
        await publisher.publish()
        deadline = time.monotonic() + 30
        while any(s.received == 0 for s in subs):
            if time.monotonic() > deadline:
                raise RuntimeError("not every subscriber receives media")
            await asyncio.sleep(0.2)
        await asyncio.sleep(warmup)

        sent0 = publisher.sent
        got0 = sum(s.received for s in subs)
        lost0 = sum(s.lost for s in subs)
        cpu0 = cpu_seconds(pid)
        gen0 = time.process_time()
        t0 = time.monotonic()
        await asyncio.sleep(duration)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(pid) - cpu0
        gen = time.process_time() - gen0
        delivered = sum(s.received for s in subs) - got0
        return FanoutResult(
            subscribers=subscribers,
            pps=pps,
            duration=round(elapsed, 2),
            packets_sent=publisher.sent - sent0,
            packets_delivered=delivered,
            packets_lost=sum(s.lost for s in subs) - lost0,
            server_cpu_seconds=round(cpu, 3),
            server_us_per_packet=round(cpu * 1e6 / max(1, delivered), 2),
            server_rss_mb=round(rss_bytes(pid) / 1e6, 1),
            generator_cpu_percent=round(100 * gen / elapsed, 1),
        )
    finally:
        for peer in [publisher, *subs]:
            await peer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--pps", type=int, default=600, help="publisher packets per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--url", help="a running server (needs --pid to read its CPU)")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.subscribers <= MAX_SUBSCRIBERS:
        parser.error(f"--subscribers must be 1..{MAX_SUBSCRIBERS}")
    duration = min(args.duration, MAX_DURATION)

    proc = None
    if args.url:
        if args.pid is None:
            parser.error("--url needs --pid")
        url, pid = args.url, args.pid
    else:
        proc, url = start_server()
        pid = proc.pid
    try:
        result = asyncio.run(measure(url, pid, args.subscribers, args.pps, duration))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"fan-out 1 -> {result.subscribers} at {result.pps} pps for {result.duration}s: "
            f"{result.packets_delivered} packets delivered, {result.packets_lost} lost; "
            f"server {result.server_us_per_packet} CPU us/packet "
            f"({result.server_cpu_seconds}s CPU, {result.server_rss_mb} MB RSS); "
            f"generator {result.generator_cpu_percent}% CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
