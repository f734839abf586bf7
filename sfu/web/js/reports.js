// What the viewer tells the server and measures: the size each remote video is rendered at
// (`window`), its painted frames (time to first frame, switch-paint latency), the
// `receiver_report` every reportIntervalMs (docs/signaling.md#receiver-reports), and the
// getStats() figures the page shows (rtc-stats.js).
//
// Expects of the layer above: `this.tracks` (track id -> info, SfuClient).

import { PublishingClient } from "./publishing.js";
import { inboundStats, outboundStats, sendingFigures, videoFigures } from "./rtc-stats.js";

export class ReportingClient extends PublishingClient {
  constructor(options) {
    super(options);
    this._observers = new Map(); // element -> ResizeObserver
    this._windows = new Map(); // track id -> "WxH" last sent
    // the viewer's own figures (receiver_report, every reportIntervalMs): they let the server
    // lower the layers of a video this machine cannot keep up with, and show operators what
    // viewers see
    this.reportIntervalMs = 1500;
    this.reportsSent = 0;
    this._reportTimer = null;
    this._joinedAt = 0;
    this._elements = new Map(); // track id -> the video element it is rendered in
    this.firstFrame = new Map(); // track id -> seconds from join to its first painted frame
    this._firstFrameSent = new Set();
    this._switching = new Map(); // track id -> { at, width, height } of a level_changed
    this._switchPaints = new Map(); // track id -> [seconds] not reported yet
    this.switchPaints = []; // every switch-paint latency measured: { trackId, seconds }
    this._bytes = new Map(); // "in:" track id or "out" -> { bytes, at }: for bitrates
  }

  _resetReports() {
    this._windows.clear();
    this._joinedAt = performance.now();
    this.firstFrame.clear();
    this._firstFrameSent.clear();
    this._bytes.clear();
  }

  // Report the size a remote video is rendered at (device pixels), now and on every resize;
  // a hidden or zero-size element reports 0x0, which pauses that video.
  watchVideo(element, trackId) {
    const report = () => {
      if (!this.tracks.has(trackId)) {
        // the track is gone (its tile is being removed): nothing to tell the server
        this._unwatch(element, trackId);
        return;
      }
      const dpr = window.devicePixelRatio || 1;
      const visible = element.isConnected && getComputedStyle(element).display !== "none";
      const width = visible ? Math.round(element.clientWidth * dpr) : 0;
      const height = visible ? Math.round(element.clientHeight * dpr) : 0;
      this.sendWindow(trackId, width, height);
    };
    const old = this._observers.get(element);
    if (old) old.disconnect();
    const observer = new ResizeObserver(report);
    observer.observe(element);
    this._observers.set(element, observer);
    report();
    this._elements.set(trackId, element);
    this._watchFrames(element, trackId);
    this._startReports();
  }

  sendWindow(trackId, width, height) {
    if (!this.tracks.has(trackId)) return; // gone: the server would answer unknown_track
    const key = `${width}x${height}`;
    if (this._windows.get(trackId) === key || !this.connected) return;
    this._windows.set(trackId, key);
    this._send({ type: "window", track_id: trackId, width, height });
  }

  _unwatch(element, trackId) {
    const observer = this._observers.get(element);
    if (observer) observer.disconnect();
    this._observers.delete(element);
    if (this._elements.get(trackId) === element) this._elements.delete(trackId);
    this._windows.delete(trackId);
  }

  // A level_changed to another size: timed until a frame of that size is painted.
  _noteLevel(before, level) {
    if (level.paused) return;
    if (!before || before.width !== level.width || before.height !== level.height) {
      this._switching.set(level.track_id, { at: performance.now(), width: level.width, height: level.height });
    }
  }

  // Painted frames of a remote video: the first one (time to first frame), and the first
  // of a new size after a level_changed (switch-paint latency).
  _watchFrames(element, trackId) {
    if (!element.requestVideoFrameCallback) return;
    const onFrame = (now, meta) => {
      if (this._elements.get(trackId) !== element) return; // watched elsewhere now, or gone
      if (!this.firstFrame.has(trackId)) this.firstFrame.set(trackId, (now - this._joinedAt) / 1000);
      const switching = this._switching.get(trackId);
      if (switching && meta.width === switching.width && meta.height === switching.height) {
        this._switching.delete(trackId);
        const seconds = Math.max(0, (now - switching.at) / 1000);
        const pending = this._switchPaints.get(trackId) || [];
        if (pending.length < 16) pending.push(seconds);
        this._switchPaints.set(trackId, pending);
        if (this.switchPaints.length < 1000) this.switchPaints.push({ trackId, seconds });
      } else if (switching && now - switching.at > 10000) {
        this._switching.delete(trackId); // never painted at that size: not a latency
      }
      element.requestVideoFrameCallback(onFrame);
    };
    element.requestVideoFrameCallback(onFrame);
  }

  _startReports() {
    if (this._reportTimer) return;
    this._reportTimer = setInterval(() => {
      this.sendReceiverReport().catch(() => {});
    }, this.reportIntervalMs);
  }

  _stopReports() {
    if (this._reportTimer) clearInterval(this._reportTimer);
    this._reportTimer = null;
    this._elements.clear();
    for (const observer of this._observers.values()) observer.disconnect();
    this._observers.clear();
  }

  // What this page measures of each video it receives (getStats() inbound-rtp and the
  // painted frames), sent as one receiver_report.
  async sendReceiverReport() {
    if (!this.subscribePc || !this.connected) return null;
    const stats = await this.subscribePc.getStats();
    const dpr = window.devicePixelRatio || 1;
    const tracks = [];
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video" || tracks.length >= 32) return;
      const trackId = s.trackIdentifier;
      if (!this.tracks.has(trackId) || s.framesDecoded == null) return;
      const entry = {
        track_id: trackId,
        frames_decoded: s.framesDecoded,
        frames_dropped: s.framesDropped || 0,
      };
      const optional = {
        frames_per_second: s.framesPerSecond,
        frame_width: s.frameWidth,
        frame_height: s.frameHeight,
        freeze_count: s.freezeCount,
        total_freezes_duration: s.totalFreezesDuration,
        jitter_buffer_delay: s.jitterBufferDelay,
        jitter_buffer_emitted_count: s.jitterBufferEmittedCount,
      };
      for (const [key, value] of Object.entries(optional)) if (value != null) entry[key] = value;
      const element = this._elements.get(trackId);
      if (element && element.isConnected) {
        entry.element_width = Math.round(element.clientWidth * dpr);
        entry.element_height = Math.round(element.clientHeight * dpr);
      }
      if (this.firstFrame.has(trackId) && !this._firstFrameSent.has(trackId)) {
        entry.first_frame = Math.min(3600, this.firstFrame.get(trackId));
        this._firstFrameSent.add(trackId);
      }
      const paints = this._switchPaints.get(trackId);
      if (paints && paints.length) {
        entry.switch_paints = paints.map((v) => Math.min(60, v));
        this._switchPaints.delete(trackId);
      }
      tracks.push(entry);
    });
    if (!tracks.length) return null;
    const message = { type: "receiver_report", tracks };
    this._send(message);
    this.reportsSent += 1;
    return message;
  }

  // getStats() figures (rtc-stats.js): see there
  videoFigures() {
    return videoFigures(this.subscribePc, this.tracks, this._bytes);
  }

  // what we send of our camera, or of our shared screen (`{ screen: true }`)
  sendingFigures({ screen = false } = {}) {
    const transceiver = screen ? this._screen : this._ownTransceiver("video");
    if (!transceiver || transceiver.mid == null) return Promise.resolve(null);
    return sendingFigures(this.publishPc, this._bytes, transceiver.mid);
  }

  inboundStats() {
    return inboundStats(this.subscribePc);
  }

  outboundStats() {
    return outboundStats(this.publishPc);
  }
}
