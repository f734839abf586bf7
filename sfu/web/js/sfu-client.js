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
// Events: participant {id, name, joined}, stream {id, stream, track, info} (info: the
// track's track_published entry: its source "camera", "screen" or "microphone"),
// track_published, track_muted, track_unpublished, level_changed (the layers a video is
// received at), active_speakers {dominant, speakers}, publish_layers (dynacast: what we
// encode), screen {sharing}, device, published, ice_restart, error, bye, closed.
//
// One class in layers, a module each: signaling.js (the WebSocket, requests and replies),
// peers.js (the publish and subscribe connections, ICE restarts), dynacast.js (the spatial
// layers we encode, as the server asks), publishing.js (screen share, devices), reports.js
// (window sizes, painted frames, receiver reports, getStats figures); this one: the room
// (who is in it, who speaks, their tracks and the layers we receive of them), join, leave.

import { ReportingClient } from "./reports.js";

export { SfuError } from "./signaling.js";
export { CODECS } from "./peers.js";

export class SfuClient extends ReportingClient {
  constructor(options = {}) {
    super(options);
    this.participantId = null;
    this.participants = new Map(); // participant id -> { name, stream }
    this.tracks = new Map(); // track id -> info
    this.levels = new Map(); // track id -> last level_changed
    this.dominant = null; // the dominant speaker's participant id (active_speakers), or null
    this.speakers = []; // who speaks now: [{ participant_id, level }], the dominant first
    // what we may do, from `joined`: our role (the token's, or the one the join asked for
    // without tokens), grants ("publish", "subscribe"), and whether the room lets us publish
    this.role = null;
    this.grants = [];
    this.canPublish = true;
    this.leaving = false;
  }

  _onEvent(msg) {
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
        this._queueSubscribeOffer(msg.sdp);
        break;
      case "level_changed": {
        const before = this.levels.get(msg.track_id);
        this.levels.set(msg.track_id, msg);
        this._noteLevel(before, msg);
        this._emit("level_changed", msg);
        break;
      }
      case "active_speakers":
        this.dominant = msg.dominant;
        this.speakers = msg.speakers;
        this._emit("active_speakers", { dominant: msg.dominant, speakers: msg.speakers });
        break;
      default:
        super._onEvent(msg); // publish_layers: dynacast.js
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

  // a remote track arrived on the subscribe connection: its stream's id is its publisher's
  _remoteTrack(event) {
    const stream = event.streams[0];
    if (!stream) return;
    const id = stream.id;
    const entry = this.participants.get(id) || { name: id, stream: null };
    entry.stream = stream;
    this.participants.set(id, entry);
    const info = this.tracks.get(event.track.id) || null;
    this._emit("stream", { id, stream, track: event.track, info });
  }

  async join({
    room, name, token, role, codec = "VP9", scalabilityMode, publish = true, video = true,
    audio = true, width = 1280, height = 720,
  }) {
    this.bye = null;
    this.dominant = null;
    this.speakers = [];

    this._resetReports();
    await this._connect();
    const message = { type: "join", room, name };
    if (token) message.token = token;
    if (role) message.role = role;
    let joined;
    try {
      joined = await this._request(message);
    } catch (e) {
      this._disconnect(); // refused: nothing to leave, and the connection is of no further use
      throw e;
    }
    this.participantId = joined.participant_id;
    this.iceServers = joined.ice_servers || [];
    for (const p of joined.participants) this._addParticipant(p);
    for (const t of joined.tracks) this.tracks.set(t.track_id, t);
    // a server older than these fields: the role asked for, every grant
    this.role = "role" in joined ? joined.role : role || null;
    this.grants = joined.grants || ["publish", "subscribe"];
    this.canPublish = joined.can_publish !== false;
    // a participant the room does not let publish joins receive-only (not refused later)
    if (publish && this.canPublish) {
      await this.publish({ codec, scalabilityMode, video, audio, width, height });
    }
    return joined;
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
    this._stopReports();
    this._stopIceWatch();
    if (this.connected) {
      try {
        await this._request({ type: "leave" });
      } catch (e) {
        /* already gone */
      }
      this._disconnect();
    }
    this._closePeers();
    this.participants.clear();
    this.tracks.clear();
    this.dominant = null;
    this.speakers = [];
  }
}
