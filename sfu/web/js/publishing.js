// What we publish besides the camera and microphone publish() starts with: a shared screen
// (a second video on the publish connection, renegotiated in and out), and another camera
// or microphone (the sender's track replaced: no renegotiation).
//
// Events: screen { sharing, stream } (also when the browser's own "Stop sharing" ended it),
// device { kind, deviceId, track }.

import { DynacastClient, parseMode } from "./dynacast.js";

// A screen's encoding: one spatial layer (text stays sharp at the size it is captured at),
// the camera's temporal layers (L3T3_KEY -> L1T3): the codec published, as the camera's mode
export function screenMode(cameraMode) {
  const parsed = parseMode(cameraMode);
  return `L1T${parsed ? parsed.temporal : 3}`;
}

export class PublishingClient extends DynacastClient {
  constructor(options) {
    super(options);
    this.screenStream = null;
    this._screen = null; // its transceiver
  }

  // Share a screen (the browser asks which): a new sendonly video on the publish connection,
  // its source "screen" in the publish message. Resolves once the server has answered.
  async shareScreen({ video = true } = {}) {
    if (!this.publishPc) throw new Error("sharing a screen needs a publish connection (publish=0?)");
    if (this._screen) return this.screenStream;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video, audio: false });
    const [track] = stream.getVideoTracks();
    if (this._screen || !this.publishPc) { // shared twice at once, or left meanwhile
      for (const t of stream.getTracks()) t.stop();
      return this.screenStream;
    }
    if ("contentHint" in track) track.contentHint = "detail";
    const mode = screenMode(this.publishOptions.mode);
    this._screen = this._addVideo(track, stream, mode, "screen");
    this.screenStream = stream;
    // nothing but the screen's video published: its mode is the one the room checks
    if (!this._publishRequest.scalability_mode) this._publishRequest.scalability_mode = mode;
    // the browser's own "Stop sharing" (or the shared window closed)
    track.addEventListener("ended", () => {
      if (this.screenStream === stream) this.stopScreen().catch(() => {});
    });
    this._emit("screen", { sharing: true, stream });
    try {
      await this._negotiatePublish();
    } catch (e) {
      await this.stopScreen().catch(() => {});
      throw e;
    }
    return stream;
  }

  // Stop sharing: the transceiver stopped (its m-line port 0 in the next offer) and the
  // publish connection renegotiated: the server unpublishes the track (track_unpublished).
  async stopScreen() {
    const transceiver = this._screen;
    const stream = this.screenStream;
    if (!transceiver) return;
    this._screen = null;
    this.screenStream = null;
    for (const t of stream.getTracks()) t.stop();
    if (transceiver.mid != null) this._forgetLayers(`${this.participantId}:${transceiver.mid}`);
    this._sources.delete(transceiver);
    this._emit("screen", { sharing: false, stream });
    if (!this.publishPc || this.publishPc.signalingState === "closed") return;
    transceiver.stop();
    await this._negotiatePublish();
  }

  // The track id of what we publish from our "camera", "microphone" or "screen", or null.
  ownTrackId(source) {
    const transceiver = source === "screen" ? this._screen
      : this._ownTransceiver(source === "camera" ? "video" : "audio");
    return transceiver && transceiver.mid != null ? `${this.participantId}:${transceiver.mid}` : null;
  }

  // Our cameras and microphones ({ deviceId, label, kind }): labels once access was granted.
  async devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
    const all = await navigator.mediaDevices.enumerateDevices();
    return all.filter((d) => d.kind === "videoinput" || d.kind === "audioinput")
      .map(({ deviceId, label, kind }) => ({ deviceId, label, kind }));
  }

  // The device a published kind ("video": camera, "audio": microphone) comes from now.
  deviceOf(kind) {
    const transceiver = this._ownTransceiver(kind);
    const track = transceiver && transceiver.sender.track;
    return track ? track.getSettings().deviceId || null : null;
  }

  // Send from another camera or microphone: its track replaces the sender's (no
  // renegotiation), muted if the one it replaces was.
  async switchDevice(kind, deviceId) {
    const transceiver = this._ownTransceiver(kind);
    if (!transceiver) throw new Error(`nothing published of kind ${kind}`);
    const old = transceiver.sender.track;
    if (old && old.getSettings().deviceId === deviceId) return old;
    const { width, height } = this.publishOptions;
    const constraints = kind === "video"
      ? { video: { deviceId: { exact: deviceId }, width, height, frameRate: 30 } }
      : { audio: { deviceId: { exact: deviceId } } };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const [track] = stream.getTracks();
    if (this._ownTransceiver(kind) !== transceiver) { // left (or stopped) meanwhile
      track.stop();
      throw new Error("the publish connection is gone");
    }
    track.enabled = old ? old.enabled : true;
    await transceiver.sender.replaceTrack(track);
    if (old) {
      if (this.localStream) this.localStream.removeTrack(old);
      old.stop();
    }
    if (this.localStream) this.localStream.addTrack(track);
    this._emit("device", { kind, deviceId, track });
    return track;
  }

  _closePeers() {
    if (this.screenStream) for (const t of this.screenStream.getTracks()) t.stop();
    this.screenStream = null;
    this._screen = null;
    super._closePeers();
  }
}
