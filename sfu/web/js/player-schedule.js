// The fetch scheduler (sans-IO: told the time, the playhead and the rate; says what to fetch
// next, what to give up, and when a segment goes to the decoder). Progressive, like a
// progressive JPEG: a segment's base layer first (what plays whatever happens), its
// enhancement layers after, when the measured rate says they will arrive before the segment
// is due; never the enhancement of a segment before the base of the one that plays next.
//
//   1. the base of the next segment, when none ahead of the playhead has its base;
//   2. the next layer of the earliest segment not yet decoded that is below the level aimed
//      at, if all that level's missing bytes arrive, at the measured rate with FETCH_MARGIN,
//      before the segment is due (DECODE_LEAD before its start);
//   3. the base of the next segment while less than BUFFER_TARGET segments are buffered;
//   4. nothing (wait).
// A segment is decoded at the best level whose files are all here when it is due; a fetch of
// an enhancement that would not arrive by then is given up (its segment plays lower), so
// playback never waits for anything but a base layer.

import { levelFiles, merge, readLayerFile } from "./player-format.js";

// segments buffered ahead of the playhead, in the track's target durations
export const BUFFER_TARGET = 2;
// a segment goes to the decoder this long (s) before its start
export const DECODE_LEAD = 0.5;
// an enhancement is fetched only if it would arrive with this factor of time to spare
export const FETCH_MARGIN = 1.3;
// a live recording starts this many segments before its newest
export const LIVE_START = 2;
// the rate of a transfer in progress (to give it up) is measured over this many seconds
const PROGRESS_WINDOW = 1.0;

export class Schedule {
  // track: the manifest's video track; candidates: its levels to choose from, cheapest first
  // (player-abr.js candidateLevels); live: the manifest has no endlist yet
  constructor(track, candidates, { live = false, startTime = 0 } = {}) {
    this.track = track;
    this.candidates = candidates;
    this.live = live;
    this.startTime = startTime;
    // sequence -> {entry, have: Map(layer -> {data, length}), handed, level}
    this.states = new Map();
    this.order = []; // sequences listed, in order
    this.next = null; // the sequence to decode next (null: none listed yet)
    this.handedEnd = null; // media time (s) where the decoded segments end
    this.update(track);
  }

  // where playback starts: a live recording LIVE_START segments before its newest, else at
  // the first segment (or the one holding startTime)
  _first(listed) {
    if (this.live) return listed[Math.max(0, listed.length - LIVE_START)];
    return listed.filter((s) => this.start(s) <= this.startTime).pop() || listed[0];
  }

  start(entry) {
    return entry.pts / this.track.timescale;
  }

  end(entry) {
    return this.start(entry) + entry.duration;
  }

  // a newer manifest: new segments added, those out of the live window forgotten (when
  // playback fell behind the window, it goes on at the first one listed)
  update(track) {
    this.track = track;
    const listed = new Set();
    for (const entry of track.segments) {
      listed.add(entry.sequence);
      if (this.states.has(entry.sequence) || (this.handedEnd != null && entry.sequence < this.next)) continue;
      this.states.set(entry.sequence, { entry, have: new Map(), handed: false, level: null });
    }
    for (const sequence of [...this.states.keys()]) {
      if (!listed.has(sequence) && sequence < track.media_sequence) this.states.delete(sequence);
    }
    this.order = [...this.states.keys()].sort((a, b) => a - b);
    if (this.next == null && track.segments.length) this.next = this._first(track.segments).sequence;
    if (this.next != null && this.order.length && this.next < this.order[0]) this.next = this.order[0];
  }

  // the segments not yet decoded, from the next one
  ahead() {
    if (this.next == null) return [];
    return this.order.filter((s) => s >= this.next).map((s) => this.states.get(s));
  }

  hasBase(state) {
    const base = levelFiles(this.track, state.entry, this.candidates[0])[0];
    return base != null && this._satisfied(state, base);
  }

  _satisfied(state, need) {
    const got = state.have.get(need.layer);
    return got != null && (got.length == null || (need.length != null && got.length >= need.length));
  }

  _needs(state, index) {
    return levelFiles(this.track, state.entry, this.candidates[index]);
  }

  _bytes(state, needs) {
    return needs.reduce((sum, n) => sum + (n.length ?? state.entry.files[n.layer].bytes), 0);
  }

  // the best candidate index whose files of the segment are all here (-1: not even the base)
  readyLevel(state) {
    for (let i = this.candidates.length - 1; i >= 0; i--) {
      if (this._needs(state, i).every((n) => this._satisfied(state, n))) return i;
    }
    return -1;
  }

  // media time (s) by which a segment's files must be here
  deadline(state) {
    return this.handedEnd == null ? -Infinity : this.start(state.entry) - DECODE_LEAD;
  }

  // media time (s) up to which playback can go without another fetch
  bufferedEnd() {
    let end = this.handedEnd;
    for (const state of this.ahead()) {
      if (!this.hasBase(state)) break;
      end = this.end(state.entry);
    }
    return end;
  }

  // What to fetch now: {sequence, layer, name, length, base, deadline} or null.
  // media: the playhead (s); rate: bit/s (null: unknown); target: the candidate index aimed at
  plan(media, rate, target) {
    const ahead = this.ahead();
    const withBase = ahead.filter((s) => this.hasBase(s));
    const nextBase = ahead.find((s) => !this.hasBase(s));
    const request = (state, need, base) =>
      ({ ...need, sequence: state.entry.sequence, base, deadline: this.deadline(state) });
    const baseRequest = (state) => request(state, this._needs(state, 0)[0], true);
    // 1. the base of what plays next
    if (nextBase && !withBase.length) return baseRequest(nextBase);
    // 2. upgrades, earliest first, when they would arrive in time
    if (rate > 0) {
      for (const state of withBase) {
        if (this.readyLevel(state) >= target) continue;
        const missing = this._needs(state, target).filter((n) => !this._satisfied(state, n));
        const bytes = this._bytes(state, missing);
        const left = this.deadline(state) - media;
        if ((FETCH_MARGIN * 8 * bytes) / rate < left) {
          return request(state, missing[0], false);
        }
      }
    }
    // 3. the buffer
    const buffered = (this.bufferedEnd() ?? media) - media;
    if (nextBase && buffered < BUFFER_TARGET * this.track.target_duration) return baseRequest(nextBase);
    return null;
  }

  // Whether to give up a fetch in progress: an enhancement whose segment is due (or went to
  // the decoder), or that would not arrive by then at its own recent rate. progress: the
  // transfer's [[seconds, bytes received], ...] from its start ([start, 0]); now: seconds;
  // total: its bytes.
  giveUp(request, media, now, progress, total) {
    if (request.base) return false;
    const state = this.states.get(request.sequence);
    if (!state || state.handed) return true;
    const left = request.deadline - media;
    if (left <= 0) return true;
    const recent = this.recent(progress, now);
    if (!recent) return false;
    const [bytes, seconds] = recent;
    const received = progress[progress.length - 1][1];
    if (bytes <= 0) return now - progress[0][0] >= PROGRESS_WINDOW; // nothing for a while
    return ((total - received) * seconds) / bytes > left;
  }

  // A transfer's recent progress, [bytes, seconds] over the last PROGRESS_WINDOW (null: too
  // young to say): its rate now, which the whole transfer's average hides after a drop.
  recent(progress, now) {
    if (!progress.length || now - progress[0][0] < PROGRESS_WINDOW / 2) return null;
    const last = progress[progress.length - 1];
    const from = progress.find(([t]) => t >= now - PROGRESS_WINDOW) || last;
    return [last[1] - from[1], Math.max(now - from[0], PROGRESS_WINDOW / 2)];
  }

  // a fetch's bytes (a whole file, or its first `length` bytes)
  received(request, data) {
    const state = this.states.get(request.sequence);
    if (!state || state.handed) return;
    const got = state.have.get(request.layer);
    if (got && got.length == null) return;
    state.have.set(request.layer, { data, length: request.length });
  }

  // the next segment, if it is due at `media` (the playhead) and its base is here: what the
  // decoder takes next, or null
  due(media) {
    const state = this.next == null ? null : this.states.get(this.next);
    if (!state || !this.hasBase(state)) return null;
    if (this.handedEnd != null && media < this.deadline(state)) return null;
    return state;
  }

  // Hand `state` to the decoder at its best level here: {entry, level, index, units, bytes}.
  hand(state) {
    const index = this.readyLevel(state);
    const level = this.candidates[index];
    const files = this._needs(state, index).map((n) => {
      const { data } = state.have.get(n.layer);
      return readLayerFile(n.length == null ? data : data.subarray(0, n.length));
    });
    const units = merge(this.track.codec, files, level.temporal);
    const bytes = this._bytes(state, this._needs(state, index));
    state.handed = true;
    state.level = index;
    state.have.clear(); // the bytes are in the access units now
    this.handedEnd = this.end(state.entry);
    const at = this.order.indexOf(state.entry.sequence);
    this.next = at + 1 < this.order.length ? this.order[at + 1] : state.entry.sequence + 1;
    for (const old of this.order.slice(0, Math.max(0, at - 1))) this.states.delete(old);
    this.order = [...this.states.keys()].sort((a, b) => a - b);
    return { entry: state.entry, level, index, units, bytes };
  }

  // every segment listed was decoded, and no more will come
  ended(endlist) {
    return endlist && this.handedEnd != null && !this.states.has(this.next);
  }
}
