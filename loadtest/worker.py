"""One load generator process: runs the peers it is given, prints a JSON progress line every
second and one JSON result at the end, then exits (bounded by the spec's deadline).

    python -m loadtest worker SPEC.json      (run and bandwidth start it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfu.adapters import aiortc_plane as plane
from sfu.signaling import collector, loop_lag

from .capturefile import read_capture
from .peers import ReplayPublisher, SimSubscriber


@dataclass
class PeerSpec:
    kind: str  # "publisher" or "subscriber"
    room: str
    name: str
    profile: str = ""
    window: tuple[int, int] | None = None


@dataclass
class WorkerSpec:
    ws_url: str
    bind_address: str
    peers: list[PeerSpec]
    duration: float
    ramp_up: float
    video_capture: str
    audio_capture: str | None
    start_at: float = 0.0  # time.monotonic() at which to start (shared clock)
    extra: dict[str, Any] = field(default_factory=dict)


def _emit(kind: str, payload: dict[str, Any]) -> None:
    # progress lines only (a few hundred bytes), written blocking whatever the event loop
    # made of the pipe
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write(json.dumps({kind: payload}) + "\n")
    sys.stdout.flush()


def result_path(spec_path: Path) -> Path:
    """Where the worker started on ``spec_path`` leaves its result."""
    return spec_path.with_name(spec_path.name + ".result")


def write_result(spec_path: Path, result: dict[str, Any]) -> None:
    """The result as a file, written whole then renamed: it is hundreds of KB, and through
    the stdout pipe CI saw result lines cut short twice (at 256 KB, then at 128 KB after the
    pipe was made blocking), which the reader could not parse."""
    final = result_path(spec_path)
    partial = final.with_name(final.name + ".partial")
    partial.write_text(json.dumps(result))
    partial.replace(final)


def read_result(spec_path: Path) -> dict[str, Any] | None:
    """The result the worker left for ``spec_path`` (removing it), or None when it left
    none or an unreadable one."""
    path = result_path(spec_path)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
    return result if isinstance(result, dict) else None


def subscriber_result(sub: SimSubscriber, profile: str, room: str) -> dict[str, Any]:
    checkers = list(sub.checkers.values())
    per_second: dict[int, Counter[tuple[int, int]]] = {}
    for at, sid, tid in sub.layers:
        per_second.setdefault(int(at - sub.started), Counter())[(sid, tid)] += 1
    timeline = [[s, max(c)[0], max(c)[1]] for s, c in sorted(per_second.items())]
    # what its viewer would have counted, per video track (loadtest.viewer)
    videos = [t.result() for t in sub.tallies.values()]
    return {
        "name": sub.name,
        "profile": profile,
        "room": room,
        "window": list(sub.window) if sub.window else None,
        "received": sub.received,
        "lost": sub.lost,
        "nacks_sent": sub.nacks_sent,
        "retransmissions_received": sub.retransmissions_received,
        "keyframe_requests": sub.keyframe_requests,
        "frames_decodable": sum(c.frames_decodable for c in checkers),
        "frames_undecodable": sum(c.frames_undecodable for c in checkers),
        "frames_incomplete": sum(c.incomplete() for c in checkers),
        "freezes": sum(c.freezes for c in checkers),
        "longest_gap": max((c.longest_gap for c in checkers), default=0.0),
        "freeze_log": sorted(f for c in checkers for f in c.freeze_log),
        "videos": videos,
        "frames_decoded": sum(v["frames_decoded"] for v in videos),
        "frames_dropped": sum(v["frames_dropped"] for v in videos),
        "freeze_count": sum(v["freeze_count"] for v in videos),
        "total_freezes_duration": round(sum(v["total_freezes_duration"] for v in videos), 4),
        "video_seconds": round(sum(v["video_seconds"] for v in videos), 3),
        "first_frame_s": [v["first_frame_s"] for v in videos],
        "switch_paints_s": [p for v in videos for p in v["switch_paints_s"]],
        "receiver_reports_sent": sub.receiver_reports_sent,
        "bytes_per_second": sorted(sub.bytes_per_second.items()),
        "packets_per_second": sorted(sub.packets_per_second.items()),
        "lost_per_second": sorted(sub.lost_per_second.items()),
        "started": sub.started,
        "first_media": sub.first_media,
        "layers": timeline,  # [second, spatial, temporal] of the highest decodable frame
        "frame_layers": [[round(at, 4), sid, tid] for at, sid, tid in sub.layers],
        "arrivals": sub.arrivals,
        "level_events": [m for m in sub.messages if m.get("type") == "level_changed"],
    }


async def run(spec: WorkerSpec) -> dict[str, Any]:
    plane.install(plane.IceOptions(listen_addresses=[spec.bind_address]))
    video = read_capture(spec.video_capture)
    audio = read_capture(spec.audio_capture) if spec.audio_capture else None
    delay = spec.start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    started = time.monotonic()
    cpu0 = time.process_time()
    deadline = started + spec.duration
    publishers: list[tuple[PeerSpec, ReplayPublisher]] = []
    subscribers: list[tuple[PeerSpec, SimSubscriber]] = []
    errors: list[str] = []

    async def start(peer: PeerSpec) -> None:
        try:
            if peer.kind == "publisher":
                pub = ReplayPublisher(spec.ws_url, peer.name, video, audio)
                publishers.append((peer, pub))
                await pub.connect(peer.room)
                await pub.publish()
            else:
                sub = SimSubscriber(spec.ws_url, peer.name, peer.window, receiver_reports=True)
                subscribers.append((peer, sub))
                await sub.connect(peer.room)
        except Exception as exc:  # reported, the run goes on
            errors.append(f"{peer.name}: {exc!r}")

    #: (time.monotonic(), this process's CPU seconds), every second: its cost over a window
    cpu_samples: list[tuple[float, float]] = [(started, cpu0)]
    #: this process's own event-loop lag, snapshot every second (as the server's in /stats):
    #: a subscriber stamps an arrival when its loop gets to it, so the generator's lateness
    #: is in the latency figures too
    lag = loop_lag.LoopLag()
    lag_samples: list[dict[str, Any]] = [{"at": started, "counts": list(lag.counts)}]
    watcher = asyncio.ensure_future(loop_lag.watch(lag))

    async def progress() -> None:
        while True:
            await asyncio.sleep(1.0)
            cpu_samples.append((time.monotonic(), time.process_time()))
            lag_samples.append({"at": time.monotonic(), "counts": list(lag.counts)})
            _emit(
                "progress",
                {
                    "peers": len(publishers) + len(subscribers),
                    "received_bytes": sum(s.bytes for _, s in subscribers),
                    "received": sum(s.received for _, s in subscribers),
                    "lost": sum(s.lost for _, s in subscribers),
                },
            )

    reporter = asyncio.ensure_future(progress())
    tasks = []
    for i, peer in enumerate(spec.peers):
        tasks.append(asyncio.ensure_future(start(peer)))
        if i + 1 < len(spec.peers):
            await asyncio.sleep(1.0 / spec.ramp_up)
    await asyncio.gather(*tasks)
    # the peers are up: what they made stays out of the collector's sight, and collections
    # are spaced out as in the server (a full one walking every peer delays the packets
    # behind it, which the subscribers would count as latency)
    collector.tune()
    remaining = deadline - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    reporter.cancel()
    watcher.cancel()
    wall = time.monotonic() - started
    result = {
        "cpu_seconds": time.process_time() - cpu0,
        "cpu_samples": [*cpu_samples, (time.monotonic(), time.process_time())],
        # the histogram's counts every second, and the whole snapshot (per-second maxima) once
        "loop_lag_samples": lag_samples,
        "loop_lag": lag.snapshot(time.monotonic()),
        "wall_seconds": wall,
        "deadline": deadline,
        "errors": errors,
        "publishers": [
            {
                "name": p.name,
                "room": spec_.room,
                "sent": sum(lp.sent for lp in p.loopers.values()),
                "keyframe_requests": p.keyframe_requests,
                "sent_log": list(p.sent_log),
            }
            for spec_, p in publishers
        ],
        "subscribers": [
            subscriber_result(s, spec_.profile, spec_.room) for spec_, s in subscribers
        ],
    }
    peers: list[SimSubscriber | ReplayPublisher] = [s for _, s in subscribers]
    peers += [p for _, p in publishers]
    for live in peers:
        try:
            await asyncio.wait_for(live.close(), 5)
        except Exception:  # noqa: BLE001 - closing at the end of a run
            pass
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="a WorkerSpec as JSON")


def event_loop_runner() -> asyncio.Runner:
    """uvloop's event loop when it is importable (a cheaper load generator) unless
    ``SFU_LOADTEST_UVLOOP=0``; asyncio's otherwise."""
    if os.environ.get("SFU_LOADTEST_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def command(args: argparse.Namespace) -> int:
    raw = json.loads(args.spec.read_text())
    raw["peers"] = [PeerSpec(**p) for p in raw["peers"]]
    spec = WorkerSpec(**raw)
    with event_loop_runner() as runner:
        result = runner.run(run(spec))
    write_result(args.spec, result)
    return 0
