// The player's loop: the clock, one fetch at a time as the scheduler says (given up when it
// says so), segments handed to the decoder when due, frames painted when due, the manifest
// re-read while the recording is live. The decisions are player-abr.js's (the level) and
// player-schedule.js's (what to fetch, when to decode); this is the glue to fetch, the
// decoders and the canvas.

import { Throughput, candidateLevels, chooseLevel, levelBitrate } from "./player-abr.js";
import { Schedule } from "./player-schedule.js";
import { recordingUrl } from "./player-net.js";
import { VideoOut } from "./player-video.js";

// the control loop's period (ms): fetch decisions, giving up, handing segments
const TICK_MS = 50;
// a failed fetch is tried again after this long (ms)
const RETRY_MS = 1000;
const MAX_LOG = 2000;
// a live manifest is read again every this share of the target duration (HLS: a target
// duration, half of it when it had not changed; here always half, to be near the edge)
const REFRESH = 0.5;
// the clock waits this long (s) at most for the sound before it starts
const START_WAIT = 1.0;

// The media clock (s on the tracks' timeline): runs from play() to pause().
export class Clock {
  constructor(position = 0) {
    this.position = position;
    this.origin = null; // performance.now() at media time 0 while playing
  }

  get playing() {
    return this.origin != null;
  }

  now() {
    return this.playing ? (performance.now() - this.origin) / 1000 : this.position;
  }

  play() {
    if (!this.playing) this.origin = performance.now() - this.position * 1000;
  }

  pause(at = this.now()) {
    this.position = at;
    this.origin = null;
  }
}

export class Player extends EventTarget {
  // net: a Net (player-net.js); manifest: the first one read; canvas: where to paint;
  // trackName: the video track to play (a room's recording has one per publisher and
  // source: "ann-video", "ann-screen"); startTime: where to start (s), not live
  constructor(net, room, id, manifest, canvas, { trackName, startTime = 0 } = {}) {
    super();
    this.net = net;
    this.room = room;
    this.id = id;
    this.manifest = manifest;
    this.track = manifest.tracks.find((t) => t.kind === "video" && t.name === trackName);
    if (!this.track) throw new Error(`the recording has no video track ${trackName}`);
    this.candidates = candidateLevels(this.track);
    this.schedule = new Schedule(this.track, this.candidates, { live: !manifest.endlist, startTime });
    const first = this.schedule.next == null ? null : this.schedule.states.get(this.schedule.next);
    this.clock = new Clock(first ? this.schedule.start(first.entry) : 0);
    this.video = new VideoOut(canvas, this.track.codec_string, this.track.timescale);
    this.throughput = new Throughput();
    this.target = 0; // the candidate index aimed at
    this.current = null; // what is painted: {index, sequence, bitrate}
    this.inflight = null;
    this.retryAt = 0;
    this.fetches = []; // {t, sequence, layer, length, bytes, seconds, base, outcome}
    this.handed = []; // {t, sequence, index}
    this.stalls = []; // {t, media, seconds}
    this.stalledAt = null;
    this.started = null; // performance.now() / 1000 at the first paint
    // () => true when the clock may start (the sound's first buffer is here): waited for at
    // the start, START_WAIT at most after the first frame is decoded
    this.startGate = null;
    this.readySince = null;
    this.played = false; // the clock ran once
    this.ended = false;
    this.segmentBytes = new Map(); // sequence -> {bytes, duration}
    this._timer = setInterval(() => this.tick(), TICK_MS);
    this._manifestTimer = null;
    if (!manifest.endlist) this._refreshSoon();
    const frame = () => {
      if (this.ended) return;
      this.paint();
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    this.tick();
  }

  url(name) {
    return recordingUrl(this.room, this.id, name);
  }

  async _refresh() {
    try {
      const manifest = await this.net.json(this.url("manifest.json"));
      const track = manifest.tracks.find((t) => t.name === this.track.name);
      if (track) {
        this.manifest = manifest;
        this.track = track;
        this.schedule.update(track);
      }
    } catch (e) {
      this._event("error", { message: `manifest: ${e.message}` });
    }
    if (!this.manifest.endlist && !this.ended) this._refreshSoon();
  }

  _refreshSoon() {
    this._manifestTimer = setTimeout(() => this._refresh(), REFRESH * 1000 * this.manifest.target_duration);
  }

  _event(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  tick() {
    if (this.ended) return;
    const now = performance.now() / 1000;
    const media = this.clock.now();
    this.target = chooseLevel(this.candidates, this.target, this.throughput.estimate());
    // segments due go to the decoder (and a fetch for one of them is given up)
    for (let state = this.schedule.due(media); state; state = this.schedule.due(media)) {
      const handed = this.schedule.hand(state);
      const { entry, level, index } = handed;
      const top = level.layers.filter((l) => entry.files[l]).pop();
      const file = entry.files[top] || {};
      this.segmentBytes.set(entry.sequence, { bytes: handed.bytes, duration: entry.duration });
      const tag = { sequence: entry.sequence, index, width: file.width, height: file.height };
      this.video.push(handed.units, tag);
      if (this.handed.length < MAX_LOG) this.handed.push({ t: now, sequence: entry.sequence, index });
      if (this.inflight && this.inflight.request.sequence === entry.sequence) {
        this.inflight.controller.abort(); // too late for it
      }
    }
    if (this.inflight) {
      const f = this.inflight;
      if (this.schedule.giveUp(f.request, media, now, f.progress, f.total)) {
        f.recent = this.schedule.recent(f.progress, now); // its rate now, for the estimate
        f.controller.abort();
      }
    } else if (now * 1000 >= this.retryAt) {
      const request = this.schedule.plan(media, this.throughput.estimate(), this.target);
      if (request) this._fetch(request);
    }
    if (this.schedule.ended(this.manifest.endlist)) this.video.finish();
    if (this.video.drained() && this.clock.now() >= this.schedule.handedEnd - 0.05) {
      this.stop();
      this._event("ended", {});
    }
  }

  async _fetch(request) {
    const state = this.schedule.states.get(request.sequence);
    const total = request.length ?? state.entry.files[request.layer].bytes;
    const started = performance.now() / 1000;
    const f = { request, controller: new AbortController(), progress: [[started, 0]], total, started };
    this.inflight = f;
    const { sequence, layer, length, base } = request;
    const log = { t: started, sequence, layer, length, base };
    let received = 0;
    try {
      const { data, seconds } = await this.net.file(this.url(request.name), request.length, {
        signal: f.controller.signal,
        onProgress: (bytes) => {
          received = bytes;
          f.progress.push([performance.now() / 1000, bytes]);
        },
      });
      this.throughput.add(data.length, seconds);
      this.schedule.received(request, data);
      Object.assign(log, { bytes: data.length, seconds, outcome: "done" });
    } catch (e) {
      const seconds = performance.now() / 1000 - f.started;
      if (f.controller.signal.aborted) {
        // what it got until then says the rate too: lately, if it was given up for slowness
        if (f.recent) this.throughput.add(...f.recent);
        else this.throughput.add(received, seconds);
        Object.assign(log, { bytes: received, seconds, outcome: "given up" });
      } else {
        this.retryAt = performance.now() + RETRY_MS;
        Object.assign(log, { bytes: received, seconds, outcome: `error: ${e.message}` });
        this._event("error", { message: e.message });
      }
    } finally {
      this.inflight = null;
      if (this.fetches.length < MAX_LOG) this.fetches.push(log);
    }
    this.tick();
  }

  // every animation frame: the clock (started at the first frame, paused when nothing is
  // left to play), and the frame due painted
  paint() {
    const media = this.clock.now();
    const end = this.schedule.handedEnd;
    if (this.clock.playing && end != null && media >= end && !this.video.ready()) {
      this.clock.pause(end); // the buffer ran out: wait for the next segment
      this.stalledAt = { t: performance.now() / 1000, media: end };
    }
    if (!this.clock.playing && this.video.ready() && (this.played || this._mayStart())) {
      if (!this.played) this.clock.pause(Math.max(this.clock.position, this.video.firstTime()));
      this.played = true;
      this.clock.play();
      if (this.stalledAt) {
        const seconds = performance.now() / 1000 - this.stalledAt.t;
        if (!this.schedule.ended(this.manifest.endlist)) this.stalls.push({ ...this.stalledAt, seconds });
        this.stalledAt = null;
      }
    }
    const painted = this.video.paint(this.clock.now());
    if (painted) {
      if (this.started == null) this.started = painted.t;
      if (!this.current || this.current.sequence !== painted.sequence) {
        const seg = this.segmentBytes.get(painted.sequence);
        this.current = {
          index: painted.level, sequence: painted.sequence,
          bitrate: seg && seg.duration > 0 ? (8 * seg.bytes) / seg.duration : null,
        };
      }
    }
  }

  _mayStart() {
    const now = performance.now() / 1000;
    if (this.readySince == null) this.readySince = now;
    return !this.startGate || this.startGate() || now - this.readySince > START_WAIT;
  }

  // what the page shows, and what a test reads
  figures() {
    const level = this.current ? this.candidates[this.current.index] : null;
    const target = this.candidates[this.target];
    const media = this.clock.now();
    const buffered = this.schedule.bufferedEnd();
    const f = this.inflight;
    return {
      codec: this.track.codec, live: !this.manifest.endlist, ended: this.ended,
      rate: this.throughput.estimate(), lastRate: this.throughput.last,
      level: level ? { ...level, index: this.current.index } : null,
      target: { ...target, index: this.target }, levelBitrate: level ? levelBitrate(level) : null,
      bitrate: this.current ? this.current.bitrate : null,
      decoded: this.video.decoded, dropped: this.video.dropped, painted: this.video.painted,
      layerFrames: this.video.layerFrames, media,
      buffer: buffered == null ? 0 : Math.max(0, buffered - media),
      firstFrame: this.started, manifestAt: this.manifestAt ?? null,
      stalled: this.stalledAt != null, stalls: this.stalls,
      switches: this.video.switches, errors: this.video.errors, bytes: this.net.bytes,
      inflight: f ? { ...f.request, received: f.progress.at(-1)[1] } : null,
      levels: this.candidates.map((l, index) => ({
        index, spatial: l.spatial, temporal: l.temporal, width: l.width, height: l.height,
        bitrate: levelBitrate(l),
      })),
    };
  }

  stop() {
    this.ended = true;
    clearInterval(this._timer);
    clearTimeout(this._manifestTimer);
    if (this.inflight) this.inflight.controller.abort();
  }
}
