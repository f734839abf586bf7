// The two peer connections of a participant (docs/signaling.md): `publishPc` (we offer,
// sendonly: camera and microphone) and `subscribePc` (the server offers one sendonly m-line
// per remote track; we answer), and ICE restarts that keep the session.
//
// Expects of the layers above: `this.participantId` and `_remoteTrack(event)` (SfuClient).
// Each video transceiver of the publish connection carries a source (`this._sources`:
// transceiver -> "camera" or "screen"), told to the server in every `publish`.

import { SignalingClient } from "./signaling.js";

export const CODECS = {
  VP9: { mimeType: "video/VP9", scalabilityMode: "L3T3_KEY", fmtp: "profile-id=0" },
  VP8: { mimeType: "video/VP8", scalabilityMode: "L1T3" },
  AV1: { mimeType: "video/AV1", scalabilityMode: "L3T3" },
  H264: { mimeType: "video/H264", scalabilityMode: "L1T1" },
};

export function waitForIceGathering(pc, timeoutMs = 5000) {
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

// a transceiver not stopped (or being stopped)
export const sending = (t) => t.direction !== "stopped" && t.currentDirection !== "stopped";

// the codec (and its RTX) a video transceiver sends: `spec` is one of CODECS
export function codecPreferences({ mimeType, fmtp }) {
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

export class PeerClient extends SignalingClient {
  constructor(options) {
    super(options);
    this.publishPc = null;
    this.subscribePc = null;
    // STUN/TURN servers for both peer connections: the server's `ice.servers`, from `joined`
    this.iceServers = [];
    this.localStream = null;
    this._subscribeChain = Promise.resolve();
    this._publishChain = Promise.resolve();
    this._publishRequest = null; // scalability_mode of our publish offers
    // what publish() was asked: { codec, spec, mode, width, height } (screen share, devices)
    this.publishOptions = null;
    this._sources = new Map(); // publish transceiver -> "camera" | "screen"
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
    const mode = scalabilityMode || spec.scalabilityMode;
    this.publishOptions = { codec, spec, mode, width, height };
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.publishPc = pc;
    this._watchConnection(pc, "publish");
    for (const track of this.localStream.getTracks()) {
      if (track.kind === "video") this._addVideo(track, this.localStream, mode, "camera");
      else pc.addTransceiver(track, { direction: "sendonly", streams: [this.localStream] });
    }
    this._publishRequest = { scalability_mode: video ? mode : null };
    await this._negotiatePublish();
    this._emit("published", {});
  }

  // A video on the publish connection: sendonly, one encoding in `mode`, the codec published.
  _addVideo(track, stream, mode, source) {
    const transceiver = this.publishPc.addTransceiver(track, {
      direction: "sendonly", streams: [stream], sendEncodings: [{ scalabilityMode: mode }],
    });
    const { spec } = this.publishOptions;
    const prefs = codecPreferences(spec);
    if (!prefs) throw new Error(`this browser cannot send ${spec.mimeType}`);
    transceiver.setCodecPreferences(prefs);
    this._sources.set(transceiver, source);
    return transceiver;
  }

  // The transceiver of our camera ("video") or microphone ("audio"), or null.
  _ownTransceiver(kind) {
    if (!this.publishPc) return null;
    return this.publishPc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === kind
      && t.mid != null && sending(t) && this._sources.get(t) !== "screen") || null;
  }

  // One offer/answer on the publish connection (the first, a renegotiation: a screen shared
  // or stopped, or an ICE restart), one at a time.
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
            .filter((t) => this._sources.has(t) && t.mid != null && sending(t))
            .map((t) => [t.mid, this._sources.get(t)]),
        ),
      });
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    };
    const done = this._publishChain.then(run);
    this._publishChain = done.catch(() => {});
    return done;
  }

  // Mute (or unmute) our own audio or video: the browser sends silence or black frames,
  // the server forwards nothing of it, and the room is told (track_muted).
  async setMuted(kind, muted) {
    const transceiver = this._ownTransceiver(kind);
    if (!transceiver) throw new Error(`nothing published of kind ${kind}`);
    transceiver.sender.track.enabled = !muted;
    return this._request({
      type: "mute", track_id: `${this.participantId}:${transceiver.mid}`, muted });
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
    if (this._restarting[which] || this.bye || !this.connected) return;
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

  // Subscribe offers are answered in order, one at a time.
  _queueSubscribeOffer(sdp) {
    this._subscribeChain = this._subscribeChain.then(() => this._onSubscribeOffer(sdp));
  }

  async _onSubscribeOffer(sdp) {
    if (!this.subscribePc) {
      const pc = new RTCPeerConnection({ iceServers: this.iceServers });
      this.subscribePc = pc;
      this._watchConnection(pc, "subscribe");
      pc.ontrack = (event) => this._remoteTrack(event);
    }
    const pc = this.subscribePc;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await waitForIceGathering(pc);
    this.ws.send(JSON.stringify({ type: "subscribe_answer", sdp: pc.localDescription.sdp }));
  }

  _remoteTrack(event) {} // SfuClient: whose stream it is

  _stopIceWatch() {
    for (const timer of this._silenceTimers) clearInterval(timer);
    this._silenceTimers = [];
  }

  _closePeers() {
    this._stopIceWatch();
    for (const pc of [this.publishPc, this.subscribePc]) if (pc) pc.close();
    if (this.localStream) for (const t of this.localStream.getTracks()) t.stop();
    this.publishPc = this.subscribePc = this.localStream = null;
    this._sources.clear();
  }
}
