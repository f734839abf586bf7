"""``run``: a scenario of simulated peers over the real signaling and real UDP, from a YAML
file (``loadtest/scenarios/``) or flags; the server (started here, or given), shaped links for
subscribers with a downlink cap, worker processes, live progress, and the report (a table;
JSON and an HTML plot under the scenario's ``output``), with what the subscribers' viewers
saw (time to first frame, freezes per minute, dropped pictures, switch-paint latency).

Thresholds (the scenario's ``thresholds:``, a profile's own, these ``--max-...`` flags over
both) gate the run: exit 0 when every profile meets them, 3 when one is missed (each printed),
1 when the run had errors, 2 for an invalid scenario or flag.

    python -m loadtest run loadtest/scenarios/small.yaml
    python -m loadtest run --subscribers 10 --window 640x360
    python -m loadtest run loadtest/scenarios/small.yaml --max-p99-latency-ms 50 --max-loss 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from sfu.signaling.loop_lag import difference, percentile_bound

from .netns import ShapedLink, namespaces_available
from .proc import tree_cpu_seconds, tree_rss_bytes
from .report import table, write
from .scenario import Profile, Scenario, Thresholds, load_scenario
from .server import ADMIN_TOKENS, SfuProcess, server_stats, start_server
from .steady import (
    cpu_per_second,
    inside,
    layer_shares,
    merged_loop_lag,
    steady_window,
    subscriber_figures,
)
from .thresholds import Check, add_flags, evaluate, flag_thresholds
from .thresholds import lines as threshold_lines
from .thresholds import summary as threshold_summary
from .worker import PeerSpec, WorkerSpec, read_result, result_path


def _http(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith("ws"):
        url = "http" + url[2:]
    return url[: -len("/ws")] if url.endswith("/ws") else url


def _ws(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith("http"):
        url = "ws" + url[4:]
    return url if url.endswith("/ws") else url + "/ws"


async def _run_worker(
    command: list[str],
    spec: WorkerSpec,
    progress: dict[int, dict[str, Any]],
    index: int,
    timeout: float,
) -> dict[str, Any]:
    path = Path(tempfile.mkstemp(prefix="sfu-worker-", suffix=".json")[1])
    data = asdict(spec)
    path.write_text(json.dumps(data))
    proc = await asyncio.create_subprocess_exec(
        *command,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )
    result: dict[str, Any] = {
        "errors": ["worker produced no result"],
        "publishers": [],
        "subscribers": [],
        "cpu_seconds": 0.0,
        "wall_seconds": 0.0,
    }
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(timeout):
            async for line in proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # a progress line is only for the display
                if isinstance(message, dict) and "progress" in message:
                    progress[index] = message["progress"]
            await proc.wait()
        written = read_result(path)
        if written is not None:
            result = written
        if proc.returncode != 0:
            assert proc.stderr is not None
            err = (await proc.stderr.read()).decode()[-2000:]
            result["errors"].append(f"worker exited with {proc.returncode}: {err}")
    except TimeoutError:
        result["errors"].append("worker timed out")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        path.unlink(missing_ok=True)
        result_path(path).unlink(missing_ok=True)
    return result


#: an arrival is matched to a send at most this long before it (seconds)
MAX_LATENCY = 5.0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latencies(
    publishers: list[dict[str, Any]],
    arrivals: list[list[Any]],
    window: tuple[float, float] | None = None,
) -> list[float]:
    """Publisher send to subscriber receive (seconds) of the arrivals (inside ``window``, if
    given), matching packets by payload key: the latest send of the key before the arrival.

    Captures loop, so every key is sent again each loop (~5 s). An arrival later than the
    last send the publishers logged is not matched: its own send may be missing from the log
    (a publisher's worker hands in its log before another worker stops receiving), and the
    latest logged send of its key would be the same payload one loop earlier."""
    sends: dict[int, list[float]] = defaultdict(list)
    log_end = float("inf")
    for pub in publishers:
        log = pub["sent_log"]
        if log:
            log_end = min(log_end, max(at for _, at in log))
        for key, at in log:
            sends[key].append(at)
    for times in sends.values():
        times.sort()
    out = []
    for key, at in arrivals:
        if at > log_end or (window is not None and not window[0] <= at <= window[1]):
            continue
        found = sends.get(key)
        if not found:
            continue
        times = found
        i = bisect.bisect_right(times, at) - 1
        if i >= 0 and at - times[i] < MAX_LATENCY:
            out.append(at - times[i])
    return out


def _latency_ms(lat: list[float]) -> dict[str, float | None]:
    return {
        q: (round(1000 * v, 2) if (v := _percentile(lat, p)) is not None else None)
        for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }


def viewer_figures(subs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the subscribers' viewers counted (:mod:`loadtest.viewer`), over their videos:
    time to first frame (median and p95 over the videos painted; how many of how many),
    freezes per minute of video, the dropped pictures' share, switch-paint latency."""
    videos = [v for s in subs for v in s.get("videos", [])]
    first = [v["first_frame_s"] for v in videos if v["first_frame_s"] is not None]
    decoded = sum(v["frames_decoded"] for v in videos)
    dropped = sum(v["frames_dropped"] for v in videos)
    freezes = sum(v["freeze_count"] for v in videos)
    minutes = sum(v["video_seconds"] for v in videos) / 60
    paints = [1000 * p for v in videos for p in v["switch_paints_s"]]
    return {
        "first_frame_s": {
            "p50": _percentile(first, 0.5),
            "p95": _percentile(first, 0.95),
            "painted": len(first),
            "videos": len(videos),
        },
        "frames_decoded": decoded,
        "frames_dropped": dropped,
        "dropped_share": round(dropped / (decoded + dropped), 4) if decoded + dropped else None,
        "freeze_count": freezes,
        "freezes_duration_s": round(sum(v["total_freezes_duration"] for v in videos), 3),
        "video_minutes": round(minutes, 3),
        "freezes_per_minute": round(freezes / minutes, 3) if minutes > 0 else None,
        "switch_paint_ms": {
            "p50": round(p, 1) if (p := _percentile(paints, 0.5)) is not None else None,
            "p95": round(p, 1) if (p := _percentile(paints, 0.95)) is not None else None,
            "count": len(paints),
        },
    }


def steady_figures(
    scenario: Scenario,
    results: list[dict[str, Any]],
    server: dict[str, Any],
) -> dict[str, Any] | None:
    """The figures over the steady window (:mod:`loadtest.steady`): per profile, latency,
    loss, packets per subscriber per second and the layers received; the server's and the
    load generator's CPU per second; the server's event-loop lag (``loop_lag`` snapshots in
    the server samples) and the generator processes' (theirs, merged). None when there is no
    steady window."""
    publishers = [p for r in results for p in r["publishers"]]
    subscribers = [s for r in results for s in r["subscribers"]]
    deadlines = [r["deadline"] for r in results if "deadline" in r]
    if not subscribers or not deadlines:
        return None
    window = steady_window([s["first_media"] for s in subscribers], min(deadlines))
    if window is None:
        return None
    profiles = {}
    for profile in scenario.profiles:
        subs = [s for s in subscribers if s["profile"] == profile.name]
        if not subs:
            continue
        lat: list[float] = []
        packets = lost = seconds = 0
        layers: Counter[str] = Counter()
        for sub in subs:
            room_publishers = [p for p in publishers if p.get("room") == sub["room"]]
            lat += latencies(room_publishers, sub["arrivals"], window)
            figures = subscriber_figures(sub, window)
            packets += figures["packets"]
            lost += figures["lost"]
            seconds += figures["seconds"]
            layers += figures["frames_by_layer"]
        profiles[profile.name] = {
            "subscribers": len(subs),
            "latency_ms": _latency_ms(lat),
            "latency_samples": len(lat),
            "loss_percent": round(100 * lost / max(1, packets + lost), 3),
            "packets_per_subscriber_second": round(packets / seconds, 1) if seconds else 0.0,
            "layers": layer_shares(layers),
        }
    out: dict[str, Any] = {
        "from": window[0],
        "to": window[1],
        "seconds": round(window[1] - window[0], 2),
        "profiles": profiles,
    }
    samples = server.get("samples", [])
    out["server_cpu_per_second"] = cpu_per_second([(s["at"], s["cpu"]) for s in samples], window)
    rates = [cpu_per_second(r.get("cpu_samples", []), window) for r in results]
    out["generator_cpu_per_second"] = (
        sum(r for r in rates if r is not None) if all(r is not None for r in rates) else None
    )
    with_lag = [s for s in samples if "loop_lag" in s]
    if with_lag:  # one process's (with several workers, whichever answered most)
        pid = Counter(s.get("loop_lag_pid") for s in with_lag).most_common(1)[0][0]
        with_lag = [s for s in with_lag if s.get("loop_lag_pid") == pid]
    lag = inside(with_lag, window, lambda s: s["at"])
    if lag is not None:
        first, last = lag
        try:
            diff = difference(first["loop_lag"], last["loop_lag"])
        except ValueError:  # two processes' (sfu serve --workers N: any worker answers)
            diff = None
        if diff is not None:
            diff["p99_ms"] = percentile_bound(diff["counts"], diff["bounds_ms"], 0.99)
            out["loop_lag"] = diff
    # the generator processes' own loop lag over the window (their subscribers stamp
    # arrivals when their loop gets to them: that lateness is in the latency figures)
    generator_lag = merged_loop_lag(
        [(r.get("loop_lag_samples", []), r.get("loop_lag", {})) for r in results], window
    )
    if generator_lag is not None:
        out["generator_loop_lag"] = generator_lag
    return out


def summarize(
    scenario: Scenario, results: list[dict[str, Any]], server: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    publishers = [p for r in results for p in r["publishers"]]
    subscribers = [s for r in results for s in r["subscribers"]]
    steady_from = max(2, int(scenario.duration / 2))  # the second half: after ramp-up, switches
    profiles = {}
    for profile in scenario.profiles:
        subs = [s for s in subscribers if s["profile"] == profile.name]
        lat: list[float] = []
        bitrates = []
        top_layers: Counter[tuple[int, int]] = Counter()
        for sub in subs:
            room_publishers = [p for p in publishers if p.get("room") == sub["room"]]
            lat += latencies(room_publishers, sub["arrivals"])
            steady = [b for sec, b in sub["bytes_per_second"] if sec >= steady_from]
            if steady:
                bitrates.append(8 * statistics.mean(steady))
            for sec, sid, tid in sub["layers"]:
                if sec >= steady_from:
                    top_layers[(sid, tid)] += 1
        received = sum(s["received"] for s in subs)
        lost = sum(s["lost"] for s in subs)
        profiles[profile.name] = {
            "subscribers": len(subs),
            "window": list(profile.window) if profile.window else None,
            "downlink_kbps": profile.downlink_kbps,
            "layers": [f"S{s}T{t}" for (s, t), _ in top_layers.most_common(2)],
            "top_spatial": max((s for (s, _) in top_layers), default=None),
            "bitrate_kbps": round(statistics.mean(bitrates) / 1000, 1) if bitrates else 0.0,
            "max_bitrate_kbps": round(max(bitrates) / 1000, 1) if bitrates else 0.0,
            "loss_percent": round(100 * lost / max(1, received + lost), 3),
            "freezes": sum(s["freezes"] for s in subs),
            "frames_decodable": sum(s["frames_decodable"] for s in subs),
            "frames_undecodable": sum(s["frames_undecodable"] for s in subs),
            "frames_incomplete": sum(s["frames_incomplete"] for s in subs),
            "keyframe_requests": sum(s["keyframe_requests"] for s in subs),
            "latency_ms": _latency_ms(lat),
            **viewer_figures(subs),
        }
    generator_cpu = sum(r["cpu_seconds"] for r in results)
    steady_part = steady_figures(scenario, results, server)
    return {
        "scenario": scenario.model_dump(),
        "elapsed": round(elapsed, 2),
        "profiles": profiles,
        "publishers": [{k: v for k, v in p.items() if k != "sent_log"} for p in publishers],
        "subscribers": [
            {k: v for k, v in s.items() if k not in ("arrivals", "frame_layers")}
            for s in subscribers
        ],
        "steady": steady_part,
        "errors": [e for r in results for e in r["errors"]],
        "server": server,
        "generator": {
            "cpu_seconds": round(generator_cpu, 2),
            "cpu_percent_of_one_core": round(100 * generator_cpu / max(elapsed, 1e-6), 1),
            "processes": len(results),
        },
    }


async def run_scenario(
    scenario: Scenario, *, quiet: bool = False, server_pid: int | None = None
) -> dict[str, Any]:
    """Run ``scenario`` to the end (bounded) and return the report data."""
    capped = [p for p in scenario.profiles if p.downlink_kbps and p.subscribers_per_room]
    links: list[ShapedLink] = []
    server: SfuProcess | None = None
    if capped:
        ok, why = namespaces_available()
        if not ok:
            raise RuntimeError(f"profiles with a downlink cap need network namespaces: {why}")
        if scenario.url is not None:
            raise RuntimeError("profiles with a downlink cap need the server started by the run")
    try:
        # one namespace per capped subscriber: a real bottleneck each
        capped_specs: list[tuple[ShapedLink, PeerSpec]] = []
        for room in range(scenario.rooms):
            for profile in capped:
                for i in range(profile.subscribers_per_room):
                    link = ShapedLink(rate_kbit=profile.downlink_kbps)
                    link.up()
                    links.append(link)
                    capped_specs.append(
                        (
                            link,
                            PeerSpec(
                                "subscriber",
                                f"room{room}",
                                f"{profile.name}-{room}-{i}",
                                profile.name,
                                profile.window,
                            ),
                        )
                    )
        if scenario.url is None:
            listen = ["127.0.0.1", *[link.host_address for link in links]]
            server = await start_server(listen, "0.0.0.0" if links else "127.0.0.1")
            url, port, server_pid = server.url, server.port, server.pid
        else:
            url = _http(scenario.url)
            port = urlsplit(url).port or 0  # its admin token, if started here

        rooms = [f"room{r}" for r in range(scenario.rooms)]
        publishers = [
            PeerSpec("publisher", room, f"pub-{room}-{i}")
            for room in rooms
            for i in range(scenario.publishers_per_room)
        ]
        plain = [
            PeerSpec("subscriber", room, f"{p.name}-{room}-{i}", p.name, p.window)
            for room in rooms
            for p in scenario.profiles
            if not p.downlink_kbps
            for i in range(p.subscribers_per_room)
        ]
        groups: list[list[PeerSpec]] = [[] for _ in range(scenario.processes)]
        for i, peer in enumerate(plain):
            groups[i % scenario.processes].append(peer)
        groups[0] = publishers + groups[0]
        start_at = time.monotonic() + 1.0
        total = max(1, len(publishers) + len(plain) + len(capped_specs))
        common: dict[str, Any] = {
            "duration": scenario.duration,
            "ramp_up": scenario.ramp_up * max(1, len(groups[0])) / total,
            "video_capture": str(scenario.video_capture),
            "audio_capture": str(scenario.audio_capture) if scenario.audio_capture else None,
            "start_at": start_at,
        }
        worker = [sys.executable, "-m", "loadtest", "worker"]
        jobs = []
        progress: dict[int, dict[str, Any]] = {}
        timeout = scenario.duration + 60
        for index, group in enumerate(g for g in groups if g):
            spec = WorkerSpec(ws_url=_ws(url), bind_address="127.0.0.1", peers=group, **common)
            jobs.append(_run_worker(worker, spec, progress, index, timeout))
        for n, (link, peer) in enumerate(capped_specs):
            spec = WorkerSpec(
                ws_url=_ws(f"http://{link.host_address}:{port}"),
                bind_address=link.peer_address,
                peers=[peer],
                **common,
            )
            jobs.append(_run_worker(link.command(*worker), spec, progress, 1000 + n, timeout))

        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        # the server's processes: one, or a supervisor and its workers (and its Redis)
        cpu_start = tree_cpu_seconds(server_pid) if server_pid else None
        gather = asyncio.ensure_future(asyncio.gather(*jobs))
        last_bytes, last_time = 0, started
        terminal = sys.stderr.isatty()
        last_line = -math.inf
        while not gather.done():
            await asyncio.wait([gather], timeout=1.0)
            now = time.monotonic()
            if server_pid:
                try:
                    samples.append(
                        {
                            "t": round(now - started, 2),
                            "at": now,
                            "cpu": round(tree_cpu_seconds(server_pid), 3),
                            "rss_mb": round(tree_rss_bytes(server_pid) / 1e6, 1),
                        }
                    )
                except OSError:
                    pass
                if port in ADMIN_TOKENS and samples:
                    try:
                        lag = await asyncio.to_thread(server_stats, url, port, only="loop_lag")
                        samples[-1]["loop_lag"] = lag["loop_lag"]
                        samples[-1]["loop_lag_pid"] = lag.get("pid")
                    except (OSError, KeyError, ValueError):
                        pass
            if not quiet:
                total_bytes = sum(p.get("received_bytes", 0) for p in progress.values())
                received = sum(p.get("received", 0) for p in progress.values())
                lost = sum(p.get("lost", 0) for p in progress.values())
                mbps = 8 * (total_bytes - last_bytes) / max(1e-6, now - last_time) / 1e6
                last_bytes, last_time = total_bytes, now
                peers = sum(p.get("peers", 0) for p in progress.values())
                loss = 100 * lost / max(1, received + lost)
                line = (
                    f"{now - started:6.1f}s  peers {peers:4d}  forwarded {mbps:7.2f} Mbit/s"
                    f"  loss {loss:5.2f}%"
                )
                if terminal:  # one line, rewritten in place
                    print(f"\r{line}", end="", file=sys.stderr, flush=True)
                elif now - last_line >= 5.0:  # piped or logged: a line every 5 s
                    last_line = now
                    print(line, file=sys.stderr, flush=True)
        if not quiet and terminal:
            print(file=sys.stderr)
        results = list(gather.result())
        elapsed = time.monotonic() - started
        seen: dict[str, Any] = {"pid": server_pid, "samples": samples}
        if cpu_start is not None and samples:
            seen["cpu_seconds"] = round(samples[-1]["cpu"] - cpu_start, 3)
            seen["cpu_percent"] = round(100 * seen["cpu_seconds"] / elapsed, 1)
            seen["max_rss_mb"] = max(s["rss_mb"] for s in samples)
        try:
            seen["stats"] = server_stats(url, port)
        except OSError:
            pass
        return summarize(scenario, results, seen, elapsed)
    finally:
        if server is not None:
            await server.aclose()
        for link in links:
            link.down()


def default_output(scenario: Scenario) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(scenario.output) / f"run-{stamp}-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", help="a YAML scenario (loadtest/scenarios/)")
    parser.add_argument("--url", help="a running server; default: start one for the run")
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--window", help="rendered size of remote videos, e.g. 640x360")
    parser.add_argument("--downlink-kbps", type=int, help="put subscribers behind a shaped link")
    parser.add_argument("--codec", default="VP9", choices=["VP9", "VP8", "AV1"])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (capped at 300)")
    parser.add_argument("--ramp-up", type=float, default=10.0, help="peers started per second")
    parser.add_argument("--processes", type=int, default=2)
    add_flags(parser)


def command(args: argparse.Namespace) -> int:
    try:
        if args.scenario:
            scenario = load_scenario(args.scenario)
        else:
            scenario = Scenario(
                url=args.url,
                rooms=args.rooms,
                publishers_per_room=args.publishers,
                codec=args.codec,
                duration=args.duration,
                ramp_up=args.ramp_up,
                processes=args.processes,
                profiles=[
                    Profile(
                        name="default",
                        subscribers_per_room=args.subscribers,
                        window=_size(args.window) if args.window else None,
                        downlink_kbps=args.downlink_kbps,
                    )
                ],
            )
        if args.url and args.scenario:
            scenario = scenario.model_copy(update={"url": args.url})
        flags = flag_thresholds(args)
    except (ValidationError, OSError, ValueError) as exc:
        print(f"loadtest: invalid scenario: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(run_scenario(scenario))
    checks = gate(scenario, report, flags)
    out = default_output(scenario)
    json_path, html_path = write(report, out)
    print(table(report))
    for line in threshold_lines(checks):
        print(line)
    print(f"report: {json_path}  plot: {html_path}")
    return exit_code(report, checks)


def gate(
    scenario: Scenario, report: dict[str, Any], flags: Thresholds | None = None
) -> list[Check]:
    """Each profile's thresholds (``flags`` over the profile's over the scenario's) checked
    against ``report``; the checks are put in the report (``thresholds``) too."""
    limits = {p.name: scenario.thresholds_for(p, flags) for p in scenario.profiles}
    checks = evaluate(report, limits)
    report["thresholds"] = {
        "limits": {name: t.model_dump(exclude_none=True) for name, t in limits.items()},
        **threshold_summary(checks),
    }
    return checks


def exit_code(report: dict[str, Any], checks: list[Check]) -> int:
    """1: the run had errors; 3: a threshold was missed; 0: neither."""
    if report["errors"]:
        return 1
    return 3 if any(not c.met for c in checks) else 0
