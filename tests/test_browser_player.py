"""The recording player (/player: sfu/web/player.html, sfu/web/js/player-*.js) in real
Chromium (Debian's, through Playwright), against the real server serving recordings of the
committed captures (``recording.dir``):

* on loopback, VP9 (with Opus), AV1 and VP8: it starts on the base layer and rises to the
  top at the next segment; it decodes as many frames as the levels it played have pictures,
  each at its level's resolution in its segment, without a decoder error or a stall; each
  segment's base layer is fetched before the rest of it; in K-SVC the lower layers are read
  up to their ``key_bytes`` (range requests);
* its sans-IO core in the page: the access units it merges are byte for byte the Python
  reference's (sfu/recording/playback.py) for every segment and level; the scheduler's
  order (the base of the next segment before any enhancement), its giving up of a late
  fetch, and the level choice's hysteresis;
* on a shaped link (a network namespace behind tc): at 300 kbit/s playback starts on the
  base layer within a segment's time, rises to the top when the link gives 6 Mbit/s, and
  falls back to the base when it drops to 300 kbit/s again (in the middle of a top-layer
  fetch), with no stall and no gap between painted frames over 1 s.

`pytest -s` prints the figures."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium_page, require_chromium
from support.captures import AV1, CAPTURES, VP8, VP9, load
from support.serving import RunningServer, running

from loadtest.browser_bandwidth import chromium_in_namespace
from loadtest.capturefile import Capture, read_capture
from loadtest.looper import CaptureLooper
from loadtest.netns import ShapedLink
from sfu.auth.tokens import create_token
from sfu.config import Settings
from sfu.recording.manifest import Manifest, SegmentEntry, Track
from sfu.recording.playback import read_level
from sfu.recording.recorder import AudioRecorder, Recording, VideoRecorder
from sfu.recording.writer import RecordingWriter
from sfu.rtp.extensions import DEPENDENCY_DESCRIPTOR
from sfu.signaling.server import create_app

require_chromium()

ROOM = "rec"
#: recording ids as the server names them (sfu/signaling/recordings.py)
IDS = {
    VP9: "20261207T210000Z-000009",
    AV1: "20261207T210000Z-0000a1",
    VP8: "20261207T210000Z-000008",
}
SHAPED = "20261207T210000Z-5aa9ed"
OPUS = CAPTURES / "opus.sfucap"
WALL_CLOCK = 1_796_677_200.0  # the recorder's clock at the start (arrival)
FIGURES = "() => window.sfuPlayer && window.sfuPlayer.figures()"
PAINTS = "() => window.sfuPlayer.paints()"
FETCHES = "() => window.sfuPlayer.fetches()"
HANDED = "() => window.sfuPlayer.handed()"
NOW = "() => performance.now() / 1000"
SECRET = "s" * 40


class Recorder:
    """A capture played into the recorder (keyframe requests answered by the looper, as
    tests/test_recording_decode.py does), written into ``folder`` as it goes: the segments,
    then the manifest, after each cut (what the server's writer does); with ``audio``, the
    Opus capture looped beside it; ``window``: a live window of that many segments."""

    def __init__(
        self, name: str, folder: Path, audio: bool = False, window: int | None = None
    ) -> None:
        capture = load(name)
        info = capture.info
        self.recording = Recording(folder.name)
        video = VideoRecorder(
            "video",
            info.mime_type.split("/")[-1],
            dd_extension_id=info.extensions.get(DEPENDENCY_DESCRIPTOR),
            parameters={k: str(v) for k, v in info.parameters.items()},
            window=window,
        )
        self.recording.add(video)
        self.looped: list[tuple[VideoRecorder | AudioRecorder, CaptureLooper]] = [
            (video, looper(capture))
        ]
        if audio:
            sound = AudioRecorder("audio")
            self.recording.add(sound)
            self.looped.append((sound, looper(read_capture(OPUS))))
        self.writer = RecordingWriter(folder, fsync=False)
        #: every video segment listed by any manifest written (a live window forgets some)
        self.segments: dict[int, SegmentEntry] = {}

    def step(self, now: float) -> None:
        """The packets due at ``now`` (seconds since the start)."""
        cut = False
        for recorder, source in self.looped:
            for packet in source.due(now):
                out = recorder.on_rtp(packet, WALL_CLOCK + now)
                for segment in out.segments:
                    self.writer.write_segment(segment)
                cut = cut or bool(out.segments)
                if out.wants_keyframe:
                    source.request_keyframe()
        if cut:
            self._manifest()

    def finish(self) -> Manifest:
        for segment in self.recording.finish().segments:
            self.writer.write_segment(segment)
        return self._manifest()

    def _manifest(self) -> Manifest:
        manifest = self.recording.manifest()
        self.writer.write_manifest(manifest)
        self.segments.update({s.sequence: s for s in video_track(manifest).segments})
        return manifest


class Recordings:
    """Recordings of the committed captures in one folder (``recording.dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Manifest] = {}

    def folder(self, ident: str) -> Path:
        return self.root / ROOM / ident

    def get(self, name: str, ident: str, seconds: float, audio: bool = False) -> Manifest:
        """A recording of ``seconds`` of the capture, made at once (a simulated clock)."""
        if ident not in self.made:
            recorder = Recorder(name, self.folder(ident), audio)
            now = 0.0
            while now < seconds:
                recorder.step(now)
                now += 0.005
            self.made[ident] = recorder.finish()
        return self.made[ident]

    async def live(self, recorder: Recorder, seconds: float) -> Manifest:
        """Record for ``seconds`` of real time, then end the recording."""
        start = time.monotonic()
        while (now := time.monotonic() - start) < seconds:
            recorder.step(now)
            await asyncio.sleep(0.005)
        return recorder.finish()

    def fetch(self, ident: str) -> Callable[[str, int | None], bytes]:
        folder = self.folder(ident)

        def fetch(name: str, length: int | None) -> bytes:
            data = (folder / name).read_bytes()
            return data if length is None else data[:length]

        return fetch


def looper(capture: Capture) -> CaptureLooper:
    info = capture.info
    return CaptureLooper(
        capture, ssrc=info.ssrc, payload_type=info.payload_type, extension_ids=None
    )


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Recordings:
    return Recordings(tmp_path_factory.mktemp("recordings"))


def video_track(manifest: Manifest) -> Track:
    (track,) = [t for t in manifest.tracks if t.kind == "video"]
    return track


def expected(
    recordings: Recordings,
    manifest: Manifest,
    by_sequence: dict[int, SegmentEntry],
    handed: list[dict[str, Any]],
    levels: list[dict[str, Any]],
) -> dict[int, dict[str, Any]]:
    """Per segment the page decoded: its level, and the size of each of its pictures at that
    level (the Python reference's merge: a picture's highest spatial layer's resolution)."""
    track = video_track(manifest)
    spatial = {layer.id: layer.spatial for layer in track.layers}
    out = {}
    for h in handed:
        chosen = levels[h["index"]]
        level = next(
            lv
            for lv in track.levels
            if (lv.spatial, lv.temporal) == (chosen["spatial"], chosen["temporal"])
        )
        segment = by_sequence[h["sequence"]]
        sizes = {spatial[layer]: (f.width, f.height) for layer, f in segment.files.items()}
        units = read_level(track, segment, level, recordings.fetch(manifest.recording))
        out[h["sequence"]] = {"index": h["index"], "sizes": [sizes[u.spatial] for u in units]}
    return out


@asynccontextmanager
async def serving(
    recordings: Recordings, host: str = "127.0.0.1", secret: str | None = None
) -> AsyncIterator[RunningServer]:
    """The real server serving the recordings folder, on ``host``: in development mode, or
    with a token ``secret``."""
    auth = {} if secret is None else {"auth": {"secret": secret}}
    app = create_app(Settings.model_validate({"recording": {"dir": str(recordings.root)}, **auth}))
    async with running(app, host=host) as server:
        yield server


def player_url(base: str, ident: str) -> str:
    return f"{base}/player?room={ROOM}&recording={ident}"


async def poll(
    page: Any, until: Callable[[dict[str, Any]], bool], timeout: float, every: float = 0.25
) -> dict[str, Any]:
    """The page's figures once ``until`` holds for them."""
    deadline = time.monotonic() + timeout
    while True:
        figures = await page.evaluate(FIGURES)
        if figures and until(figures):
            return dict(figures)
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {figures}")
        await asyncio.sleep(every)


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


# -- on loopback: every codec ---------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", [VP9, AV1, VP8])
async def test_it_plays_a_recording_from_the_base_up_to_the_top(
    playwright: Any, recordings: Recordings, name: str
) -> None:
    """VP9 (and Opus) live: the page opens once two segments are written, the recording
    goes on in real time with a live window of three segments, then ends; AV1 and VP8: a
    finished recording."""
    ident = IDS[name]
    live: asyncio.Task[Manifest] | None = None
    if name == VP9:
        recorder = Recorder(name, recordings.folder(ident), audio=True, window=3)
        live = asyncio.create_task(recordings.live(recorder, 9.0))
        segments = recorder.segments  # grows
        deadline = time.monotonic() + 10
        while len(segments) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    else:
        manifest = recordings.get(name, ident, 5.0)
        segments = {s.sequence: s for s in video_track(manifest).segments}
    try:
        async with serving(recordings) as server:
            async with chromium_page(playwright, player_url(server.url, ident)) as page:
                errors = watch_errors(page)
                first = await poll(page, lambda f: f["firstFrame"] is not None, timeout=20)
                figures = await poll(page, lambda f: f["ended"], timeout=40)
                paints, handed = await page.evaluate(PAINTS), await page.evaluate(HANDED)
                fetches = await page.evaluate(FETCHES)
        if live is not None:
            manifest = await live
    finally:
        if live is not None and not live.done():
            live.cancel()
    levels = figures["levels"]
    top = len(levels) - 1
    want = expected(recordings, manifest, segments, handed, levels)
    print(
        f"\n{name}: first frame {figures['firstFrame']:.2f} s after navigation "
        f"({figures['firstFrame'] - figures['manifestAt']:.2f} s after the manifest); level by "
        f"segment {[(h['sequence'], h['index']) for h in handed]}; decoded "
        f"{figures['decoded']}, painted {figures['painted']}, dropped {figures['dropped']}; "
        f"switches (media s, from, to) "
        f"{[(round(s['media'], 2), s['from'], s['to']) for s in figures['switches']]}; "
        f"{len(fetches)} fetches, {figures['bytes']} bytes; audio {figures['audio']}"
    )
    assert not errors and figures["errors"] == [], (errors, figures["errors"])
    assert figures["firstFrame"] - figures["manifestAt"] < 3.0, figures
    assert figures["stalls"] == [], figures["stalls"]
    # every segment from the first played, the first on the base (at once), then up to the
    # top on loopback
    assert first["live"] is (name == VP9) and not figures["live"]
    played = [h["sequence"] for h in handed]
    assert played == [s for s in sorted(segments) if s >= played[0]], (played, sorted(segments))
    assert handed[0]["index"] == 0 and paints[0]["level"] == 0, handed
    # (live, the last segment comes with the end: there may be no time for more than its base)
    assert handed[-1 if live is None else -2]["index"] == top, handed
    assert any(s["from"] < s["to"] == top for s in figures["switches"]), figures["switches"]
    # as many frames decoded as the levels played have pictures, each at its resolution
    assert figures["decoded"] == sum(len(w["sizes"]) for w in want.values()), (figures, want)
    assert figures["painted"] + figures["dropped"] == figures["decoded"]
    assert figures["painted"] >= 0.5 * figures["decoded"], figures
    assert figures["layerFrames"] == 0  # Chromium's decoders: one frame per picture
    for p in paints:
        segment = want[p["sequence"]]
        assert p["level"] == segment["index"], p
        assert (p["width"], p["height"]) in segment["sizes"], (p, set(segment["sizes"]))
    # progressive: each segment's base layer came before any other file of it
    for sequence in {f["sequence"] for f in fetches}:
        of_it = [f for f in fetches if f["sequence"] == sequence and f["outcome"] == "done"]
        assert of_it[0]["base"], of_it
    if name == VP9:
        # the live window moved on while it played
        assert video_track(manifest).media_sequence > handed[0]["sequence"], manifest
        # K-SVC: at the top level, S1 read up to its key bytes (a range request)
        assert any(f["layer"] == "s1" and f["length"] for f in fetches), fetches
        audio = figures["audio"]
        assert audio["errors"] == [] and audio["decoded"] >= 100, audio
        assert audio["played"] >= 0.9 * audio["decoded"], audio


# -- the core, in the page ------------------------------------------------------------------

#: every segment of a recording merged at every level by the page's modules: a digest per
#: (segment, level) of its access units (picture, pts, keyframe, data)
MERGE_ALL = """async ({room, id}) => {
  const { levelFiles, merge, readLayerFile } = await import("/js/player-format.js");
  const base = `/recordings/${room}/${id}/`;
  const manifest = await (await fetch(base + "manifest.json")).json();
  const track = manifest.tracks.find((t) => t.kind === "video");
  const out = {};
  for (const segment of track.segments) {
    for (const level of track.levels) {
      const files = [];
      for (const need of levelFiles(track, segment, level)) {
        const headers = need.length == null ? {} : { Range: `bytes=0-${need.length - 1}` };
        const response = await fetch(base + need.name, { headers });
        const bytes = new Uint8Array(await response.arrayBuffer());
        files.push(readLayerFile(bytes));
      }
      const parts = [];
      for (const u of merge(track.codec, files, level.temporal)) {
        parts.push(new TextEncoder().encode(`${u.picture} ${u.pts} ${u.keyframe}|`), u.data);
      }
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) { all.set(p, at); at += p.length; }
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
      out[`${segment.sequence} ${level.spatial} ${level.temporal}`] =
        [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    }
  }
  return out;
}"""

#: the scheduler and the level choice on a made-up VP9 K-SVC track (2 s segments)
CORE = """async () => {
  const { Schedule } = await import("/js/player-schedule.js");
  const abr = await import("/js/player-abr.js");
  const file = (name, bytes, key, inter) => ({ name, bytes, key_bytes: key, records: 61,
    dropped: 0, inter_layer: inter });
  const segment = (n) => ({ sequence: n, start: 2 * n, duration: 2, pts: 180000 * n,
    pictures: 61, files: { s0: file(`v-${n}-s0`, 40000, 900, "none"),
      s1: file(`v-${n}-s1`, 120000, 5000, "keyframe"),
      s2: file(`v-${n}-s2`, 370000, 13000, "keyframe") } });
  const level = (s, layers, sparse, bitrate, sparseBitrate) => ({ spatial: s, temporal: 2, layers,
    sparse_layers: sparse, frame_rate: 30, bitrate, sparse_bitrate: sparseBitrate });
  const track = { codec: "VP9", timescale: 90000, target_duration: 2, media_sequence: 0,
    layers: [{ id: "s0", spatial: 0 }, { id: "s1", spatial: 1 }, { id: "s2", spatial: 2 }],
    levels: [level(0, ["s0"], [], 150e3), level(1, ["s0", "s1"], ["s0"], 600e3, 460e3),
      level(2, ["s0", "s1", "s2"], ["s0", "s1"], 2.1e6, 1.5e6)],
    segments: [0, 1, 2, 3, 4].map(segment) };
  const candidates = abr.candidateLevels(track);
  const name = (r) => r && `${r.sequence}:${r.layer}${r.length == null ? "" : "@" + r.length}`;
  // a layer file of no record ("SLS1", "VP90", header length 24)
  const empty = new Uint8Array(24);
  empty.set([0x53, 0x4c, 0x53, 0x31, 0x56, 0x50, 0x39, 0x30]);
  empty[22] = 24;
  const run = (rate, target, steps, media = 0.1) => {
    const s = new Schedule(track, candidates);
    const order = [];
    for (let i = 0; i < steps; i++) {
      const r = s.plan(media, rate, target);
      order.push(name(r));
      if (!r) break;
      s.received(r, empty);
      const due = s.due(media);
      if (due) s.hand(due);
    }
    const ready = [1, 2, 3].map((n) => (s.states.has(n) ? s.readyLevel(s.states.get(n)) : null));
    return { order, ready };
  };
  const fast = run(10e6, 2, 10);
  const slow = run(300e3, 2, 10);
  // giving up: an S2 fetch of segment 2 (due at 3.5 s), at 1 s of media
  const s = new Schedule(track, candidates);
  const request = { sequence: 2, layer: "s2", length: null, base: false, deadline: 3.5 };
  const at = (rate) => [[10, 0], [10.5, rate * 0.5], [11, rate]]; // bytes after 0, .5, 1 s
  const tp = new abr.Throughput();
  const small = tp.add(5000, 0.01);
  tp.add(100000, 0.1); // 8 Mbit/s
  tp.add(37500, 1.0); // 300 kbit/s
  return {
    fast, slow,
    giveUpSlow: s.giveUp(request, 1.0, 11, at(37500), 370000),
    giveUpFast: s.giveUp(request, 1.0, 11, at(300000), 370000),
    giveUpBase: s.giveUp({ ...request, base: true }, 1.0, 11, at(1000), 370000),
    giveUpDue: s.giveUp(request, 3.6, 11, at(300000), 370000),
    giveUpNothing: s.giveUp(request, 1.0, 11, [[10, 0]], 370000),
    giveUpYoung: s.giveUp(request, 1.0, 10.3, [[10, 0], [10.2, 1000]], 370000),
    choose: [[null, 2], [2.2e6, 0], [1.8e6, 2], [1.6e6, 2], [700e3, 1], [600e3, 1], [500e3, 1]]
      .map(([rate, current]) => abr.chooseLevel(candidates, current, rate)),
    throughput: { small, estimate: tp.estimate(), average: tp.average },
  };
}"""


@pytest.mark.timeout(60)
async def test_the_core_in_the_page(playwright: Any, recordings: Recordings) -> None:
    idents = {name: ident.replace("T21", "T22") for name, ident in IDS.items()}
    for name in (VP9, AV1, VP8):
        recordings.get(name, idents[name], 5.0)
    token = create_token(
        SECRET.encode(), room=ROOM, identity="v", grants={"recordings"}, ttl=60, now=time.time()
    )
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(serving(recordings))
        page = await stack.enter_async_context(chromium_page(playwright, f"{server.url}/player"))
        merged = {
            name: await page.evaluate(MERGE_ALL, {"room": ROOM, "id": idents[name]})
            for name in (VP9, AV1, VP8)
        }
        core = await page.evaluate(CORE)
        # with a token secret: the page passes ?token= on as Authorization: Bearer
        secured = await stack.enter_async_context(serving(recordings, secret=SECRET))
        url = player_url(secured.url, idents[AV1])
        viewer = await page.context.new_page()
        await viewer.goto(f"{url}&token={token}")
        await poll(viewer, lambda f: f["painted"] > 10, timeout=20)
        assert "token" not in viewer.url  # a credential: out of the address bar
        refused = await page.context.new_page()
        await refused.goto(url)
        await refused.wait_for_function("window.sfuPlayer && window.sfuPlayer.error")
        error = await refused.evaluate("window.sfuPlayer.error")
        assert "401" in error, error
    # the merge: byte for byte the Python reference's, every segment at every level
    for name, digests in merged.items():
        manifest = recordings.made[idents[name]]
        track = video_track(manifest)
        want = {}
        for segment in track.segments:
            for level in track.levels:
                units = read_level(track, segment, level, recordings.fetch(manifest.recording))
                h = hashlib.sha256()
                for u in units:
                    h.update(f"{u.picture} {u.pts} {str(u.keyframe).lower()}|".encode())
                    h.update(u.data)
                want[f"{segment.sequence} {level.spatial} {level.temporal}"] = h.hexdigest()
        assert digests == want, name
    # the order: the next segment's base before any enhancement; the enhancements of a
    # segment lowest first (S1 up to its key bytes: K-SVC), within two segments of buffer
    assert core["fast"]["order"] == [
        "0:s0",
        "1:s0",
        "1:s1@5000",
        "1:s2",
        "2:s0",
        "2:s1@5000",
        "2:s2",
        None,
    ], core["fast"]
    assert core["fast"]["ready"][:2] == [2, 2]
    # too slow for an enhancement to arrive in time: bases only
    assert core["slow"]["order"] == ["0:s0", "1:s0", "2:s0", None], core["slow"]
    assert core["slow"]["ready"][:2] == [0, 0]
    # a fetch that would come too late is given up, a base never
    assert core["giveUpSlow"] and not core["giveUpFast"] and not core["giveUpBase"]
    assert core["giveUpDue"] and core["giveUpNothing"] and not core["giveUpYoung"]
    # up at 0.7 of the rate, down past 0.9 (1.5 Mbit/s: up at 2.14, kept down to 1.67)
    assert core["choose"] == [0, 2, 2, 1, 1, 1, 0], core["choose"]
    # the estimate: the lower of the moving average and the last transfer; small ones skipped
    assert core["throughput"]["small"] is False
    assert core["throughput"]["estimate"] == pytest.approx(300e3)


# -- on a shaped link -----------------------------------------------------------------------

#: a TCP relay inside the namespace: 127.0.0.1:PORT there to the server on the host side, so
#: that the page is on a loopback origin (WebCodecs needs a secure context) while each of its
#: bytes crosses the shaped link
RELAY = r"""
import asyncio, sys
host, port = sys.argv[1], int(sys.argv[2])
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@asynccontextmanager
async def relay(link: ShapedLink, port: int) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        *link.command(sys.executable, "-c", RELAY, link.host_address, str(port)),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line.strip() == b"ready", line
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def mtu_sized(link: ShapedLink) -> None:
    """TCP's segments on the link at most one MTU each (no GSO): tbf never sends a packet
    larger than its bucket, and ``tc qdisc change`` keeps the packets queued, so that GSO
    packets queued at 6 Mbit/s (a bucket of 37 KB) would wedge the queue forever once the
    rate drops to 300 kbit/s (a bucket of 3 KB). HTTP is TCP; RTP's packets are MTU-sized."""
    subprocess.run(
        ["ip", "link", "set", "dev", link.host_if, "gso_max_segs", "1"], check=True, timeout=10
    )


def level_runs(paints: list[dict[str, Any]], since: float) -> list[tuple[float, int]]:
    """(seconds since ``since``, level) at each change of the painted level."""
    out: list[tuple[float, int]] = []
    for p in paints:
        if not out or out[-1][1] != p["level"]:
            out.append((round(p["t"] - since, 2), p["level"]))
    return out


def top_layer_fetch(figures: dict[str, Any]) -> bool:
    inflight = figures["inflight"]
    return bool(inflight) and inflight["layer"] == "s2" and inflight["received"] > 0


@pytest.mark.timeout(150)
async def test_on_a_shaped_link_it_starts_low_rises_and_falls_back_without_a_stall(
    playwright: Any, recordings: Recordings, namespaces: None
) -> None:
    manifest = recordings.get(VP9, SHAPED, 40.0)
    with ShapedLink(rate_kbit=300) as link:
        mtu_sized(link)
        async with serving(recordings, link.host_address) as server:
            port = int(server.url.rsplit(":", 1)[1])
            async with relay(link, port):
                url = player_url(f"http://127.0.0.1:{port}", SHAPED)
                async with chromium_in_namespace(playwright, link, url) as page:
                    errors = watch_errors(page)
                    first = await poll(page, lambda f: f["firstFrame"] is not None, timeout=20)
                    start = first["firstFrame"]
                    await asyncio.sleep(5)  # 300 kbit/s
                    low = await page.evaluate(FIGURES)
                    link.set_rate(6000)
                    rise_at = await page.evaluate(NOW)
                    top = len(low["levels"]) - 1
                    await poll(page, lambda f: f["level"]["index"] == top, timeout=20)
                    # the drop, in the middle of a top layer's fetch (if one comes soon)
                    with_s2 = True
                    try:
                        await poll(page, top_layer_fetch, timeout=8, every=0.02)
                    except AssertionError:
                        with_s2 = False
                    link.set_rate(300)
                    drop_at = await page.evaluate(NOW)
                    await poll(page, lambda f: f["level"]["index"] == 0, timeout=20)
                    await asyncio.sleep(4)  # on the base, at 300 kbit/s
                    figures = await page.evaluate(FIGURES)
                    paints, fetches = await page.evaluate(PAINTS), await page.evaluate(FETCHES)
                    end = await page.evaluate(NOW)
    runs = level_runs(paints, start)
    gaps = [b["t"] - a["t"] for a, b in zip(paints, paints[1:], strict=False)]
    given_up = [f for f in fetches if f["outcome"] == "given up"]
    risen = next(t for t, level in runs if level == top and t + start > rise_at)
    fallen = next(t for t, level in runs if level == 0 and t + start > drop_at)
    print(
        f"\nshaped: first frame {start:.2f} s after navigation at 300 kbit/s "
        f"({start - first['manifestAt']:.2f} s after the manifest); painted levels (s since "
        f"the first frame, level) {runs}; 6 Mbit/s at {rise_at - start:.1f} s, the top "
        f"painted at {risen:.1f} s; 300 kbit/s at {drop_at - start:.1f} s (during an S2 "
        f"fetch: {with_s2}), the base painted at {fallen:.1f} s; longest gap between frames "
        f"{max(gaps):.3f} s; stalls {figures['stalls']}; given up (segment, layer, bytes, s) "
        f"{[(f['sequence'], f['layer'], f['bytes'], round(f['seconds'], 2)) for f in given_up]};"
        f" rate at the end {round(figures['rate'] or 0)} bit/s; decoded {figures['decoded']}, "
        f"dropped {figures['dropped']}"
    )
    assert not errors and figures["errors"] == [], (errors, figures["errors"])
    # the first frame within a segment's time of the manifest (the page, ~70 KB of HTML,
    # modules and manifest, takes ~2 s more at 300 kbit/s)
    assert start - first["manifestAt"] <= manifest.target_duration + 1.0, first
    assert start <= manifest.target_duration + 5.0, first
    # the base only at 300 kbit/s
    assert low["level"]["index"] == 0 and all(p["level"] == 0 for p in paints if p["t"] < rise_at)
    # up with the link, and down again
    assert risen - (rise_at - start) <= 15, runs
    assert fallen - (drop_at - start) <= 15, runs
    if with_s2:
        assert given_up, fetches
    # never waiting: no stall, no gap between painted frames over 1 s
    assert figures["stalls"] == [] and max(gaps) <= 1.0, (figures["stalls"], max(gaps))
    assert not figures["stalled"] and end - paints[-1]["t"] <= 1.0, (figures, paints[-1], end)
