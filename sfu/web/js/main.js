// The demo page (index.html): join a room, publish the camera and microphone (and a screen),
// show everyone else. Its parts: controls.js (form, buttons, banner), devices.js (the
// device picker), tiles.js, layout.js and stage.js (the tiles, their sizes, who speaks and
// who is enlarged), stats.js (figures and the stats panel), sfu-client.js (the client).
//
// For the tests: window.sfuClient (the client of the moment), window.sfuByes (every bye's
// code), window.sfuJoinError (the last join's failure; undefined while joining and after a
// join that worked), window.sfuSetTileSize(w, h) (every remote tile that size from now on;
// 0x0 hides them), window.sfuRejoinSoon(), window.sfuStage (speaker view, speaking rings).

import {
  $, bindMuteButtons, bindShareButton, bindStatsButton, clearError, joinRequest, readParams,
  setState, setStatus, showError, showIdentity, showSharing,
} from "./controls.js";
import { DevicePicker } from "./devices.js";
import { Layout } from "./layout.js";
import { SfuClient, SfuError } from "./sfu-client.js";
import { Stage } from "./stage.js";
import { PageStats } from "./stats.js";
import { Tiles } from "./tiles.js";

const settings = readParams();
const layout = new Layout($("tiles"), settings.tileSize);
const stage = new Stage(layout, $("speakerBtn"));
stage.setSpeakerView(settings.speakerView);
let client = null;
const tiles = new Tiles($("tiles"), layout, () => client, stage);
const stats = new PageStats(tiles, $("statsPanel"));
let selfName = "";
const devices = new DevicePicker(() => client, () => tiles.showSelf(selfName, client.localStream));
window.sfuClient = null;
window.sfuStage = stage;
window.sfuSetTileSize = (width, height) => layout.setRemoteSize(width, height);

function listen(c) {
  c.addEventListener("participant", (e) => {
    const { id, name, joined } = e.detail;
    if (joined) tiles.tile(id, name);
    else tiles.remove(id);
  });
  c.addEventListener("stream", (e) => tiles.showTrack(e.detail.id, e.detail.track, e.detail.info));
  c.addEventListener("track_unpublished",
    (e) => tiles.trackGone(e.detail.track_id, e.detail.participant_id));
  c.addEventListener("level_changed", (e) => tiles.showLevel(e.detail));
  c.addEventListener("track_muted", (e) => tiles.showMuted(e.detail.participant_id));
  c.addEventListener("active_speakers", (e) => stage.setSpeakers(e.detail));
  c.addEventListener("screen", (e) => {
    showSharing(e.detail.sharing);
    tiles.showSelfScreen(e.detail.sharing ? e.detail.stream : null);
  });
  c.addEventListener("error", (e) => showError(e.detail.code, e.detail.reason));
  c.addEventListener("bye", async (e) => {
    const bye = e.detail;
    window.sfuByes = [...(window.sfuByes || []), bye.code]; // every bye this page got
    await c.leave();
    out(bye.code === "shutdown" ? `disconnected: ${bye.reason}` : `left the room: ${bye.reason}`);
    // the worker hosting the room is gone (several workers, docs/scaling.md): the room is
    // placed on a live one at the next join, so join again by ourselves
    if (bye.code === "worker_lost" || bye.code === "moved") rejoinSoon();
  });
  c.addEventListener("closed", () => {
    // the WebSocket dropped while in a room (its worker died, or a restart): join again
    if (c.participantId && !c.bye && !c.leaving) {
      out("connection lost: joining again…");
      rejoinSoon();
    }
  });
}

// out of the room: no tiles, no figures, the form back
function out(status) {
  stats.stop();
  tiles.clear();
  devices.clear();
  $("identity").textContent = "";
  setStatus(status);
  setState("out");
}

async function join(event) {
  event && event.preventDefault();
  client = new SfuClient();
  window.sfuClient = client;
  listen(client);
  setState("joining");
  setStatus("joining…");
  clearError();
  window.sfuJoinError = undefined;
  const request = joinRequest();
  try {
    await client.join({
      ...request, publish: settings.publish, video: settings.video,
      width: settings.capture[0], height: settings.capture[1],
    });
    setStatus(`in room ${request.room} as ${client.participantId}`);
    showIdentity(client);
    setState("joined", { publishing: Boolean(client.localStream) });
    stage.selfId = client.participantId;
    selfName = request.name;
    if (client.localStream) tiles.showSelf(selfName, client.localStream);
    stage.paint();
    stats.start(client);
    await devices.fill();
  } catch (e) {
    if (client.participantId) await client.leave(); // joined, then publishing failed
    out("not joined");
    if (e instanceof SfuError) showError(e.code, e.reason);
    else showError(null, e.message);
    window.sfuJoinError = e.message;
  }
}

// join again after a lost worker or connection: at most 5 tries, 1 s, 2 s, 4 s... apart
let rejoinTries = 0;
function rejoinSoon() {
  if (rejoinTries >= 5) {
    setStatus("not joined: the server did not take us back");
    return;
  }
  const delay = 1000 * 2 ** rejoinTries++;
  setTimeout(async () => {
    if ($("joinBtn").disabled) return; // joined again meanwhile (by hand)
    if (client) await client.leave().catch(() => {});
    await join();
    if (client && client.participantId) rejoinTries = 0;
    else rejoinSoon(); // its worker is still starting: try again, later
  }, delay);
}
window.sfuRejoinSoon = rejoinSoon;

bindMuteButtons(() => client, () => tiles.showSelfMuted(client.localStream));
bindShareButton(() => client);
bindStatsButton((open) => stats.show(open), settings.stats);
$("join").addEventListener("submit", join);
$("leaveBtn").addEventListener("click", async () => {
  await client.leave();
  out("left");
});
if (settings.autojoin) join();
