// The recording's Opus track: its segments fetched a little ahead of the video's clock,
// decoded with WebCodecs AudioDecoder, and played through WebAudio, each buffer started at
// the AudioContext time of its presentation time on the video's clock (the two tracks'
// timelines joined by their first segments' `arrival`, docs/recording.md). A stall of the
// video suspends the audio with it.

import { merge, readLayerFile } from "./player-format.js";

// audio fetched ahead of the clock (s)
const AHEAD = 3;
// buffers scheduled ahead of the clock (s)
const SCHEDULE_AHEAD = 0.5;
// a buffer starts where the last one ended when that is this close to its own time (s)
const JOIN = 0.04;

export class AudioOut {
  constructor(player, track) {
    this.player = player;
    this.track = track;
    this.context = new AudioContext({ sampleRate: track.sample_rate || 48000 });
    this.buffers = []; // {t (s, the video's clock), buffer}, in order
    this.fetched = new Set(); // sequences fetched (or being fetched)
    this.busy = false;
    this.sources = [];
    this.nextWhen = null; // AudioContext time where the last scheduled buffer ends
    this.decoded = 0;
    this.played = 0;
    this.late = 0;
    this.errors = [];
    this.offset = this._offset();
    this.decoder = new AudioDecoder({
      output: (data) => this._output(data),
      error: (e) => this.errors.push(String(e && e.message || e)),
    });
    this.decoder.configure({
      codec: track.codec_string || "opus",
      sampleRate: track.sample_rate || 48000,
      numberOfChannels: track.channels || 2,
    });
    this._timer = setInterval(() => this.tick(), 100);
    const frame = () => {
      if (this.decoder.state === "closed") return;
      if (this.player.clock.playing) this._schedule(this.player.clock.now());
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame); // right after the video's paint: the clock just read
  }

  // seconds to add to the audio's presentation times to put them on the video's timeline
  _offset() {
    const video = this.player.track.segments[0];
    const audio = this.track.segments[0];
    if (!video || !audio || !video.arrival || !audio.arrival) return 0;
    const began = (entry, track) => entry.arrival - entry.pts / track.timescale; // wall clock at 0
    return began(audio, this.track) - began(video, this.player.track);
  }

  // something to play (or nothing will come): the clock may start
  ready() {
    return this.buffers.length > 0 || this.errors.length > 0;
  }

  resume() {
    return this.context.resume();
  }

  _output(data) {
    const buffer = this.context.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
    for (let c = 0; c < data.numberOfChannels; c++) {
      const samples = new Float32Array(data.numberOfFrames);
      data.copyTo(samples, { planeIndex: c, format: "f32-planar" });
      buffer.copyToChannel(samples, c);
    }
    this.buffers.push({ t: data.timestamp / 1e6 + this.offset, buffer });
    this.decoded += 1;
    data.close();
  }

  async _fetch(entry) {
    this.busy = true;
    this.fetched.add(entry.sequence);
    try {
      const { data } = await this.player.net.file(this.player.url(entry.files.s0.name), null);
      for (const unit of merge("OPUS", [readLayerFile(data)])) {
        const timestamp = Math.round((unit.pts * 1e6) / this.track.timescale);
        this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp, data: unit.data }));
      }
    } catch (e) {
      this.fetched.delete(entry.sequence);
      this.errors.push(String(e && e.message || e));
    } finally {
      this.busy = false;
    }
  }

  tick() {
    const player = this.player;
    if (player.ended) return this.close();
    const track = player.manifest.tracks.find((t) => t.name === this.track.name);
    if (track) this.track = track;
    const media = player.clock.now();
    if (!this.busy) {
      const next = this.track.segments.find((s) => {
        const start = s.pts / this.track.timescale + this.offset;
        return !this.fetched.has(s.sequence) && start + s.duration > media && start < media + AHEAD;
      });
      if (next) this._fetch(next);
    }
    const running = player.clock.playing;
    if (!running && this.context.state === "running" && this.sources.length) {
      this.context.suspend(); // the video waits: so does the sound
    } else if (running && this.context.state === "suspended" && this.sources.length) {
      this.context.resume();
    }
  }

  _schedule(media) {
    const now = this.context.currentTime;
    while (this.buffers.length && this.buffers[0].t < media + SCHEDULE_AHEAD) {
      const { t, buffer } = this.buffers.shift();
      let when = now + (t - media);
      if (this.nextWhen != null && Math.abs(when - this.nextWhen) < JOIN) when = this.nextWhen;
      if (when + buffer.duration <= now) {
        this.late += 1; // its time has passed
        continue;
      }
      const source = this.context.createBufferSource();
      source.buffer = buffer;
      source.connect(this.context.destination);
      const skip = Math.max(0, now - when);
      source.start(when + skip, skip);
      source.onended = () => {
        this.sources = this.sources.filter((s) => s !== source);
      };
      this.sources.push(source);
      this.nextWhen = when + buffer.duration;
      this.played += 1;
    }
  }

  describe() {
    return `${this.context.state}, ${this.played} buffers played, ${this.late} late`;
  }

  figures() {
    return {
      state: this.context.state, decoded: this.decoded, played: this.played, late: this.late,
      errors: this.errors, offset: this.offset,
    };
  }

  close() {
    clearInterval(this._timer);
    if (this.decoder.state !== "closed") this.decoder.close();
    this.context.close();
  }
}
