"""``bandwidth``: a subscriber behind a real shaped link whose rate follows a schedule (e.g.
2.5 Mbit/s -> 400 kbit/s -> 2.5 Mbit/s), against a replayed VP9 L3T3_KEY publisher; what the
SFU estimated, forwarded and switched, second by second, and what the subscriber got. Needs
root (network namespaces).

    python -m loadtest bandwidth                      # the default schedule, figures printed
    python -m loadtest bandwidth --schedule 10:2500,10:400 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sfu.adapters import aiortc_plane as plane

from .capturefile import read_capture
from .netns import ShapedLink, namespaces_available
from .peers import ReplayPublisher
from .scenario import CAPTURES, VIDEO_CAPTURES
from .server import SfuProcess, server_stats, start_server
from .worker import PeerSpec, WorkerSpec, read_result

DEFAULT_SCHEDULE = [(12.0, 2500), (15.0, 400), (18.0, 2500)]
DEFAULT_SCHEDULE_TEXT = ",".join(f"{s:g}:{k}" for s, k in DEFAULT_SCHEDULE)


def _stats(port: int) -> dict[str, Any]:
    return server_stats(f"http://127.0.0.1:{port}", port)


def _subscriber_view(stats: dict[str, Any], name: str) -> dict[str, Any] | None:
    for room in stats["rooms"].values():
        for participant in room["participants"]:
            if participant["name"] == name:
                videos = [t for t in participant["subscribed"] if t["spatial"] is not None]
                return {
                    "downlink": participant.get("downlink", {}),
                    "estimator": participant.get("estimator", {}),
                    "video": videos[0] if videos else None,
                }
    return None


def _publisher_plis(stats: dict[str, Any]) -> int:
    return sum(
        t["keyframe_requests_sent"]
        for room in stats["rooms"].values()
        for p in room["participants"]
        for t in p["published"]
        if t["kind"] == "video"
    )


def _sample(view: dict[str, Any], t: float, kbps: int) -> dict[str, Any]:
    """One sample of the SFU's view of a subscriber (from :func:`_subscriber_view`, with a
    video) at ``t`` seconds into the schedule, on a link of ``kbps``."""
    return {
        "t": t,
        "kbps": kbps,
        "estimate": view["downlink"].get("download_rate"),
        "forwarded": view["downlink"].get("video_bitrate"),
        "spatial": view["video"]["spatial"],
        "temporal": view["video"]["temporal"],
        "paused": view["video"]["paused"],
        "estimator": view["estimator"],
        "target": view["video"].get("target"),
        "allocated": view["video"].get("allocated"),
        "level_bitrate": view["video"].get("level_bitrate"),
        "up_hold": view["video"].get("up_hold"),
    }


@dataclass
class ShapedSetup:
    """A shaped link up, the SFU (``sfu serve`` in its own process) listening on it, and a
    replayed publisher publishing."""

    link: ShapedLink
    server: SfuProcess
    port: int
    publisher: ReplayPublisher


@asynccontextmanager
async def shaped_setup(
    schedule: list[tuple[float, int]], codec: str, room: str, extra_yaml: str = ""
) -> AsyncIterator[ShapedSetup]:
    """The link at the schedule's first rate, the SFU (``extra_yaml`` added to its
    settings), the ``codec`` capture published in ``room``; all stopped on exit."""
    ok, why = namespaces_available()
    if not ok:
        raise RuntimeError(f"a shaped link needs network namespaces: {why}")
    link = ShapedLink(rate_kbit=schedule[0][1])
    link.up()
    server = None
    publisher = None
    try:
        server = await start_server(["127.0.0.1", link.host_address], "0.0.0.0", extra_yaml)
        port = server.port
        plane.install(plane.IceOptions(listen_addresses=["127.0.0.1"]))
        video = read_capture(CAPTURES / VIDEO_CAPTURES[codec])
        publisher = ReplayPublisher(f"ws://127.0.0.1:{port}/ws", "publisher", video)
        await publisher.connect(room)
        await publisher.publish()
        yield ShapedSetup(link, server, port, publisher)
    finally:
        if publisher is not None:
            await publisher.close()
        if server is not None:
            await server.aclose()
        link.down()


async def run_schedule(schedule: list[tuple[float, int]], codec: str = "VP9") -> dict[str, Any]:
    total = sum(seconds for seconds, _ in schedule)
    async with shaped_setup(schedule, codec, "shaped") as setup:
        link, port = setup.link, setup.port
        spec = WorkerSpec(
            ws_url=f"ws://{link.host_address}:{port}/ws",
            bind_address=link.peer_address,
            peers=[PeerSpec("subscriber", "shaped", "subscriber", "shaped", (1280, 720))],
            duration=total,
            ramp_up=10.0,
            video_capture=str(CAPTURES / VIDEO_CAPTURES[codec]),
            audio_capture=None,
            start_at=time.monotonic() + 0.5,
        )
        spec_path = Path(tempfile.mkstemp(prefix="sfu-shaped-", suffix=".json")[1])
        spec_path.write_text(json.dumps(asdict(spec)))
        worker = await asyncio.create_subprocess_exec(
            *link.command(sys.executable, "-m", "loadtest", "worker", str(spec_path)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        started = time.monotonic() + 0.5
        samples: list[dict[str, Any]] = []
        changes = []
        boundary = started
        for index, (seconds, kbps) in enumerate(schedule):
            if index:
                link.set_rate(kbps)
                changes.append({"t": round(time.monotonic() - started, 2), "kbps": kbps})
            boundary += seconds
            while time.monotonic() < boundary:
                await asyncio.sleep(0.25)
                try:
                    view = _subscriber_view(_stats(port), "subscriber")
                except OSError:
                    continue
                if view is None or view["video"] is None:
                    continue
                samples.append(_sample(view, round(time.monotonic() - started, 2), kbps))
        plis = _publisher_plis(_stats(port))
        _, err = await asyncio.wait_for(worker.communicate(), 60)
        result = read_result(spec_path)
        spec_path.unlink(missing_ok=True)
        if result is None or not result["subscribers"]:
            raise RuntimeError(f"the subscriber reported nothing: {err.decode()[-2000:]}")
        return {
            "schedule": schedule,
            "changes": changes,
            "samples": samples,
            "subscriber": result["subscribers"][0],
            "plis_upstream": plis,
            "duration": total,
            "origin": started,
        }


def figures(run: dict[str, Any]) -> dict[str, Any]:
    """Time to fit after each drop, time to recover after each rise, freezes, keyframe
    requests, and layer switches per minute at steady bandwidth."""
    out = layer_figures(run)
    sub = run["subscriber"]
    origin = run.get("origin")
    out.update(
        {
            "freezes": sub["freezes"],
            "longest_gap_s": round(sub["longest_gap"], 3),
            # (when the freeze began, its length), on the schedule's clock
            "freeze_at": [
                [round(end - gap - origin, 2), round(gap, 2)] for end, gap in sub["freeze_log"]
            ]
            if origin is not None
            else [],
            "frames_undecodable": sub["frames_undecodable"],
            "plis_upstream": run["plis_upstream"],
            "plis_per_second": round(run["plis_upstream"] / run["duration"], 2),
        }
    )
    return out


def layer_figures(run: dict[str, Any]) -> dict[str, Any]:
    """What the SFU did, from its samples alone (``run``: ``schedule``, ``changes``,
    ``samples``, ``duration``): after each drop the time to switch down and to fit, after
    each rise the time back to the top spatial layer; switches at steady bandwidth."""
    samples = run["samples"]
    out: dict[str, Any] = {"changes": []}
    rates = [kbps for _, kbps in run["schedule"]]
    for change, previous in zip(run["changes"], rates, strict=False):
        after = [s for s in samples if s["t"] >= change["t"]]
        if change["kbps"] < previous:  # a drop: the forwarded rate must fit the link
            # the layer decision: below the top spatial layer, at a level that fits
            switched = next(
                (
                    s["t"] - change["t"]
                    for s in after
                    if s["spatial"] < 2
                    and s.get("level_bitrate") is not None
                    and s["level_bitrate"] <= change["kbps"] * 1000
                ),
                None,
            )
            # what was sent (0.5 s windows, retransmissions included) fits the link
            fit = next(
                (
                    s["t"] - change["t"]
                    for s in after
                    if s["forwarded"] is not None
                    and s["forwarded"] <= change["kbps"] * 1000
                    and s["spatial"] < 2
                ),
                None,
            )
            out["changes"].append(
                {
                    "at": change["t"],
                    "to_kbps": change["kbps"],
                    "time_to_switch_down": switched,
                    "time_to_fit": fit,
                }
            )
        else:  # a rise: back to the top spatial layer
            top = next(
                (s["t"] - change["t"] for s in after if s["spatial"] == 2 and not s["paused"]), None
            )
            out["changes"].append(
                {"at": change["t"], "to_kbps": change["kbps"], "time_to_recover": top}
            )
    # steady: the last half of each phase
    steady_switches = 0
    steady_spatial = 0
    steady_seconds = 0.0
    edges = [0.0, *[c["t"] for c in run["changes"]], run["duration"]]
    for a, b in zip(edges, edges[1:], strict=False):
        window = [s for s in samples if (a + b) / 2 <= s["t"] < b]
        steady_seconds += (b - a) / 2
        levels = [(s["spatial"], s["temporal"], s["paused"]) for s in window]
        steady_switches += sum(1 for x, y in zip(levels, levels[1:], strict=False) if x != y)
        steady_spatial += sum(
            1 for x, y in zip(levels, levels[1:], strict=False) if (x[0], x[2]) != (y[0], y[2])
        )
    out["switches_per_minute_steady"] = round(60 * steady_switches / max(steady_seconds, 1), 2)
    out["spatial_switches_steady"] = steady_spatial
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a shaped-link benchmark (``bandwidth``, ``browser-bandwidth``):
    --schedule, --codec, --json."""
    parser.add_argument(
        "--schedule",
        type=parse_schedule,
        default=DEFAULT_SCHEDULE,
        help=f"seconds:kbps,... (default {DEFAULT_SCHEDULE_TEXT})",
    )
    parser.add_argument("--codec", default="VP9", choices=sorted(VIDEO_CAPTURES))
    parser.add_argument("--json", action="store_true", help="figures and samples as JSON")


def parse_schedule(text: str) -> list[tuple[float, int]]:
    """``seconds:kbps,...`` as (seconds, kbit/s) pairs."""
    return [(float(s), int(k)) for s, k in (p.split(":") for p in text.split(","))]


def command(args: argparse.Namespace) -> int:
    run = asyncio.run(run_schedule(args.schedule, args.codec))
    result = figures(run)
    if args.json:
        print(
            json.dumps(
                {
                    "figures": result,
                    "samples": run["samples"],
                    "level_events": run["subscriber"]["level_events"],
                },
                indent=1,
            )
        )
    else:
        for s in run["samples"][::4]:
            print(sample_line(s))
        print(json.dumps(result, indent=1))
    return 0


def sample_line(s: dict[str, Any]) -> str:
    """One sample of a shaped-link run, as both benchmarks print it."""
    return (
        f"t={s['t']:5.1f}s link {s['kbps']:5d}k  estimate {s['estimate']}  "
        f"forwarded {s['forwarded']}  S{s['spatial']}T{s['temporal']}"
        f"{' paused' if s['paused'] else ''}"
    )
