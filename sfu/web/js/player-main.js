// The recording player's page (player.html): /player?room=ROOM&recording=ID[&token=T].
// Without a recording it lists the room's recordings. It plays one progressively: the base
// layer of each segment first, the enhancement layers when the download rate allows
// (player-controller.js, player-schedule.js, player-abr.js), decoded with WebCodecs
// (player-video.js), and shows the viewer's figures.
//
// For the tests: window.sfuPlayer: {figures(), paints(), fetches(), handed(), error}.

import { levelName } from "./player-abr.js";
import { AudioOut } from "./player-audio.js";
import { Player } from "./player-controller.js";
import { Net, recordingUrl, recordingsUrl } from "./player-net.js";

const $ = (id) => document.getElementById(id);
const FIGURES_MS = 250;

const kbps = (x) => {
  if (x == null) return "-";
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)} Mbit/s` : `${Math.round(x / 1000)} kbit/s`;
};
const seconds = (x) => (x == null ? "-" : `${x.toFixed(1)} s`);

function readParams() {
  const params = new URLSearchParams(location.search);
  const out = {
    room: params.get("room") || "",
    recording: params.get("recording") || "",
    token: params.get("token") || null,
    start: Number(params.get("t")) || 0,
    track: params.get("track"),
  };
  if (params.has("token")) {
    // a credential: out of the address bar, history and bookmarks
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  }
  return out;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  window.sfuPlayer.error = message;
}

async function listRecordings(net, room) {
  const { recordings } = await net.json(recordingsUrl(room));
  const list = $("recordings");
  list.replaceChildren();
  for (const r of recordings) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `?room=${encodeURIComponent(room)}&recording=${encodeURIComponent(r.id)}`;
    link.textContent = r.id;
    item.append(link, ` ${r.live ? "live, " : ""}started ${r.started}`);
    list.append(item);
  }
  if (!recordings.length) list.textContent = "No recording in this room.";
  return recordings;
}

// The sound that goes with a video track: its publisher's ("ann-video", "ann-screen":
// "ann-audio"), else the recording's only audio track.
function soundOf(manifest, video) {
  const sounds = manifest.tracks.filter((t) => t.kind === "audio");
  const publisher = video.name.replace(/-(video|screen)$/, "");
  return sounds.find((t) => t.name === `${publisher}-audio`) || (sounds.length === 1 ? sounds[0] : null);
}

// the recording's video tracks, to choose from (the page again, with ?track=)
function showTracks(videos, chosen) {
  const select = $("track");
  select.replaceChildren(...videos.map((t) => new Option(t.name, t.name, false, t === chosen)));
  select.hidden = videos.length < 2;
  select.addEventListener("change", () => {
    const params = new URLSearchParams(location.search);
    params.set("track", select.value);
    location.search = params.toString();
  });
}

function render(player, audio) {
  const f = player.figures();
  const rows = {
    "download rate": kbps(f.rate),
    "level": f.level ? levelName(f.level) : "-",
    "aiming at": levelName(f.target),
    "video bitrate": `${kbps(f.bitrate)} (level: ${kbps(f.levelBitrate)})`,
    "decoded frames": String(f.decoded),
    "dropped frames": String(f.dropped),
    "painted frames": String(f.painted),
    "buffer": seconds(f.buffer),
    "position": seconds(f.media),
    "stalls": `${f.stalls.length}${f.stalled ? " (waiting)" : ""}`,
    "audio": audio ? audio.describe() : "none",
  };
  const table = $("figures");
  table.replaceChildren(...Object.entries(rows).map(([name, value]) => {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    const td = document.createElement("td");
    th.textContent = name;
    td.textContent = value;
    td.dataset.figure = name;
    row.append(th, td);
    return row;
  }));
  const names = (i) => levelName(player.candidates[i]);
  const started = f.firstFrame ?? 0;
  $("switches").replaceChildren(...f.switches.slice(-8).reverse().map((s) => {
    const item = document.createElement("li");
    const when = `${(s.t - started).toFixed(1)} s (at ${s.media.toFixed(1)} s)`;
    item.textContent = `${when}: ${names(s.from)} -> ${names(s.to)}`;
    return item;
  }));
  $("play").hidden = !audio || audio.context.state !== "suspended";
  let state = f.live ? "playing (live)" : "playing";
  if (f.ended) state = "ended";
  else if (f.stalled) state = "buffering";
  else if (f.firstFrame == null) state = "loading";
  $("state").textContent = state;
}

async function main() {
  const settings = readParams();
  const net = new Net(settings.token);
  window.sfuPlayer = {
    error: null, figures: () => null, paints: () => [], fetches: () => [], handed: () => [],
  };
  if (!settings.room) {
    showError("No room: open /player?room=ROOM&recording=ID");
    return;
  }
  $("room").textContent = settings.room;
  if (!("VideoDecoder" in window)) {
    showError("This browser has no WebCodecs VideoDecoder (it needs a secure context: https or localhost).");
    return;
  }
  if (!settings.recording) {
    document.body.classList.add("listing"); // the list alone
    $("state").textContent = "choose a recording";
    await listRecordings(net, settings.room).catch((e) => showError(`The room's recordings: ${e.message}`));
    return;
  }
  $("name").textContent = settings.recording;
  let manifest;
  try {
    manifest = await net.json(recordingUrl(settings.room, settings.recording, "manifest.json"));
  } catch (e) {
    showError(`The recording's manifest: ${e.message}`);
    return;
  }
  const manifestAt = performance.now() / 1000;
  if (!manifest.endlist) $("name").textContent += " (live)";
  const videos = manifest.tracks.filter((t) => t.kind === "video");
  if (!videos.length) {
    showError("The recording has no video track.");
    return;
  }
  const video = videos.find((t) => t.name === settings.track) || videos[0];
  showTracks(videos, video);
  const player = new Player(net, settings.room, settings.recording, manifest, $("video"), {
    trackName: video.name, startTime: settings.start,
  });
  const audioTrack = soundOf(manifest, video);
  const audio = audioTrack && "AudioDecoder" in window ? new AudioOut(player, audioTrack) : null;
  if (audio) player.startGate = () => audio.ready();
  player.manifestAt = manifestAt;
  player.addEventListener("error", (e) => console.warn("player:", e.detail.message));
  Object.assign(window.sfuPlayer, {
    player,
    figures: () => ({ ...player.figures(), audio: audio ? audio.figures() : null }),
    paints: () => player.video.paints,
    fetches: () => player.fetches,
    handed: () => player.handed,
  });
  $("play").addEventListener("click", () => audio && audio.resume());
  const timer = setInterval(() => render(player, audio), FIGURES_MS);
  player.addEventListener("ended", () => {
    render(player, audio);
    clearInterval(timer);
  });
  listRecordings(net, settings.room).catch(() => {}); // the others, beside it
}

main().catch((e) => showError(String(e && e.message || e)));
