// Dynacast, the publisher's side (docs/signaling.md#dynacast): the server says how many
// spatial layers of one of our videos someone needs (`publish_layers`), and we encode only
// those: for a single SVC encoding such as L3T3_KEY, n of its 3 layers is L{n}T3_KEY with
// scaleResolutionDownBy 2^(3-n) (the same bottom layers at the same sizes, the top ones
// gone; Chromium reconfigures its encoder with a keyframe), all of them the original
// encoding, none the encoding inactive. One setParameters at a time per video; the latest
// request is applied after the one in progress.
//
// State for the page and the tests: `publishLayers` (track id -> { requested, applied,
// full, mode, error }), `dynacast` (track id -> the spatial layer count applied last);
// event `publish_layers` { trackId, spatialLayers, full, mode, source } once applied.

import { PeerClient } from "./peers.js";

// "L3T3_KEY" -> { spatial: 3, temporal: 3, suffix: "_KEY" }; null for modes that are not
// one encoding of L spatial layers (S2T3, ...)
export function parseMode(mode) {
  const m = /^L([1-3])T([1-3])(.*)$/.exec(mode || "");
  return m ? { spatial: Number(m[1]), temporal: Number(m[2]), suffix: m[3] } : null;
}

// The spatial layers Chromium encodes of an L-mode at a capture size: its bottom layer is
// no smaller than 240x135 (or 135x240), so L3T3_KEY at 640x360 is L2T3_KEY (libwebrtc's
// svc_config.cc; AV1 the same)
export function encodedLayers(mode, width, height) {
  const parsed = parseMode(mode);
  if (!parsed) return 1;
  if (!width || !height) return parsed.spatial;
  const [long, short] = width >= height ? [240, 135] : [135, 240];
  const fit = (size, min) => Math.floor(1 + Math.max(0, Math.log2(size / min)));
  return Math.max(1, Math.min(parsed.spatial, fit(width, long), fit(height, short)));
}

// What encodings[0] becomes for n spatial layers of `full` encoded ones (`original`: the
// encoding as set up: { scalabilityMode, scaleResolutionDownBy })
export function layersEncoding(original, full, n) {
  const mode = original.scalabilityMode;
  const base = original.scaleResolutionDownBy || 1;
  if (n <= 0) return { active: false };
  const parsed = parseMode(mode);
  if (!parsed || n >= full) return { active: true, scalabilityMode: mode, scaleResolutionDownBy: base };
  const scalabilityMode = n === 1 ? `L1T${parsed.temporal}` : `L${n}T${parsed.temporal}${parsed.suffix}`;
  return { active: true, scalabilityMode, scaleResolutionDownBy: base * 2 ** (full - n) };
}

// the spatial layer count of the mode the encoder reports now (outbound-rtp), or null
async function reportedLayers(sender) {
  let mode = null;
  try {
    (await sender.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && s.scalabilityMode) mode = s.scalabilityMode;
    });
  } catch (e) {
    return null;
  }
  const parsed = parseMode(mode);
  return parsed ? parsed.spatial : null;
}

export class DynacastClient extends PeerClient {
  constructor(options) {
    super(options);
    this.publishLayers = {};
    this.dynacast = {};
    this._dynacast = new Map(); // track id -> { sender, original, full, requested, applied, ... }
  }

  _onEvent(msg) {
    if (msg.type === "publish_layers") this._onPublishLayers(msg.track_id, msg.spatial_layers);
    else super._onEvent(msg);
  }

  _onPublishLayers(trackId, n) {
    const prefix = `${this.participantId}:`;
    if (!this.publishPc || !trackId.startsWith(prefix)) return;
    const mid = trackId.slice(prefix.length);
    const transceiver = this.publishPc.getTransceivers().find((t) => t.mid === mid);
    if (!transceiver || !this._sources.has(transceiver)) return; // gone meanwhile
    let entry = this._dynacast.get(trackId);
    if (!entry || entry.sender !== transceiver.sender) {
      const encoding = transceiver.sender.getParameters().encodings[0] || {};
      const original = {
        scalabilityMode: encoding.scalabilityMode || this.publishOptions.mode,
        scaleResolutionDownBy: encoding.scaleResolutionDownBy || 1,
      };
      entry = {
        trackId, sender: transceiver.sender, original, source: this._sources.get(transceiver),
        full: null, requested: null, applied: null, changedAt: 0, running: false,
      };
      this._dynacast.set(trackId, entry);
    }
    entry.requested = n;
    if (!entry.running) this._applyLayers(entry);
  }

  // The spatial layers the original encoding makes at the capture size: what the encoder
  // reports while it runs the original (a while after the last change), else worked out
  // from the track's size.
  async _fullLayers(entry) {
    const original = entry.applied === null || entry.applied >= (entry.full || 3);
    if (original && performance.now() - entry.changedAt > 2000) {
      const reported = await reportedLayers(entry.sender);
      if (reported) entry.full = reported;
    }
    if (!entry.full) {
      const track = entry.sender.track;
      const { width, height } = track ? track.getSettings() : {};
      const scaled = (size) => size && size / entry.original.scaleResolutionDownBy;
      entry.full = encodedLayers(entry.original.scalabilityMode, scaled(width), scaled(height));
    }
    return entry.full;
  }

  async _applyLayers(entry) {
    entry.running = true;
    try {
      while (entry.requested !== entry.applied && this._dynacast.get(entry.trackId) === entry) {
        const n = entry.requested;
        const full = await this._fullLayers(entry);
        const params = entry.sender.getParameters();
        if (!params.encodings || !params.encodings.length) break;
        Object.assign(params.encodings[0], layersEncoding(entry.original, full, n));
        try {
          await entry.sender.setParameters(params);
          entry.error = null;
        } catch (e) {
          entry.error = String(e); // not retried: the next publish_layers tries again
          console.warn(`dynacast: ${entry.trackId}: ${n} spatial layers: ${e}`);
          break;
        } finally {
          entry.changedAt = performance.now();
        }
        entry.applied = n;
        this.dynacast[entry.trackId] = n;
        const mode = params.encodings[0].scalabilityMode;
        this.publishLayers[entry.trackId] = {
          requested: entry.requested, applied: n, full, mode, source: entry.source,
        };
        this._emit("publish_layers", {
          trackId: entry.trackId, spatialLayers: n, full, mode, source: entry.source,
        });
      }
    } finally {
      entry.running = false;
    }
  }

  _closePeers() {
    super._closePeers();
    this._forgetLayers();
  }

  // the dynacast state of a video that is gone (a stopped screen share, or all on leave)
  _forgetLayers(trackId = null) {
    for (const id of trackId ? [trackId] : [...this._dynacast.keys()]) {
      this._dynacast.delete(id);
      delete this.publishLayers[id];
      delete this.dynacast[id];
    }
  }
}
