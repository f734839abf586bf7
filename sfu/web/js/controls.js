// The demo page's controls: the join form and its URL parameters, the buttons (join, leave,
// mic, camera, share screen, speaker view, stats), the status line, who we are (role and
// grants) and the error banner. The device picker: devices.js.

export const $ = (id) => document.getElementById(id);

const size = (text) => text.split("x").map(Number);

// The page's URL parameters: room, name, codec, mode, role, token fill the form; res: the
// camera's capture size (default 1280x720); tile: a fixed size for every tile; publish=0:
// receive only; video=0: publish the microphone only; autojoin=1; stats=1: the stats panel
// open; speaker=1: speaker view on.
export function readParams() {
  const params = new URLSearchParams(location.search);
  for (const key of ["room", "name", "codec", "mode", "role", "token"]) {
    if (params.has(key)) $(key).value = params.get(key);
  }
  const settings = {
    capture: params.has("res") ? size(params.get("res")) : [1280, 720],
    tileSize: params.has("tile") ? size(params.get("tile")) : null,
    publish: params.get("publish") !== "0",
    video: params.get("video") !== "0",
    speakerView: params.get("speaker") === "1",
    autojoin: params.get("autojoin") === "1",
    stats: params.get("stats") === "1",
  };
  if (params.has("token")) {
    // a token is a credential: keep it out of the address bar, history and bookmarks
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  }
  return settings;
}

// a token's claims (its body, read here, not verified: the server verifies it): sub (the
// identity), role; null if it is no token
function tokenClaims(token) {
  try {
    const body = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(body + "=".repeat((4 - body.length % 4) % 4)));
    return claims && typeof claims === "object" ? claims : null;
  } catch (e) {
    return null;
  }
}

// What the form asks to join with (the name is the token's identity, if it names one; the
// role the token's, if it grants one).
export function joinRequest() {
  const token = $("token").value.trim() || undefined;
  const claims = token ? tokenClaims(token) : null;
  if (claims && typeof claims.sub === "string") $("name").value = claims.sub;
  if (claims) $("role").value = typeof claims.role === "string" ? claims.role : ""; // the token's
  return {
    room: $("room").value, name: $("name").value, codec: $("codec").value, token,
    role: $("role").value.trim() || undefined, scalabilityMode: $("mode").value || undefined,
  };
}

// Who we are in the room, as `joined` says (client.role, grants, canPublish): the token's
// role, or without tokens (development mode) the one the join asked for.
export function showIdentity(client) {
  const grants = client.grants.length ? client.grants.join(", ") : "none";
  const publish = client.canPublish ? "" : " (this room does not let this role publish: receive only)";
  $("identity").textContent = `role: ${client.role || "none"}; grants: ${grants}${publish}`;
  $("identity").dataset.role = client.role || "";
  $("identity").dataset.grants = client.grants.join(",");
}

const HINTS = {
  unauthorized: "This server or room needs a valid access token (sfu token create): enter it in Token.",
  duplicate_identity: "The same identity joined this room on another connection.",
  room_full: "The room is full.",
  too_many_rooms: "The server has as many rooms as it allows.",
};

// a refused join or an error from the server, shown until the next join
export function showError(code, reason) {
  const box = $("error");
  box.textContent = "";
  const title = document.createElement("strong");
  title.textContent = code ? `Refused by the server (${code}): ` : "Failed: ";
  box.append(title, reason);
  if (HINTS[code]) {
    const hint = document.createElement("div");
    hint.textContent = HINTS[code];
    box.append(hint);
  }
  box.dataset.code = code || "";
  box.hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
  delete $("error").dataset.code;
}

export function setStatus(text) {
  $("status").textContent = text;
}

// "joining", "joined" (publishing: whether mic and camera buttons apply) or "out"; in a room
// the form keeps only its buttons, to leave the page to the tiles
export function setState(state, { publishing = false } = {}) {
  document.body.classList.toggle("in-room", state === "joined");
  $("joinBtn").disabled = state !== "out";
  $("leaveBtn").disabled = state !== "joined";
  for (const [button, label] of [["micBtn", "Mute mic"], ["camBtn", "Stop camera"],
                                 ["shareBtn", "Share screen"]]) {
    $(button).disabled = state !== "joined" || !publishing;
    if (state !== "joined") continue;
    $(button).setAttribute("aria-pressed", "false");
    $(button).textContent = label;
  }
}

// Our own mic and camera: `client()` is the client of the moment; changed() after each.
export function bindMuteButtons(client, changed = () => {}) {
  for (const [button, kind, on, off] of [["micBtn", "audio", "Mute mic", "Unmute mic"],
                                         ["camBtn", "video", "Stop camera", "Start camera"]]) {
    $(button).addEventListener("click", async () => {
      const muted = $(button).getAttribute("aria-pressed") !== "true";
      try {
        await client().setMuted(kind, muted);
        $(button).setAttribute("aria-pressed", String(muted));
        $(button).textContent = muted ? off : on;
        changed();
      } catch (e) {
        showError(e.name === "SfuError" ? e.code : null, e.reason || e.message);
      }
    });
  }
}

// The share button: share our screen, or stop sharing it (the label says which).
export function bindShareButton(client) {
  const button = $("shareBtn");
  button.addEventListener("click", async () => {
    const c = client();
    button.disabled = true;
    try {
      if (c.screenStream) await c.stopScreen();
      else await c.shareScreen();
    } catch (e) {
      // the user's "Cancel" in the browser's picker is no error
      if (e.name !== "NotAllowedError") showError(e.name === "SfuError" ? e.code : null, e.reason || e.message);
    } finally {
      button.disabled = !c.publishPc;
    }
  });
}

// the share button's state: sharing or not
export function showSharing(sharing) {
  $("shareBtn").setAttribute("aria-pressed", String(sharing));
  $("shareBtn").textContent = sharing ? "Stop sharing" : "Share screen";
}

// The stats panel's button: `toggle(open)` on every press.
export function bindStatsButton(toggle, open = false) {
  const button = $("statsBtn");
  const set = (value) => {
    button.setAttribute("aria-pressed", String(value));
    toggle(value);
  };
  button.addEventListener("click", () => set(button.getAttribute("aria-pressed") !== "true"));
  set(open);
}
