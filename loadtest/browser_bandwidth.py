"""``browser-bandwidth``: a real Chromium subscriber behind a shaped link: the demo page,
receive-only, in its own network namespace behind ``tc`` (:class:`loadtest.netns.ShapedLink`),
against a replayed VP9 L3T3_KEY publisher on this host; the link follows a schedule
(2.5 Mbit/s -> 400 kbit/s -> 2.5 Mbit/s). Every ~0.3 s both what the SFU did (``/stats``, as
``bandwidth``) and what the page got (its ``getStats()`` inbound-rtp video) are sampled.

    python -m loadtest browser-bandwidth             # the default schedule, figures printed
    python -m loadtest browser-bandwidth --json      # figures and every sample

**Why a wrapper script.** Playwright starts the browser itself and drives it over
``--remote-debugging-pipe`` (file descriptors 3 and 4); it cannot be told to start it in a
network namespace. So its ``executable_path`` is a small generated script,
``exec ip netns exec <namespace> /usr/bin/chromium "$@"``: ``ip netns exec`` enters the
namespace and execs Debian's Chromium in the same process (the PID Playwright knows stays the
browser's), keeping the descriptors open; every process Chromium starts (renderer, network
service) inherits the namespace. It is still Debian's ``/usr/bin/chromium`` with the flags of
:data:`loadtest.chromium.CHROMIUM_ARGS` and a fresh profile, never a downloaded browser.

The page is ``sfu/web/index.html`` served by the SFU at the link's host address, with
``publish=0`` (no camera: the page only receives and decodes) and a 1280x720 tile (the
window does not limit the layer). The schedule's clock starts at the page's first decoded
frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .bandwidth import (
    _publisher_plis,
    _sample,
    _stats,
    _subscriber_view,
    add_arguments,
    layer_figures,
    sample_line,
    shaped_setup,
)
from .chromium import CHROMIUM, chromium_available, chromium_page
from .netns import ShapedLink
from .proc import total_cpu_seconds

#: this command's arguments are bandwidth's (add_arguments)
__all__ = ["add_arguments", "command", "figures", "phase_figures", "run_schedule"]

SAMPLE_PERIOD = 0.3
ROOM = "shaped"
SUBSCRIBER = "chromium"

#: the page's inbound video (one remote video) and the selected candidate pair
PAGE_STATS = """async () => {
  const c = window.sfuClient;
  if (!c || !c.subscribePc) return null;
  const report = await c.subscribePc.getStats();
  let video = null, transport = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") video = s;
    if (s.type === "transport") transport = s;
  });
  const pair = transport && report.get(transport.selectedCandidatePairId);
  const local = pair && report.get(pair.localCandidateId);
  const remote = pair && report.get(pair.remoteCandidateId);
  const pick = (s, keys) => s ? Object.fromEntries(keys.map((k) => [k, s[k] ?? null])) : null;
  return {
    video: pick(video, [
      "framesReceived", "framesDecoded", "framesDropped", "keyFramesDecoded",
      "frameWidth", "frameHeight", "framesPerSecond", "freezeCount", "totalFreezesDuration",
      "pauseCount", "totalPausesDuration", "packetsReceived", "packetsLost", "bytesReceived",
      "retransmittedPacketsReceived", "nackCount", "pliCount", "firCount",
      "jitterBufferDelay", "jitterBufferEmittedCount", "totalDecodeTime",
    ]),
    local: local ? local.address : null,
    remote: remote ? `${remote.address}:${remote.port}` : null,
  };
}"""


def namespace_wrapper(namespace: str, chromium: str = CHROMIUM) -> Path:
    """A script that runs ``chromium`` with its arguments inside ``namespace`` (see the
    module's docstring); the caller deletes it."""
    fd, name = tempfile.mkstemp(prefix="sfu-chromium-netns-", suffix=".sh")
    with os.fdopen(fd, "w") as f:
        f.write(
            "#!/bin/sh\n"
            "# Playwright's browser, in a network namespace (loadtest/browser_bandwidth.py)\n"
            f'exec ip netns exec {namespace} {chromium} "$@"\n'
        )
    path = Path(name)
    path.chmod(stat.S_IRWXU)
    return path


@asynccontextmanager
async def chromium_in_namespace(playwright: Any, link: ShapedLink, url: str) -> AsyncIterator[Any]:
    """A page at ``url`` in a Chromium that runs inside ``link``'s namespace."""
    wrapper = namespace_wrapper(link.name)
    try:
        async with chromium_page(playwright, url, executable=str(wrapper)) as page:
            yield page
    finally:
        wrapper.unlink(missing_ok=True)


def _output(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=10).stdout


def namespace_processes(namespace: str) -> dict[int, str]:
    """PID -> command name of the processes inside ``namespace``."""
    pids = _output("ip", "netns", "pids", namespace).split()
    out = {}
    for pid in pids:
        try:
            out[int(pid)] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
    return out


def qdisc_counters(device: str) -> dict[str, int]:
    """Bytes, packets sent and packets dropped by ``device``'s root qdisc (the shaper)."""
    text = _output("tc", "-s", "qdisc", "show", "dev", device)
    match = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+)", text)
    if match is None:
        return {}
    sent, packets, dropped = (int(x) for x in match.groups())
    return {"bytes": sent, "packets": packets, "dropped": dropped}


async def _page_stats(page: Any) -> dict[str, Any] | None:
    stats = await page.evaluate(PAGE_STATS)
    return None if stats is None else dict(stats)


async def run_schedule(
    schedule: list[tuple[float, int]], codec: str = "VP9", first_frame_timeout: float = 30.0
) -> dict[str, Any]:
    """The schedule against a Chromium subscriber; samples of the SFU's and the page's view."""
    from playwright.async_api import async_playwright

    if not chromium_available():
        raise RuntimeError(f"needs Debian's chromium at {CHROMIUM}")
    total = sum(seconds for seconds, _ in schedule)
    async with shaped_setup(schedule, codec, ROOM) as setup:
        link, proc, port = setup.link, setup.server, setup.port
        url = (
            f"http://{link.host_address}:{port}/?room={ROOM}&name={SUBSCRIBER}"
            "&publish=0&tile=1280x720&autojoin=1"
        )
        async with async_playwright() as playwright:
            launched = time.monotonic()
            async with chromium_in_namespace(playwright, link, url) as page:
                # the clock starts at the first decoded frame
                while True:
                    first = await _page_stats(page)
                    if first and first["video"] and (first["video"]["framesDecoded"] or 0) > 0:
                        break
                    if time.monotonic() - launched > first_frame_timeout:
                        raise RuntimeError(f"no decoded frame in {first_frame_timeout}s: {first}")
                    await asyncio.sleep(0.1)
                started = time.monotonic()
                first_frame = started - launched
                processes = namespace_processes(link.name)
                cpu_before = total_cpu_seconds(list(processes))
                sfu_cpu_before = total_cpu_seconds([proc.pid])
                qdisc_before = qdisc_counters(link.host_if)
                samples: list[dict[str, Any]] = []
                changes = []
                boundary = started
                candidate_pair = (first["local"], first["remote"])
                for index, (seconds, kbps) in enumerate(schedule):
                    if index:
                        link.set_rate(kbps)
                        changes.append({"t": round(time.monotonic() - started, 2), "kbps": kbps})
                    boundary += seconds
                    while time.monotonic() < boundary:
                        await asyncio.sleep(SAMPLE_PERIOD)
                        try:
                            stats, seen = await asyncio.gather(
                                asyncio.to_thread(_stats, port), _page_stats(page)
                            )
                        except OSError:
                            continue
                        t = round(time.monotonic() - started, 2)
                        view = _subscriber_view(stats, SUBSCRIBER)
                        if view is None or view["video"] is None or not seen or not seen["video"]:
                            continue
                        sample = _sample(view, t, kbps)
                        # the SFU's retransmissions to the page, those it declined, and the
                        # page's keyframe requests as the SFU got them
                        sample["rtx"] = view["video"].get("retransmitted")
                        sample["rtx_skipped"] = view["video"].get("retransmissions_skipped")
                        sample["keyframe_requests"] = view["video"].get("keyframe_requests")
                        sample["plis_upstream"] = _publisher_plis(stats)
                        sample["page"] = seen["video"]
                        samples.append(sample)
                        candidate_pair = (seen["local"], seen["remote"])
                elapsed = time.monotonic() - started
                cpu = total_cpu_seconds(list(processes)) - cpu_before
                sfu_cpu = total_cpu_seconds([proc.pid]) - sfu_cpu_before
                after = qdisc_counters(link.host_if)
                plis = _publisher_plis(_stats(port))
        return {
            "schedule": schedule,
            "changes": changes,
            "samples": samples,
            "plis_upstream": plis,
            "duration": total,
            "first_frame_s": round(first_frame, 2),
            "namespace": {
                "peer_address": link.peer_address,
                "candidate_pair": list(candidate_pair),
                "processes": sorted(set(processes.values())),
                "shaper": {k: after.get(k, 0) - v for k, v in qdisc_before.items()},
            },
            "cpu": {
                "chromium_percent": round(100 * cpu / elapsed, 1),
                "sfu_percent": round(100 * sfu_cpu / elapsed, 1),
            },
        }


def _delta(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return float((b.get(key) or 0) - (a.get(key) or 0))


def _longest_stall(samples: list[dict[str, Any]]) -> float:
    """The longest time between two increments of framesDecoded, at the sampling resolution
    (the true gap is shorter by up to a sampling period)."""
    longest = 0.0
    last_change: float | None = None
    previous: int | None = None
    for s in samples:
        frames = s["page"]["framesDecoded"] or 0
        if previous is None or frames > previous:
            if last_change is not None:
                longest = max(longest, s["t"] - last_change)
            last_change = s["t"]
            previous = frames
    if samples and last_change is not None:
        longest = max(longest, samples[-1]["t"] - last_change)
    return round(longest, 2)


def phase_figures(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page got over ``samples`` (one phase): freezes as Chromium counts them,
    the longest stall, decode rate and time, jitter buffer delay, losses and requests."""
    if len(samples) < 2:
        return {}
    a, b = samples[0]["page"], samples[-1]["page"]
    seconds = samples[-1]["t"] - samples[0]["t"]
    decoded = _delta(a, b, "framesDecoded")
    emitted = _delta(a, b, "jitterBufferEmittedCount")
    widths = sorted({s["page"]["frameWidth"] for s in samples if s["page"]["frameWidth"]})
    return {
        "freeze_count": int(_delta(a, b, "freezeCount")),
        "freezes_s": round(_delta(a, b, "totalFreezesDuration"), 3),
        "longest_stall_s": _longest_stall(samples),
        "decode_fps": round(decoded / seconds, 1) if seconds > 0 else None,
        "decode_ms_per_frame": round(1000 * _delta(a, b, "totalDecodeTime") / decoded, 2)
        if decoded
        else None,
        "jitter_buffer_ms": round(1000 * _delta(a, b, "jitterBufferDelay") / emitted, 1)
        if emitted
        else None,
        "frames_dropped": int(_delta(a, b, "framesDropped")),
        "packets_lost": int(_delta(a, b, "packetsLost")),
        "nacks": int(_delta(a, b, "nackCount")),
        "plis": int(_delta(a, b, "pliCount")),
        "keyframes_decoded": int(_delta(a, b, "keyFramesDecoded")),
        "widths": widths,
    }


def figures(run: dict[str, Any]) -> dict[str, Any]:
    """The SFU's figures (:func:`loadtest.bandwidth.layer_figures`: time to switch down and
    to fit after a drop, back to the top layer after a rise, switches at steady bandwidth),
    with what the page saw: time until its frameWidth followed, and each phase's freezes."""
    samples = run["samples"]
    out = layer_figures(run)
    rates = [kbps for _, kbps in run["schedule"]]
    for change, previous, entry in zip(run["changes"], rates, out["changes"], strict=False):
        after = [s for s in samples if s["t"] >= change["t"]]
        if change["kbps"] < previous:
            entry["page_width_drop"] = next(
                (
                    round(s["t"] - change["t"], 2)
                    for s in after
                    if (s["page"]["frameWidth"] or 0) < 1280
                ),
                None,
            )
        else:
            entry["page_width_1280"] = next(
                (round(s["t"] - change["t"], 2) for s in after if s["page"]["frameWidth"] == 1280),
                None,
            )
    edges = [0.0, *[c["t"] for c in run["changes"]], run["duration"]]
    out["phases"] = []
    phases = zip(edges, edges[1:], run["schedule"], strict=False)
    for a, b, (_, kbps) in phases:
        phase = [s for s in samples if a <= s["t"] < b]
        out["phases"].append({"from": a, "kbps": kbps, **phase_figures(phase)})
    out["page"] = phase_figures(samples)
    out["plis_upstream"] = run["plis_upstream"]
    out["plis_per_second"] = round(run["plis_upstream"] / run["duration"], 2)
    out["first_frame_s"] = run["first_frame_s"]
    out["cpu"] = run["cpu"]
    out["namespace"] = run["namespace"]
    return out


def command(args: argparse.Namespace) -> int:
    run = asyncio.run(run_schedule(args.schedule, args.codec))
    result = figures(run)
    if args.json:
        print(json.dumps({"figures": result, "samples": run["samples"]}, indent=1))
    else:
        for s in run["samples"][::3]:
            page = s["page"]
            print(
                f"{sample_line(s)}  page {page['frameWidth']}x"
                f"{page['frameHeight']} {page['framesPerSecond']} fps "
                f"decoded {page['framesDecoded']} freezes {page['freezeCount']}"
            )
        print(json.dumps(result, indent=1))
    return 0
