// The player's rate logic (sans-IO: given numbers, returns numbers): the download rate
// measured from the transfers, and the level to aim at from it, with a safety margin and
// hysteresis. The fetch scheduler (player-schedule.js) acts on the level chosen here.

// a level is aimed at when its bitrate is at most this share of the measured rate ...
export const UP_SAFETY = 0.7;
// ... and kept while its bitrate is at most this share (the hysteresis band: 0.7-0.9)
export const DOWN_SAFETY = 0.9;
// a transfer counts as a sample when it moved this many bytes or lasted this long: a small
// file's time is mostly the request's round trip, not the rate
export const MIN_SAMPLE_BYTES = 16 * 1024;
export const MIN_SAMPLE_SECONDS = 0.25;
// the moving average's weight of a new sample
export const SMOOTHING = 0.3;

// The download rate (bit/s): a moving average of the transfers' rates, and the last one; the
// estimate is the lower of the two, so one slow transfer lowers it at once, while rising
// takes a few fast ones (not a stall for a lucky burst).
export class Throughput {
  constructor() {
    this.average = null;
    this.last = null;
    this.samples = 0;
  }

  // a transfer (whole or cut short) of `bytes` in `seconds`; false if too small to count
  add(bytes, seconds) {
    if (!(seconds > 0) || (bytes < MIN_SAMPLE_BYTES && seconds < MIN_SAMPLE_SECONDS)) return false;
    const rate = (8 * bytes) / seconds;
    this.last = rate;
    this.average = this.average == null ? rate : SMOOTHING * rate + (1 - SMOOTHING) * this.average;
    this.samples += 1;
    return true;
  }

  // bit/s, null before the first sample
  estimate() {
    return this.average == null ? null : Math.min(this.average, this.last);
  }
}

// What a level costs to fetch (bit/s): the sparse read where the recording allows it.
export const levelBitrate = (level) => level.sparse_bitrate ?? level.bitrate;

// The levels worth choosing between, cheapest first: of the levels that fetch the same
// files (VP9 and AV1 keep every temporal layer of a spatial layer in one file), the one with
// the most frame rate, since the bytes are the same.
export function candidateLevels(track) {
  const bySet = new Map();
  for (const level of track.levels) {
    const key = level.layers.join(",");
    const best = bySet.get(key);
    if (!best || level.temporal > best.temporal) bySet.set(key, level);
  }
  return [...bySet.values()].sort(
    (a, b) => levelBitrate(a) - levelBitrate(b) || a.spatial - b.spatial || a.temporal - b.temporal,
  );
}

// The index in `candidates` to aim at, given the rate (bit/s, null: unknown) and the index
// aimed at so far: the highest level within UP_SAFETY of the rate; the current one is kept
// while within DOWN_SAFETY (the band between keeps it from flapping). Unknown: the base.
export function chooseLevel(candidates, current, rate) {
  if (rate == null || !(rate > 0)) return 0;
  let up = 0;
  for (let i = 0; i < candidates.length; i++) {
    if (levelBitrate(candidates[i]) <= rate * UP_SAFETY) up = i;
  }
  if (up >= current) return up;
  const stay = current < candidates.length && levelBitrate(candidates[current]) <= rate * DOWN_SAFETY;
  return stay ? current : up;
}

export const levelName = (level) =>
  level ? `S${level.spatial}T${level.temporal}${level.width ? ` ${level.width}x${level.height}` : ""}` : "-";
