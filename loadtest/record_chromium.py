"""``record-chromium``: a layered recording of a real Chromium publisher, and what it stored.

``sfu serve`` runs with ``recording.dir`` and a policy that records the room; one Chromium
page (the demo, fake camera and microphone) publishes for ``--seconds``, then leaves; the
recording ends with the room. Printed: the publisher's own view (what it encoded: its
resolution, its ``qualityLimitationReason`` on this machine), and from the final manifest,
per video layer its resolution and bitrate, the bytes stored for all layers, for the top
level alone (a K-SVC range read of the lower files, see docs/recording.md), for each level,
and the audio's.  ``--keep DIR`` keeps the recording there (for ``recording-figures``).

::

    python -m loadtest record-chromium --seconds 60
    python -m loadtest record-chromium --seconds 60 --codec AV1 --keep /tmp/rec
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sfu.recording.manifest import Manifest

from .chromium import chromium_page
from .server import start_sfu


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="how long it publishes")
    parser.add_argument("--codec", default="VP9", choices=["VP9", "AV1", "VP8"])
    parser.add_argument("--res", default="1280x720", help="the fake camera's capture size")
    parser.add_argument("--segment", type=float, default=2.0, help="segment_duration, s")
    parser.add_argument("--keep", type=Path, help="write the recording here (kept)")


def level_bytes(manifest: Manifest) -> dict[str, dict[str, int]]:
    """Per track and level (``S2T2``...), the bytes a player of that level fetches, whole
    files and, where the manifest allows, with the sparse (``key_bytes``) read."""
    out: dict[str, dict[str, int]] = {}
    for track in manifest.tracks:
        figures: dict[str, int] = {}
        for level in track.levels:
            whole = sparse = 0
            for segment in track.segments:
                for layer in level.layers:
                    entry = segment.files.get(layer)
                    if entry is None:
                        continue
                    whole += entry.bytes
                    sparse += entry.key_bytes if layer in level.sparse_layers else entry.bytes
            name = f"S{level.spatial}T{level.temporal}"
            figures[name] = whole
            if level.sparse_layers:
                figures[f"{name} sparse"] = sparse
        out[track.name] = figures
    return out


async def record(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    config = (
        f"recording: {{dir: '{folder}', segment_duration: {args.segment}}}\n"
        "rooms:\n  policies: {recorded: {record: true}}\n"
        "  rules: [{match: 'rec-*', policy: recorded}]\n"
    )
    server = start_sfu(config_yaml=config)
    publisher: dict[str, Any] = {}
    try:
        await server.wait_healthy()
        url = f"{server.url}/?room=rec-1&name=cam&codec={args.codec}&res={args.res}&autojoin=1"
        async with async_playwright() as playwright, chromium_page(playwright, url) as page:
            started = time.monotonic()
            await page.wait_for_function(
                "window.sfuClient && window.sfuClient.publishPc", timeout=30000
            )
            while time.monotonic() - started < args.seconds:
                await asyncio.sleep(min(5.0, args.seconds))
                publisher = await page.evaluate(
                    """async () => {
                      const out = {};
                      (await sfuClient.publishPc.getStats()).forEach(s => {
                        if (s.type === 'outbound-rtp' && s.kind === 'video') Object.assign(out, {
                          width: s.frameWidth, height: s.frameHeight, fps: s.framesPerSecond,
                          mode: s.scalabilityMode, limitation: s.qualityLimitationReason,
                          bytes: s.bytesSent, encode_s: s.totalEncodeTime});
                      });
                      return out;
                    }"""
                )
            await page.evaluate("sfuClient.leave()")
        deadline = time.monotonic() + 20
        manifest_path: Path | None = None
        while time.monotonic() < deadline:
            found = list((folder / "rec-1").glob("*/manifest.json"))
            if found and json.loads(found[0].read_text()).get("endlist"):
                manifest_path = found[0]
                break
            await asyncio.sleep(0.5)
        if manifest_path is None:
            raise RuntimeError("the recording did not end")
        return {
            "manifest": Manifest.model_validate_json(manifest_path.read_bytes()),
            "folder": manifest_path.parent,
            "publisher": publisher,
        }
    finally:
        await server.aclose()


def report(result: dict[str, Any]) -> str:
    manifest: Manifest = result["manifest"]
    lines = [f"publisher (Chromium's own view, last sample): {result['publisher']}"]
    stored = sum(f.stat().st_size for f in Path(result["folder"]).glob("*.sls"))
    for track in manifest.tracks:
        duration = sum(s.duration for s in track.segments)
        lines.append(
            f"{track.name}: {track.codec}, {len(track.segments)} segments, {duration:.1f} s, "
            f"{sum(s.discontinuity for s in track.segments)} discontinuities"
        )
        for layer in track.layers:
            shape = f"{layer.width}x{layer.height}"
            lines.append(f"  layer {layer.id}: {shape} {layer.bitrate / 1000:.0f} kbit/s")
    for name, figures in level_bytes(manifest).items():
        all_bytes = max(figures.values()) if figures else 0
        for level, level_size in figures.items():
            share = level_size / all_bytes if all_bytes else 0
            lines.append(
                f"  {name} level {level}: {level_size / 1e6:.2f} MB ({share:.0%} of all layers)"
            )
    lines.append(f"stored in segment files: {stored / 1e6:.2f} MB")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    folder = args.keep or Path(tempfile.mkdtemp(prefix="sfu-record-"))
    try:
        result = asyncio.run(record(args, folder))
        print(report(result))
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
