// The tiles: one per participant (id `tile-PARTICIPANT`, ours `tile-self`), its video, name,
// what it has muted, a layer picker, and an overlay: the layer received now and why (from
// level_changed), its frame rate and bitrate (from getStats()). Sizes: layout.js.

export const bitrateText = (bits) => (bits == null ? "" : bits >= 1e6
  ? `${(bits / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bits / 1e3)} kbit/s`);

// "30 fps · 1.2 Mbit/s"
const rateText = ({ fps, bitrate }) =>
  [fps == null ? "" : `${Math.round(fps)} fps`, bitrateText(bitrate)].filter(Boolean).join(" · ");

export class Tiles {
  // container: the tiles' parent; layout: a Layout (layout.js); client(): the SfuClient now
  constructor(container, layout, client) {
    this.container = container;
    this.layout = layout;
    this.client = client;
  }

  // the tile of a participant ("self": ours), made if it is new
  tile(id, name) {
    let el = document.getElementById(`tile-${id}`);
    if (!el) {
      el = document.createElement("div");
      el.className = "tile";
      el.id = `tile-${id}`;
      el.tabIndex = 0;
      el.title = "click to enlarge (click again to restore)";
      el.innerHTML = `<video autoplay playsinline></video><span class="label"></span>`
        + `<div class="overlay"><span class="level"></span><span class="figures"></span></div>`
        + `<span class="muted"></span>`;
      const toggle = (event) => {
        if (event.target.closest("select, button, input")) return; // the layer picker
        this.layout.toggle(el);
      };
      el.addEventListener("click", toggle);
      el.addEventListener("keydown", (event) => { if (event.key === "Enter") toggle(event); });
      this.container.appendChild(el);
      this.layout.added(el, { remote: id !== "self" });
    }
    el.querySelector(".label").textContent = name;
    return el;
  }

  remove(id) {
    const el = document.getElementById(`tile-${id}`);
    if (!el) return;
    el.remove();
    this.layout.removed(el);
  }

  clear() {
    this.container.innerHTML = "";
    this.layout.reset();
  }

  byTrack(trackId) {
    return this.layout.tiles().find((el) => el.dataset.trackId === trackId) || null;
  }

  // a remote participant's stream: its video watched (window size, frames), a layer picker
  showStream(id, stream, track) {
    const client = this.client();
    const entry = client.participants.get(id);
    const el = this.tile(id, entry ? entry.name : id);
    const video = el.querySelector("video");
    if (video.srcObject !== stream) video.srcObject = stream;
    this.showMuted(id);
    if (track.kind !== "video") return;
    el.dataset.trackId = track.id;
    client.watchVideo(video, track.id);
    if (!el.querySelector("select")) {
      const pick = document.createElement("select");
      pick.title = "the layer to receive";
      pick.innerHTML = `<option value="auto">auto</option>`; // the stream's levels: below
      pick.addEventListener("change", () => {
        const trackId = el.dataset.trackId;
        if (pick.value === "auto") this.client().auto(trackId);
        else this.client().setLevel(trackId, ...pick.value.split(",").map(Number));
      });
      el.appendChild(pick);
    }
    const level = client.levels.get(track.id); // told before its video came
    if (level) this.showLevel(level);
  }

  // our own camera, muted
  showSelf(name, stream) {
    const video = this.tile("self", `${name} (you)`).querySelector("video");
    video.muted = true;
    video.srcObject = stream;
  }

  // level_changed: the overlay says which layer the tile gets now, and why
  showLevel(level) {
    const el = this.byTrack(level.track_id);
    if (!el) return;
    this._fillLevels(el, level.track_id);
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

  // what we send (rtc-stats.js sendingFigures), on our own tile
  showSending(figures) {
    const el = document.getElementById("tile-self");
    if (!el) return;
    let level = "";
    if (figures) {
      const limited = figures.limitation && figures.limitation !== "none";
      level = `sending ${figures.width || 0}x${figures.height || 0} ${figures.mode || ""}`
        + (limited ? ` (${figures.limitation})` : "");
    }
    el.querySelector(".level").textContent = level;
    el.querySelector(".figures").textContent = figures ? rateText(figures) : "";
  }

  // what a participant has muted, on its tile
  showMuted(participantId) {
    const el = document.getElementById(`tile-${participantId}`);
    const client = this.client();
    if (!el || !client) return;
    const off = [...client.tracks.values()]
      .filter((t) => t.participant_id === participantId && t.muted)
      .map((t) => (t.kind === "audio" ? "mic off" : "camera off"));
    el.querySelector(".muted").textContent = off.join(", ");
  }

  // the layer picker offers the levels the stream has (asked once it flows)
  async _fillLevels(el, trackId) {
    const pick = el.querySelector("select");
    if (!pick || pick.options.length > 1 || pick.dataset.asked === trackId) return;
    pick.dataset.asked = trackId;
    try {
      const reply = await this.client().getLevels(trackId);
      for (const lv of reply.levels) {
        const option = document.createElement("option");
        option.value = `${lv.spatial},${lv.temporal}`;
        option.textContent = `S${lv.spatial}T${lv.temporal} ${lv.width}x${lv.height}`;
        pick.appendChild(option);
      }
    } catch (e) {
      delete pick.dataset.asked; // gone meanwhile, or not measured yet: asked again later
    }
    if (pick.options.length <= 1) {
      delete pick.dataset.asked;
      const tries = Number(pick.dataset.tries || 0) + 1;
      pick.dataset.tries = String(tries);
      if (tries < 5) setTimeout(() => this._fillLevels(el, trackId), 2000);
    }
  }
}
