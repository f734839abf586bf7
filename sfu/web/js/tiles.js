// The tiles: one per participant (id `tile-PARTICIPANT`, ours `tile-self`), its camera's
// video and its microphone, name, what it has muted, a layer picker, and an overlay: the
// layer received now and why (from level_changed), its frame rate and bitrate (from
// getStats()). A participant with no video to show (none published, or its camera off)
// shows a placeholder with its name instead of a black picture. A shared screen has a tile
// of its own (class `screen`; `tile-screen-...`, ours `tile-self-screen`). Sizes: layout.js;
// speaking rings and the page's own choice of a tile to enlarge: stage.js.

import { addPicker, fillLevels } from "./picker.js";

export const bitrateText = (bits) => (bits == null ? "" : bits >= 1e6
  ? `${(bits / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bits / 1e3)} kbit/s`);

// "30 fps · 1.2 Mbit/s"
const rateText = ({ fps, bitrate }) =>
  [fps == null ? "" : `${Math.round(fps)} fps`, bitrateText(bitrate)].filter(Boolean).join(" · ");

// a screen tile's id part: its track id ("PARTICIPANT:MID") in id-friendly characters
const screenId = (trackId) => `screen-${trackId.replace(/[^A-Za-z0-9_-]/g, "-")}`;

export class Tiles {
  // container: the tiles' parent; layout: a Layout (layout.js); client(): the SfuClient
  // now; stage: a Stage (stage.js)
  constructor(container, layout, client, stage) {
    this.container = container;
    this.layout = layout;
    this.client = client;
    this.stage = stage;
  }

  // the tile of a participant ("self": ours) or of a screen, made if it is new
  tile(id, name, { screen = false } = {}) {
    let el = document.getElementById(`tile-${id}`);
    if (!el) {
      el = document.createElement("div");
      el.className = screen ? "tile screen" : "tile no-video"; // no-video: until it has one
      el.id = `tile-${id}`;
      el.tabIndex = 0;
      el.title = "click to enlarge (click again to restore)";
      el.innerHTML = `<video autoplay playsinline></video>`
        + `<div class="placeholder"><span class="avatar"></span><span class="who"></span></div>`
        + `<span class="label"></span>`
        + `<div class="overlay"><span class="level"></span><span class="figures"></span></div>`
        + `<span class="muted"></span>`;
      el._media = {}; // kind -> the track it plays (a participant's camera and microphone)
      const toggle = (event) => {
        if (event.target.closest("select, button, input")) return; // the layer picker
        this.layout.toggle(el);
      };
      el.addEventListener("click", toggle);
      el.addEventListener("keydown", (event) => { if (event.key === "Enter") toggle(event); });
      this.container.appendChild(el);
      this.layout.added(el, { remote: id !== "self" && id !== "self-screen" });
      this.stage.paint();
    }
    el.querySelector(".label").textContent = name;
    el.querySelector(".who").textContent = name;
    el.querySelector(".avatar").textContent = (name.trim()[0] || "?").toUpperCase();
    return el;
  }

  remove(id) {
    for (const el of this.layout.tiles()) {
      if (el.id === `tile-${id}` || el.dataset.participant === id) this._drop(el);
    }
  }

  _drop(el) {
    el.remove();
    this.layout.removed(el);
    if (el.classList.contains("screen")) this.stage.screenRemoved(el);
  }

  clear() {
    this.container.innerHTML = "";
    this.stage.reset();
    this.layout.reset();
  }

  byTrack(trackId) {
    return this.layout.tiles().find((el) => el.dataset.trackId === trackId) || null;
  }

  // a remote track (info: its track_published entry): a participant's camera or microphone
  // plays on its tile, a screen on a tile of its own
  showTrack(id, track, info) {
    const client = this.client();
    const entry = client.participants.get(id);
    const name = entry ? entry.name : id;
    if (track.kind === "video" && info && info.source === "screen") {
      const el = this.tile(screenId(track.id), `${name} · screen`, { screen: true });
      el.dataset.participant = id;
      el.querySelector("video").srcObject = new MediaStream([track]);
      this._watch(el, track);
      this.stage.screenAdded(el);
      return;
    }
    const el = this.tile(id, name);
    el._media[track.kind] = track;
    this._play(el);
    if (track.kind === "video") this._watch(el, track);
    this.showMuted(id);
  }

  // a track unpublished: a screen's tile goes; a camera leaves its participant's
  // placeholder
  trackGone(trackId, participantId) {
    const screen = document.getElementById(`tile-${screenId(trackId)}`);
    if (screen) this._drop(screen);
    const el = document.getElementById(`tile-${participantId}`);
    if (!el) return;
    for (const [kind, track] of Object.entries(el._media)) {
      if (track.id !== trackId) continue;
      delete el._media[kind];
      if (kind === "video") delete el.dataset.trackId;
      this._play(el);
    }
    this.showMuted(participantId);
  }

  _play(el) {
    el.querySelector("video").srcObject = new MediaStream(Object.values(el._media));
  }

  // a remote video: its window size and frames watched, a layer picker
  _watch(el, track) {
    const client = this.client();
    el.dataset.trackId = track.id;
    client.watchVideo(el.querySelector("video"), track.id);
    addPicker(el, this.client);
    const level = client.levels.get(track.id); // told before its video came
    if (level) this.showLevel(level);
  }

  // our own camera (a preview: no sound), or our name if we send no video
  showSelf(name, stream) {
    const el = this.tile("self", `${name} (you)`);
    const video = el.querySelector("video");
    video.muted = true;
    video.srcObject = new MediaStream(stream.getVideoTracks());
    this.showSelfMuted(stream);
  }

  // what we have muted (the tracks' `enabled`), on our tile
  showSelfMuted(stream) {
    const el = document.getElementById("tile-self");
    if (!el || !stream) return;
    const [audio] = stream.getAudioTracks();
    const [video] = stream.getVideoTracks();
    const off = [audio && !audio.enabled ? "mic off" : "", video && !video.enabled ? "camera off" : ""];
    el.querySelector(".muted").textContent = off.filter(Boolean).join(", ");
    el.classList.toggle("no-video", !video || !video.enabled);
  }

  // our shared screen (a preview, never enlarged by the page), or none
  showSelfScreen(stream) {
    const old = document.getElementById("tile-self-screen");
    if (!stream) {
      if (old) this._drop(old);
      return;
    }
    const el = this.tile("self-screen", "your screen", { screen: true });
    const video = el.querySelector("video");
    video.muted = true;
    video.srcObject = stream;
  }

  // level_changed: the overlay says which layer the tile gets now, and why
  showLevel(level) {
    const el = this.byTrack(level.track_id);
    if (!el) return;
    fillLevels(el, level.track_id, this.client);
    el.dataset.spatial = level.paused ? "" : String(level.spatial);
    el.dataset.temporal = level.paused ? "" : String(level.temporal);
    el.querySelector(".level").textContent = level.paused ? `paused (${level.reason})`
      : `S${level.spatial}T${level.temporal} ${level.width}x${level.height} (${level.reason})`;
  }

  // getStats() of a remote video (rtc-stats.js videoFigures): frame rate and bitrate
  showFigures(trackId, figures) {
    const el = this.byTrack(trackId);
    if (!el) return;
    el.querySelector(".figures").textContent = rateText(figures);
  }

  // what we send (rtc-stats.js sendingFigures) of our camera ("self") or screen
  // ("self-screen"), and what dynacast asked of it (dynacast.js publishLayers)
  showSending(figures, layers = null, id = "self") {
    const el = document.getElementById(`tile-${id}`);
    if (!el) return;
    let level = "";
    if (layers && layers.applied === 0) level = "sending nothing (dynacast: nobody watches)";
    else if (figures) {
      const limited = figures.limitation && figures.limitation !== "none";
      const cut = layers && layers.full > 1 && layers.applied < layers.full;
      level = (cut ? `sending S${layers.applied} of S${layers.full} (dynacast) ` : "sending ")
        + `${figures.width || 0}x${figures.height || 0} ${figures.mode || ""}`
        + (limited ? ` (${figures.limitation})` : "");
    }
    el.dataset.dynacast = layers ? String(layers.applied) : "";
    el.querySelector(".level").textContent = level;
    el.querySelector(".figures").textContent = figures ? rateText(figures) : "";
  }

  // what a participant has muted, on its tile; its placeholder when it shows no video
  showMuted(participantId) {
    const el = document.getElementById(`tile-${participantId}`);
    const client = this.client();
    if (!el || !client) return;
    const mine = [...client.tracks.values()].filter((t) => t.participant_id === participantId);
    const off = mine.filter((t) => t.muted && t.source !== "screen")
      .map((t) => (t.kind === "audio" ? "mic off" : "camera off"));
    el.querySelector(".muted").textContent = off.join(", ");
    const camera = el.dataset.trackId && client.tracks.get(el.dataset.trackId);
    el.classList.toggle("no-video", !camera || camera.muted);
  }
}
