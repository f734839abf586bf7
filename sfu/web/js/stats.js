// The page's figures, once a second while in a room: frame rate and bitrate on each tile
// (and what we send, on our own), and the stats panel when it is open: the server's view
// of our downlink (the `stats` request) and every video's layer and figures.

import { bitrateText } from "./tiles.js";

const PERIOD_MS = 1000;

const pct = (x) => (x == null ? "-" : `${(100 * x).toFixed(1)} %`);
const ms = (s) => (s == null ? "-" : `${Math.round(1000 * s)} ms`);
const or = (x, unit = "") => (x == null ? "-" : `${Math.round(x)}${unit}`);

export class PageStats {
  // tiles: a Tiles (tiles.js); panel: the stats panel's element
  constructor(tiles, panel) {
    this.tiles = tiles;
    this.panel = panel;
    this.client = null;
    this.open = false;
    this._timer = null;
    this._busy = false;
  }

  start(client) {
    this.stop();
    this.client = client;
    this._timer = setInterval(() => this._tick(), PERIOD_MS);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
    this.client = null;
    if (this.open) this._render(null, null, new Map());
  }

  show(open) {
    this.open = open;
    this.panel.hidden = !open;
    if (open && !this.client) this._render(null, null, new Map());
  }

  async _tick() {
    const client = this.client;
    if (!client || this._busy) return;
    this._busy = true; // a slow getStats() skips a tick rather than piling up
    try {
      const videos = await client.videoFigures();
      for (const [trackId, figures] of videos) this.tiles.showFigures(trackId, figures);
      const sending = await client.sendingFigures();
      this.tiles.showSending(sending, client.publishLayers[client.ownTrackId("camera")]);
      if (client.screenStream) {
        const screen = await client.sendingFigures({ screen: true });
        this.tiles.showSending(screen, client.publishLayers[client.ownTrackId("screen")], "self-screen");
      }
      if (this.open && client === this.client) {
        const server = client.connected ? await client.getStats().catch(() => null) : null;
        this._render(server, sending, videos);
      }
    } catch (e) {
      /* closed meanwhile: the next join starts again */
    } finally {
      this._busy = false;
    }
  }

  _render(server, sending, videos) {
    const rows = [];
    const line = (cells, head = false) => {
      const tr = document.createElement("tr");
      for (const text of cells) {
        const cell = document.createElement(head ? "th" : "td");
        cell.textContent = text;
        tr.appendChild(cell);
      }
      rows.push(tr);
    };
    const summary = document.createElement("p");
    if (!this.client) summary.textContent = "not in a room";
    else {
      summary.textContent = server
        ? `downlink estimate ${bitrateText(server.downloadRate) || "-"}, video forwarded`
          + ` ${bitrateText(server.videoBitrate) || "-"}, loss ${pct(server.loss)}, rtt ${ms(server.rtt)}`
        : "the server's figures: -";
      if (sending) {
        summary.textContent += `; sending ${sending.width}x${sending.height} ${sending.mode || ""}`
          + ` ${or(sending.fps, " fps")} ${bitrateText(sending.bitrate)}`
          + ` (limitation: ${sending.limitation || "-"})`;
      }
    }
    line(["from", "layer", "reason", "decoded", "fps", "bitrate", "dropped", "freezes", "lost"], true);
    for (const [trackId, f] of videos) {
      const client = this.client;
      const track = client && client.tracks.get(trackId);
      const who = track && client.participants.get(track.participant_id);
      const level = client && client.levels.get(trackId);
      const layer = !level ? "-" : level.paused ? "paused" : `S${level.spatial}T${level.temporal}`;
      line([who ? who.name : trackId, layer, level ? level.reason : "-",
        f.width ? `${f.width}x${f.height}` : "-", or(f.fps), bitrateText(f.bitrate) || "-",
        String(f.dropped), String(f.freezes), String(f.lost)]);
    }
    const table = document.createElement("table");
    table.append(...rows);
    this.panel.replaceChildren(summary, table);
  }
}
