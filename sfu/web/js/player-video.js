// Decoding and painting: a segment's access units go into a WebCodecs VideoDecoder (a few
// frames ahead of the playhead, no more), each frame is painted on the canvas when the clock
// reaches its timestamp, late ones are dropped. The canvas is the size of the level being
// played (CSS scales it to fit); a picture decoded smaller (its top layer was not recorded)
// is scaled up to it.

// frames decoded ahead of the playhead at most (each one is a whole picture in memory)
export const DECODE_AHEAD = 8;
// paints and switches kept for the page's figures
const MAX_LOG = 20000;

export class VideoOut {
  // canvas: the <canvas>; codec: the manifest's codec_string; timescale: ticks per second
  constructor(canvas, codec, timescale) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.codec = codec;
    this.timescale = timescale;
    this.pending = []; // [{chunk, tag}] not yet given to the decoder
    this.frames = []; // decoded, not painted, by timestamp
    this.tags = new Map(); // timestamp (µs) -> the tag of its segment
    this.decoded = 0;
    this.dropped = 0; // decoded, never painted: late
    this.painted = 0;
    this.layerFrames = 0; // frames output for a picture besides its last (a decoder showing every layer)
    this.errors = [];
    this.paints = []; // {t, ts, width, height, level, sequence}
    this.switches = []; // {t, media, from, to}
    this.last = null; // the last painted frame's tag and size
    this.waitKey = true;
    this.decoder = null;
    this._open();
  }

  _open() {
    this.decoder = new VideoDecoder({
      output: (frame) => this._output(frame),
      error: (e) => this._error(e),
    });
    this.decoder.addEventListener("dequeue", () => this.feed());
    this.decoder.configure({ codec: this.codec, optimizeForLatency: true });
    this.waitKey = true;
    this.flushing = null; // finish(): the decoder's flush
    this.flushed = false;
  }

  _error(e) {
    this.errors.push({ t: performance.now() / 1000, message: String(e && e.message || e) });
    for (const f of this.frames) f.close();
    this.frames = [];
    try {
      this.decoder.close();
    } catch (_) { /* closed already */ }
    this._open(); // a new decoder, from the next keyframe
  }

  _output(frame) {
    this.decoded += 1;
    const last = this.frames[this.frames.length - 1];
    if (last && last.timestamp === frame.timestamp) {
      // one picture, several frames out (every layer shown): keep its last, the top one
      last.close();
      this.frames.pop();
      this.decoded -= 1;
      this.layerFrames += 1;
    }
    this.frames.push(frame);
  }

  // A segment's access units (player-format.js merge). tag: {sequence, index, level, width,
  // height} said of its frames.
  push(units, tag) {
    for (const unit of units) {
      const timestamp = Math.round((unit.pts * 1e6) / this.timescale);
      this.tags.set(timestamp, tag);
      this.pending.push({
        tag,
        timestamp,
        chunk: new EncodedVideoChunk({ type: unit.keyframe ? "key" : "delta", timestamp, data: unit.data }),
      });
    }
    this.feed();
  }

  feed() {
    while (this.pending.length && this.decoder.state === "configured"
      && this.decoder.decodeQueueSize + this.frames.length < DECODE_AHEAD) {
      const { chunk } = this.pending.shift();
      if (this.waitKey && chunk.type !== "key") continue; // after an error: to the next keyframe
      this.waitKey = false;
      try {
        this.decoder.decode(chunk);
      } catch (e) {
        this._error(e);
      }
    }
  }

  // No more units will come: the decoder gives out what it holds (drained() then).
  finish() {
    if (this.flushing || this.pending.length) return;
    this.flushing = this.decoder.flush().catch(() => {}).then(() => {
      this.flushed = true;
    });
  }

  // every unit given was decoded, and every frame painted or dropped
  drained() {
    return Boolean(this.flushed) && !this.pending.length && !this.frames.length;
  }

  // a decoded frame is waiting to be painted
  ready() {
    return this.frames.length > 0;
  }

  // the timestamp (s) of the first frame waiting, or of the first unit not decoded
  firstTime() {
    if (this.frames.length) return this.frames[0].timestamp / 1e6;
    return this.pending.length ? this.pending[0].timestamp / 1e6 : null;
  }

  // Paint the latest frame due at `media` (s); the earlier ones waiting are dropped.
  paint(media) {
    const now = media * 1e6;
    while (this.frames.length > 1 && this.frames[1].timestamp <= now + 500) {
      this._forget(this.frames.shift());
      this.dropped += 1;
    }
    const frame = this.frames[0];
    if (!frame || frame.timestamp > now + 500) {
      this.feed();
      return null;
    }
    this.frames.shift();
    const tag = this.tags.get(frame.timestamp) || {};
    const width = tag.width || frame.displayWidth;
    const height = tag.height || frame.displayHeight;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(frame, 0, 0, width, height);
    const t = performance.now() / 1000;
    const painted = {
      t, ts: frame.timestamp / 1e6, width: frame.displayWidth, height: frame.displayHeight,
      level: tag.index, sequence: tag.sequence,
    };
    if (this.last && this.last.level !== tag.index) {
      this.switches.push({ t, media, from: this.last.level, to: tag.index, sequence: tag.sequence });
    }
    this.last = painted;
    this.painted += 1;
    if (this.paints.length < MAX_LOG) this.paints.push(painted);
    this._forget(frame);
    this.feed();
    return painted;
  }

  _forget(frame) {
    this.tags.delete(frame.timestamp);
    frame.close();
  }

  close() {
    for (const f of this.frames) f.close();
    this.frames = [];
    if (this.decoder.state !== "closed") this.decoder.close();
  }
}
