// The SFU's browser client: an ES module used by the demo page and by the tests.
//
//   const client = new SfuClient({ url: "ws://127.0.0.1:8080/ws" });
//   await client.join({ room: "demo", name: "alice", codec: "VP9", scalabilityMode: "L3T3_KEY",
//                      token });  // token: from `sfu token create`, where the room requires one
//   // a refused request rejects with an SfuError: err.code ("unauthorized", ...), err.reason
//   client.addEventListener("participant", (e) => ...);   // tiles come and go
//   client.addEventListener("bye", (e) => ...);   // out of the room: e.detail.code, .reason
//   await client.leave();
//
// Two peer connections: `publishPc` (we offer, sendonly) and `subscribePc` (the server
// offers one sendonly m-line per remote track; we answer).

export const CODECS = {
  VP9: { mimeType: "video/VP9", scalabilityMode: "L3T3_KEY", fmtp: "profile-id=0" },
  VP8: { mimeType: "video/VP8", scalabilityMode: "L1T3" },
  AV1: { mimeType: "video/AV1", scalabilityMode: "L3T3" },
  H264: { mimeType: "video/H264", scalabilityMode: "L1T1" },
};

function waitForIceGathering(pc, timeoutMs = 5000) {
  // Complete, and the description carries candidates: after an ICE restart the state may
  // still read "complete" (the previous gathering) for a moment after setLocalDescription.
  const ready = () => pc.iceGatheringState === "complete" &&
    pc.localDescription && pc.localDescription.sdp.includes("a=candidate:");
  if (ready()) return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearInterval(poll);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (ready()) finish(); };
    const poll = setInterval(check, 50);
    const timer = setTimeout(finish, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function codecPreferences(mimeType, fmtp) {
  const caps = RTCRtpSender.getCapabilities("video");
  if (!caps) return null;
  const wanted = caps.codecs.filter(
    (c) => c.mimeType.toLowerCase() === mimeType.toLowerCase() &&
      (!fmtp || (c.sdpFmtpLine || "").includes(fmtp)),
  );
  if (!wanted.length) return null;
  const rtx = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/rtx");
  return [wanted[0], ...rtx];
}

// The server's error reply to a request: `code` (see docs/signaling.md) and `reason`.
export class SfuError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.name = "SfuError";
    this.code = code;
    this.reason = reason;
  }
}

export class SfuClient extends EventTarget {
  constructor({ url } = {}) {
    super();
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${proto}//${location.host}/ws`;
    this.ws = null;
    this.participantId = null;
    this.participants = new Map(); // participant id -> { name, stream }
    this.tracks = new Map(); // track id -> info
    this.publishPc = null;
    this.subscribePc = null;
    // STUN/TURN servers for both peer connections: the server's `ice.servers`, from `joined`
    this.iceServers = [];
    this.localStream = null;
    this.errors = [];
    this.bye = null; // the last `bye`: { code, reason }
    this.leaving = false;
    this._pending = new Map();
    this._nextId = 1;
    this._subscribeChain = Promise.resolve();
    this.levels = new Map(); // track id -> last level_changed
    this._observers = new Map(); // element -> ResizeObserver
    this._windows = new Map(); // track id -> "WxH" last sent
    this._publishChain = Promise.resolve();
    this._publishRequest = null; // scalability_mode and sources of our publish offers
    this._restarting = { publish: false, subscribe: false };
    // ICE restarts done, per connection (automatic ones included)
    this.iceRestarts = { publish: 0, subscribe: 0 };
    // restart ICE by itself when a connection goes "failed", stays "disconnected", or has
    // received nothing (media, RTCP, ICE) for silenceRestartMs: sooner than the server's
    // peer timeout (5 s by default), which an ICE restart in progress holds off
    this.autoRestartIce = true;
    this.disconnectedRestartMs = 2000;
    this.silenceRestartMs = 3000;
    this._silenceTimers = [];
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
  }

  _request(message) {
    const id = this._nextId++;
    message.id = id;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify(message));
    });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async _connect() {
    this.ws = new WebSocket(this.url);
    await new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
    });
    this.ws.onmessage = (event) => this._onMessage(JSON.parse(event.data));
    this.ws.onclose = (event) => {
      for (const { reject } of this._pending.values()) reject(new Error("connection closed"));
      this._pending.clear();
      this._emit("closed", { code: event.code, reason: event.reason });
    };
  }

  _onMessage(msg) {
    if (msg.id != null && this._pending.has(msg.id)) {
      const { resolve, reject } = this._pending.get(msg.id);
      this._pending.delete(msg.id);
      if (msg.type === "error") reject(new SfuError(msg.code, msg.reason));
      else resolve(msg);
      return;
    }
    switch (msg.type) {
      case "participant_joined":
        this._addParticipant(msg.participant);
        break;
      case "participant_left":
        this._removeParticipant(msg.participant_id);
        break;
      case "track_published":
        this.tracks.set(msg.track.track_id, msg.track);
        this._emit("track_published", msg.track);
        break;
      case "track_muted": {
        const track = this.tracks.get(msg.track_id);
        if (track) track.muted = msg.muted;
        this._emit("track_muted", msg);
        break;
      }
      case "track_unpublished":
        this.tracks.delete(msg.track_id);
        this._emit("track_unpublished", msg);
        break;
      case "subscribe_offer":
        this._subscribeChain = this._subscribeChain.then(() => this._onSubscribeOffer(msg.sdp));
        break;
      case "level_changed": {
        const before = this.levels.get(msg.track_id);
        this.levels.set(msg.track_id, msg);
        if (!msg.paused && (!before || before.width !== msg.width || before.height !== msg.height)) {
          // of another size: time it until a frame of that size is painted
          this._switching.set(msg.track_id, { at: performance.now(), width: msg.width, height: msg.height });
        }
        this._emit("level_changed", msg);
        break;
      }
      case "error":
        this.errors.push(msg);
        this._emit("error", msg);
        break;
      case "bye":
        // out of the room: the server shuts down (the WebSocket closes next), or one of our
        // peer connections died (the WebSocket stays open; join again to come back)
        this.bye = msg;
        this._emit("bye", msg);
        break;
    }
  }

  _addParticipant(info) {
    if (!this.participants.has(info.participant_id)) {
      this.participants.set(info.participant_id, { name: info.name, stream: null });
      this._emit("participant", { id: info.participant_id, name: info.name, joined: true });
    }
  }

  _removeParticipant(id) {
    if (this.participants.delete(id)) {
      for (const [trackId, t] of this.tracks) if (t.participant_id === id) this.tracks.delete(trackId);
      this._emit("participant", { id, joined: false });
    }
  }

  async join({
    room, name, token, codec = "VP9", scalabilityMode, publish = true, video = true, audio = true,
    width = 1280, height = 720,
  }) {
    this._windows.clear();
    this.bye = null;
    this._joinedAt = performance.now();
    this.firstFrame.clear();
    this._firstFrameSent.clear();
    await this._connect();
    const message = { type: "join", room, name };
    if (token) message.token = token;
    let joined;
    try {
      joined = await this._request(message);
    } catch (e) {
      this.ws.close(); // refused: nothing to leave, and the connection is of no further use
      throw e;
    }
    this.participantId = joined.participant_id;
    this.iceServers = joined.ice_servers || [];
    for (const p of joined.participants) this._addParticipant(p);
    for (const t of joined.tracks) this.tracks.set(t.track_id, t);
    if (publish) await this.publish({ codec, scalabilityMode, video, audio, width, height });
    return joined;
  }

  async publish({
    codec = "VP9", scalabilityMode, video = true, audio = true, width = 1280, height = 720,
  } = {}) {
    const spec = CODECS[codec];
    if (!spec) throw new Error(`unknown codec ${codec}`);
    this.localStream = await navigator.mediaDevices.getUserMedia({
      audio,
      video: video ? { width, height, frameRate: 30 } : false,
    });
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.publishPc = pc;
    this._watchConnection(pc, "publish");
    for (const track of this.localStream.getTracks()) {
      const init = { direction: "sendonly", streams: [this.localStream] };
      if (track.kind === "video") {
        init.sendEncodings = [{ scalabilityMode: scalabilityMode || spec.scalabilityMode }];
      }
      const transceiver = pc.addTransceiver(track, init);
      if (track.kind === "video") {
        const prefs = codecPreferences(spec.mimeType, spec.fmtp);
        if (!prefs) throw new Error(`this browser cannot send ${spec.mimeType}`);
        transceiver.setCodecPreferences(prefs);
      }
    }
    this._publishRequest = { scalability_mode: video ? scalabilityMode || spec.scalabilityMode : null };
    await this._negotiatePublish();
    this._emit("published", {});
  }

  // One offer/answer on the publish connection (the first, or an ICE restart), one at a time.
  _negotiatePublish() {
    const run = async () => {
      const pc = this.publishPc;
      if (!pc || pc.signalingState === "closed") return;
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      const answer = await this._request({
        type: "publish",
        sdp: pc.localDescription.sdp,
        ...this._publishRequest,
        sources: Object.fromEntries(
          pc.getTransceivers()
            .filter((t) => t.sender.track && t.sender.track.kind === "video" && t.mid != null)
            .map((t) => [t.mid, "camera"]),
        ),
      });
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    };
    const done = this._publishChain.then(run);
    this._publishChain = done.catch(() => {});
    return done;
  }

  // ICE restart: new ICE credentials (and candidates) on our connections, keeping the
  // session: same participant, same tracks, same DTLS. The publish connection re-offers
  // (pc.restartIce()); for the subscribe connection the server offers the restart.
  async restartIce({ publish = true, subscribe = true } = {}) {
    const jobs = [];
    if (publish && this.publishPc) jobs.push(this._restart("publish"));
    if (subscribe && this.subscribePc) jobs.push(this._restart("subscribe"));
    await Promise.all(jobs);
  }

  async _restart(which) {
    if (this._restarting[which] || this.bye || !this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return;
    }
    this._restarting[which] = true;
    try {
      if (which === "publish") {
        this.publishPc.restartIce();
        await this._negotiatePublish();
      } else {
        // the server's subscribe_offer with new credentials is answered as any other
        await this._request({ type: "restart_ice" });
        await this._subscribeChain;
      }
      this.iceRestarts[which] += 1;
      this._emit("ice_restart", { connection: which });
    } finally {
      this._restarting[which] = false;
    }
  }

  _watchConnection(pc, which) {
    const restart = () => this._restart(which).catch((e) => this._emit("error", {
      code: "ice_restart_failed", reason: String(e),
    }));
    // silence: the selected candidate pair received nothing for a while (the server sends
    // RTCP every second, and answers ICE checks)
    const silence = setInterval(async () => {
      if (pc.signalingState === "closed") {
        clearInterval(silence);
        return;
      }
      if (!this.autoRestartIce || this._restarting[which] || this.bye) return;
      if (pc.connectionState !== "connected" && pc.connectionState !== "disconnected") return;
      const report = await pc.getStats();
      let transport = null;
      report.forEach((s) => { if (s.type === "transport") transport = s; });
      const pair = transport && report.get(transport.selectedCandidatePairId);
      if (!pair || pair.lastPacketReceivedTimestamp == null) return;
      if (pair.timestamp - pair.lastPacketReceivedTimestamp > this.silenceRestartMs) restart();
    }, 500);
    this._silenceTimers.push(silence);
    let timer = null;
    pc.addEventListener("connectionstatechange", () => {
      const state = pc.connectionState;
      clearTimeout(timer);
      timer = null;
      if (!this.autoRestartIce) return;
      if (state === "failed") restart();
      else if (state === "disconnected") {
        timer = setTimeout(() => {
          timer = null;
          if (pc.connectionState === "disconnected") restart();
        }, this.disconnectedRestartMs);
      }
    });
  }

  async _onSubscribeOffer(sdp) {
    if (!this.subscribePc) {
      const pc = new RTCPeerConnection({ iceServers: this.iceServers });
      this.subscribePc = pc;
      this._watchConnection(pc, "subscribe");
      pc.ontrack = (event) => {
        const stream = event.streams[0];
        if (!stream) return;
        const id = stream.id;
        const entry = this.participants.get(id) || { name: id, stream: null };
        entry.stream = stream;
        this.participants.set(id, entry);
        this._emit("stream", { id, stream, track: event.track });
      };
    }
    const pc = this.subscribePc;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await waitForIceGathering(pc);
    this.ws.send(JSON.stringify({ type: "subscribe_answer", sdp: pc.localDescription.sdp }));
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

  // What this page measures of each video it receives (getStats() inbound-rtp and the
  // painted frames), sent as one receiver_report.
  async sendReceiverReport() {
    if (!this.subscribePc || !this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
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
    this.ws.send(JSON.stringify(message));
    this.reportsSent += 1;
    return message;
  }

  _unwatch(element, trackId) {
    const observer = this._observers.get(element);
    if (observer) observer.disconnect();
    this._observers.delete(element);
    if (this._elements.get(trackId) === element) this._elements.delete(trackId);
    this._windows.delete(trackId);
  }

  sendWindow(trackId, width, height) {
    if (!this.tracks.has(trackId)) return; // gone: the server would answer unknown_track
    const key = `${width}x${height}`;
    if (this._windows.get(trackId) === key || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this._windows.set(trackId, key);
    this.ws.send(JSON.stringify({ type: "window", track_id: trackId, width, height }));
  }

  // Mute (or unmute) our own audio or video: the browser sends silence or black frames,
  // the server forwards nothing of it, and the room is told (track_muted).
  async setMuted(kind, muted) {
    const transceiver = this.publishPc && this.publishPc.getTransceivers().find(
      (t) => t.sender.track && t.sender.track.kind === kind && t.mid != null);
    if (!transceiver) throw new Error(`nothing published of kind ${kind}`);
    transceiver.sender.track.enabled = !muted;
    return this._request({
      type: "mute", track_id: `${this.participantId}:${transceiver.mid}`, muted });
  }

  setLevel(trackId, spatial, temporal) {
    return this._request({ type: "set_level", track_id: trackId, spatial, temporal });
  }

  auto(trackId) {
    return this._request({ type: "auto", track_id: trackId });
  }

  getLevels(trackId) {
    return this._request({ type: "levels", track_id: trackId });
  }

  // The server's view of our downlink: downloadRate (estimate), videoBitrate, loss, rtt.
  getStats() {
    return this._request({ type: "stats" });
  }

  async leave() {
    this.leaving = true; // the WebSocket's close that follows is ours, not a lost connection
    if (this._reportTimer) clearInterval(this._reportTimer);
    this._reportTimer = null;
    this._elements.clear();
    for (const timer of this._silenceTimers) clearInterval(timer);
    this._silenceTimers = [];
    for (const observer of this._observers.values()) observer.disconnect();
    this._observers.clear();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      try {
        await this._request({ type: "leave" });
      } catch (e) {
        /* already gone */
      }
      this.ws.close();
    }
    for (const pc of [this.publishPc, this.subscribePc]) if (pc) pc.close();
    if (this.localStream) for (const t of this.localStream.getTracks()) t.stop();
    this.publishPc = this.subscribePc = this.localStream = null;
    this.participants.clear();
    this.tracks.clear();
  }

  // Inbound RTP stats of the subscribe connection, one entry per remote track.
  async inboundStats() {
    if (!this.subscribePc) return [];
    const report = await this.subscribePc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        out.push({
          kind: s.kind,
          ssrc: s.ssrc,
          trackIdentifier: s.trackIdentifier,
          mid: s.mid,
          packetsReceived: s.packetsReceived,
          packetsLost: s.packetsLost,
          framesDecoded: s.framesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          framesPerSecond: s.framesPerSecond,
          totalSamplesReceived: s.totalSamplesReceived,
          nackCount: s.nackCount,
          pliCount: s.pliCount,
          freezeCount: s.freezeCount,
          totalFreezesDuration: s.totalFreezesDuration,
          keyFramesDecoded: s.keyFramesDecoded,
          framesDropped: s.framesDropped,
          retransmittedPacketsReceived: s.retransmittedPacketsReceived,
        });
      }
    });
    return out;
  }

  async outboundStats() {
    if (!this.publishPc) return [];
    const report = await this.publishPc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type === "outbound-rtp") {
        out.push({
          kind: s.kind,
          frameWidth: s.frameWidth,
          framesEncoded: s.framesEncoded,
          scalabilityMode: s.scalabilityMode,
          qualityLimitationReason: s.qualityLimitationReason,
          encoderImplementation: s.encoderImplementation,
          targetBitrate: s.targetBitrate,
          framesPerSecond: s.framesPerSecond,
          packetsSent: s.packetsSent,
          retransmittedPacketsSent: s.retransmittedPacketsSent,
          nackCount: s.nackCount,
          pliCount: s.pliCount,
          firCount: s.firCount,
          keyFramesEncoded: s.keyFramesEncoded,
        });
      }
    });
    return out;
  }
}
