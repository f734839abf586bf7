// The recording's files as the player reads them (docs/recording.md, "File format" and
// "Playing a level"; sfu/recording/layerfile.py, merge.py and playback.py are the Python
// reference): a layer file (or a prefix of one) parsed into records, the files a level
// needs of a segment, and a picture's layer frames merged into one access unit (a VP9
// superframe, an AV1 temporal unit). No I/O here.

export const HEADER_SIZE = 24;
export const RECORD_HEADER_SIZE = 20;
export const FLAG_KEYFRAME = 0x01;
const MAGIC = "SLS1";
const CODECS = { VP90: "VP9", AV01: "AV1", VP80: "VP8", Opus: "OPUS" };
const ALL_TEMPORAL = 0xff;
// AV1's temporal delimiter OBU (type 2, has_size_field, size 0)
const TEMPORAL_DELIMITER = Uint8Array.of(0x12, 0x00);

const ascii = (bytes, at) => String.fromCharCode(...bytes.subarray(at, at + 4));

// A layer file, or a prefix of one (a range request: as many whole records as it holds):
// {codec, timescale, sequence, count, spatial, temporal (null: all), records, complete}.
// Each record: {picture, pts, spatial, temporal, flags, data (a view, not a copy)}.
export function readLayerFile(bytes) {
  if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
  if (bytes.length < HEADER_SIZE) throw new Error("layer file shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const codec = CODECS[ascii(bytes, 4)];
  const size = view.getUint16(22, true);
  if (ascii(bytes, 0) !== MAGIC || !codec || size < HEADER_SIZE) throw new Error("not a layer file");
  const count = view.getUint32(16, true);
  const temporal = bytes[21];
  const records = [];
  let pos = size;
  while (pos + RECORD_HEADER_SIZE <= bytes.length && records.length < count) {
    const length = view.getUint32(pos, true);
    const start = pos + RECORD_HEADER_SIZE;
    if (start + length > bytes.length) break; // a prefix ending inside this record
    records.push({
      picture: view.getUint32(pos + 4, true),
      pts: Number(view.getBigUint64(pos + 8, true)),
      spatial: bytes[pos + 16],
      temporal: bytes[pos + 17],
      flags: bytes[pos + 18],
      data: bytes.subarray(start, start + length),
    });
    pos = start + length;
  }
  return {
    codec,
    timescale: view.getUint32(8, true),
    sequence: view.getUint32(12, true),
    count,
    spatial: bytes[20],
    temporal: temporal === ALL_TEMPORAL ? null : temporal,
    records,
    complete: records.length === count,
  };
}

function concat(parts, extra = 0) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0) + extra);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// One picture's frames as a VP9 superframe (Annex B): the frames, then the index
// `marker, size_0 .. size_n-1, marker` (marker 0b110mmnnn: mm + 1 bytes per size, little
// endian; nnn + 1 frames). One frame: as it is.
export function vp9Superframe(frames) {
  if (frames.length === 1) return frames[0];
  if (frames.length < 1 || frames.length > 8) {
    throw new Error(`a superframe holds 1 to 8 frames, not ${frames.length}`);
  }
  const largest = Math.max(...frames.map((f) => f.length));
  const width = largest < 2 ** 8 ? 1 : largest < 2 ** 16 ? 2 : largest < 2 ** 24 ? 3 : 4;
  const marker = 0xc0 | ((width - 1) << 3) | (frames.length - 1);
  const indexSize = 2 + width * frames.length;
  const out = concat(frames, indexSize);
  let at = out.length - indexSize;
  out[at++] = marker;
  for (const f of frames) {
    for (let i = 0; i < width; i++) out[at++] = (f.length >>> (8 * i)) & 0xff;
  }
  out[at] = marker;
  return out;
}

// One picture's frames as an AV1 temporal unit: the temporal delimiter, then their OBUs.
export function av1TemporalUnit(frames) {
  return concat([TEMPORAL_DELIMITER, ...frames]);
}

// The access units of the pictures in `files` (layer files of one segment, or prefixes),
// in picture order, with the records of temporal layers up to `maxTemporal` (null: all):
// [{picture, pts, keyframe, spatial, temporal, data}].
export function merge(codec, files, maxTemporal = null) {
  codec = codec.toUpperCase();
  const byPicture = new Map();
  for (const file of files) {
    for (const record of file.records) {
      if (maxTemporal != null && record.temporal > maxTemporal) continue;
      if (!byPicture.has(record.picture)) byPicture.set(record.picture, []);
      byPicture.get(record.picture).push(record);
    }
  }
  const units = [];
  for (const picture of [...byPicture.keys()].sort((a, b) => a - b)) {
    const records = byPicture.get(picture).sort((a, b) => a.spatial - b.spatial);
    const frames = records.map((r) => r.data);
    let data;
    if (codec === "VP9") data = vp9Superframe(frames);
    else if (codec === "AV1") data = av1TemporalUnit(frames);
    else if (frames.length === 1) data = frames[0];
    else throw new Error(`${codec}: ${frames.length} frames for picture ${picture}`);
    const top = records[records.length - 1];
    units.push({
      picture, pts: top.pts, keyframe: Boolean(records[0].flags & FLAG_KEYFRAME),
      spatial: top.spatial, temporal: top.temporal, data,
    });
  }
  return units;
}

// The files to fetch for `level` of `segment`, lowest layer first: [{layer, name, length}]
// (length: bytes to read, null: the whole file). With `sparse`, the level's sparse_layers
// are read up to their key_bytes in a segment whose files of the level's top spatial layer
// reference them in the first picture only and dropped no frame (playback.py level_files).
export function levelFiles(track, segment, level, sparse = true) {
  const spatial = new Map(track.layers.map((l) => [l.id, l.spatial]));
  const top = Object.entries(segment.files)
    .filter(([layer]) => level.layers.includes(layer) && spatial.get(layer) === level.spatial)
    .map(([, f]) => f);
  const sparseLayers = level.sparse_layers || [];
  const cut = sparse && sparseLayers.length > 0 && top.length > 0
    && top.every((f) => (f.inter_layer || "none") !== "all" && !f.dropped);
  const out = [];
  for (const layer of level.layers) {
    const entry = segment.files[layer];
    if (!entry) continue; // no frame of this layer in the segment
    const length = cut && sparseLayers.includes(layer) ? entry.key_bytes : null;
    out.push({ layer, name: entry.name, length });
  }
  return out;
}
