"""``capture``: record a real published stream. Chromium publishes to an in-process SFU,
which writes the decrypted RTP of the video (and audio) track to capture files, starting at a
keyframe.

    python -m loadtest capture --codec VP9 --seconds 5 --out-dir tests/fixtures/captures
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from sfu.codecs.keyframe import KEYFRAME_DETECTORS
from sfu.config import Settings
from sfu.forwarding.source import MediaSource
from sfu.rtp.packet import parse_rtp
from sfu.signaling.server import create_app

from .capturefile import CaptureInfo, CaptureWriter
from .chromium import chromium_page
from .server import running

MODES = {"VP9": "L3T3_KEY", "VP8": "L1T3", "AV1": "L3T3"}


class _Recorder:
    def __init__(self, source: MediaSource, path: Path, info: CaptureInfo, keyframe: bool) -> None:
        self.writer = CaptureWriter(path, info)
        self.wait_keyframe = keyframe
        self.detect = KEYFRAME_DETECTORS.get(source.params.codec)
        self.active = False

    def __call__(self, data: bytes, now: float) -> None:
        if not self.active:
            return
        if self.wait_keyframe:
            header = parse_rtp(data)
            payload = data[header.payload_offset : header.payload_end]
            if self.detect is None or not self.detect(payload):
                return
            self.wait_keyframe = False
        self.writer.write(data, now)


async def capture(codec: str, mode: str, seconds: float, out_dir: Path, warmup: float) -> None:
    """Chromium publishes ``codec`` in ``mode`` to an in-process SFU; ``seconds`` of what it
    sends, after ``warmup``, go to ``out_dir``."""
    from playwright.async_api import async_playwright

    async with running(create_app(Settings())) as server:
        rooms = server.rooms
        url = f"{server.url}/?room=capture&name=capture&codec={codec}&mode={mode}&autojoin=1"
        async with async_playwright() as p, chromium_page(p, url) as page:
            deadline = time.monotonic() + 30
            while True:
                room = rooms.rooms.get("capture")
                sources = [
                    s
                    for pt in (room.participants.values() if room else [])
                    for s in pt.sources.values()
                ]
                if len(sources) == 2:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("Chromium did not publish")
                await asyncio.sleep(0.2)
            await asyncio.sleep(warmup)
            out = await page.evaluate("window.sfuClient.outboundStats()")
            video_out = next(s for s in out if s["kind"] == "video")
            note = (
                f"Chromium sent {video_out['frameWidth']} wide, "
                f"{video_out['scalabilityMode']}, limitation "
                f"{video_out['qualityLimitationReason']}"
            )
            print(note)
            recorders = []
            for source in sources:
                name = f"{codec.lower()}_{mode}" if source.kind == "video" else "opus"
                info = CaptureInfo(
                    kind=source.kind,
                    mime_type=source.params.mime_type,
                    clock_rate=source.params.clock_rate,
                    payload_type=source.params.payload_type,
                    ssrc=source.params.ssrc,
                    extensions=dict(source.params.extensions),
                    parameters=dict(source.params.parameters),
                    scalability_mode=mode if source.kind == "video" else None,
                    note=note,
                )
                rec = _Recorder(
                    source, out_dir / f"{name}.sfucap", info, keyframe=source.kind == "video"
                )
                source.taps.append(rec)
                recorders.append((source, rec))
            for source, rec in recorders:
                rec.active = True
                if source.kind == "video":
                    source.request_keyframe(time.monotonic())
            await asyncio.sleep(seconds)
            for source, rec in recorders:
                source.taps.remove(rec)
                rec.writer.close()
                print(f"{rec.writer.count} packets -> {rec.writer._file.name}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec", choices=sorted(MODES), default="VP9")
    parser.add_argument(
        "--mode", help="scalabilityMode (default: VP9 L3T3_KEY, VP8 L1T3, AV1 L3T3)"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--out-dir", type=Path, default=Path("tests/fixtures/captures"))


def command(args: argparse.Namespace) -> int:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    mode = args.mode or MODES[args.codec]
    asyncio.run(capture(args.codec, mode, min(args.seconds, 60.0), args.out_dir, args.warmup))
    return 0
